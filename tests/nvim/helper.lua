-- Test helper for the plugin tests (loaded by each test script with dofile).
-- Captures notifications, $/progress and co/runUpdate, stubs prompts, and writes a JSON result
-- file that pytest reads. Every wait has a timeout so a hang fails instead of blocking CI.
local T = {
  notes = {}, -- vim.notify calls: {msg, level}
  progress = {}, -- LspProgress events: {kind, token, title, message}
  updates = {}, -- co/runUpdate params (via the User CoSidecarRunUpdate autocmd)
  prompts = {}, -- confirmation prompts shown (vim.ui.select / vim.fn.confirm)
  result = {}, -- free-form values for pytest to assert on
}

vim.notify = function(msg, level)
  table.insert(T.notes, { msg = tostring(msg), level = level or vim.log.levels.INFO })
end

vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(ev)
    local p = ev.data.params or {}
    local v = type(p.value) == 'table' and p.value or {}
    table.insert(T.progress, { kind = v.kind, token = p.token, title = v.title, message = v.message })
  end,
})
vim.api.nvim_create_autocmd('User', {
  pattern = 'CoSidecarRunUpdate',
  callback = function(ev)
    table.insert(T.updates, ev.data)
  end,
})

T.co = require('co_sidecar')
T.state = require('co_sidecar.state')

function T.wait(what, cond, ms)
  if not vim.wait(ms or 15000, cond, 20) then
    error('timed out waiting for ' .. what, 2)
  end
end

function T.note_matching(pattern)
  for _, n in ipairs(T.notes) do
    if n.msg:find(pattern) then
      return n
    end
  end
end

function T.wait_note(pattern, ms)
  T.wait('a notification matching ' .. pattern, function()
    return T.note_matching(pattern) ~= nil
  end, ms)
  return T.note_matching(pattern)
end

--- Start a run with :CoRun and return its id once co/launch answered.
function T.start(args)
  vim.cmd('CoRun ' .. args)
  T.wait('co/launch', function()
    return T.co.current_run() ~= nil
  end)
  return T.co.current_run()
end

function T.run_state(id)
  local r = T.state.runs[id]
  return r and r.state
end

function T.wait_state(id, wanted, ms)
  T.wait(('run %s to be %s (is %s)'):format(id, wanted, tostring(T.run_state(id))), function()
    return T.run_state(id) == wanted
  end, ms)
end

--- Answer vim.ui.select with the item at `index` (nil = dismiss), recording the prompt.
function T.answer_select(index)
  vim.ui.select = function(items, opts, on_choice)
    local shown = {}
    for _, it in ipairs(items) do
      shown[#shown + 1] = opts.format_item and opts.format_item(it) or tostring(it)
    end
    table.insert(T.prompts, { prompt = opts.prompt, items = shown })
    vim.schedule(function()
      if index then
        on_choice(items[index], index)
      else
        on_choice(nil, nil)
      end
    end)
  end
end

--- Answer vim.fn.confirm with `choice` (1 = Yes, 2 = No), recording the question.
function T.answer_confirm(choice)
  vim.fn.confirm = function(msg)
    table.insert(T.prompts, { prompt = msg })
    return choice
  end
end

--- The co-sidecar client of this Neovim.
function T.client()
  return require('co_sidecar.client').current()
end

--- Synchronous co/* request (for assertions on server state).
function T.request(method, params)
  local result, err = require('co_sidecar.client').request_sync(T.client(), method, params, 5000)
  if not result then
    error(method .. ' failed: ' .. vim.inspect(err), 2)
  end
  return result
end

function T.lines(buf)
  return vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

function T.buf_for(path)
  local b = vim.fn.bufnr(vim.fn.fnamemodify(path, ':p'))
  return b ~= -1 and b or nil
end

local function finish(ok, err)
  local out = {
    ok = ok,
    error = err and tostring(err) or nil,
    notes = T.notes,
    progress = T.progress,
    updates = T.updates,
    prompts = T.prompts,
    result = T.result,
    errmsg = vim.v.errmsg,
  }
  local f = assert(io.open(vim.env.CO_NVIM_TEST_RESULT, 'w'))
  f:write(vim.json.encode(out))
  f:close()
  -- Stop the servers politely so they don't outlive the editor.
  for _, c in ipairs(vim.lsp.get_clients()) do
    c:stop()
  end
  vim.wait(2000, function()
    return #vim.lsp.get_clients() == 0
  end, 20)
  vim.cmd('qa!')
end

--- Run the test body; always writes the result file and quits.
function T.main(fn)
  local ok, err = xpcall(fn, debug.traceback)
  finish(ok, err)
end

return T
