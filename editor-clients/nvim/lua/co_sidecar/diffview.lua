--- :CoDiff: a run's patch in a scratch buffer.
local client_mod = require('co_sidecar.client')
local config = require('co_sidecar.config')
local state = require('co_sidecar.state')
local target = require('co_sidecar.target')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local plural = util.plural

local function find_buffer(name)
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b) == name then
      return b
    end
  end
end

function M.summary(result)
  local adds, dels = 0, 0
  for _, f in ipairs(result.files or {}) do
    adds = adds + (f.additions or 0)
    dels = dels + (f.deletions or 0)
  end
  return ('%s, +%d -%d'):format(plural(#(result.files or {}), 'file'), adds, dels)
end

--- Show a co/diff result in a scratch buffer (filetype=diff). Returns the buffer.
function M.show_diff(result)
  local id = result.runId
  local name = 'co-sidecar://' .. id .. '.diff'
  local buf = find_buffer(name)
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
  end
  local run = state.runs[id]
  local lines = {
    ('# co-sidecar run %s%s: %s'):format(
      id,
      (run and run.state) and (' (' .. run.state .. ')') or '',
      M.summary(result)
    ),
  }
  if run and run.prompt then
    lines[#lines + 1] = '# prompt: ' .. util.summary(run.prompt, 100)
  end
  for _, c in ipairs(result.conflicts or {}) do
    lines[#lines + 1] = ('# conflict: %s: %s'):format(c.path, c.reason)
  end
  lines[#lines + 1] = '# :CoApply accepts it, :CoReject declines it, q closes this window'
  lines[#lines + 1] = '# x on a hunk leaves it out (again: takes it back), a applies the hunks kept'
  local header_count = #lines
  vim.list_extend(lines, vim.split(result.patch or '', '\n', { plain = true, trimempty = false }))
  if lines[#lines] == '' then
    lines[#lines] = nil
  end
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = 'diff'
  vim.b[buf].co_sidecar_run_id = id
  vim.keymap.set('n', 'q', '<cmd>close<cr>', { buffer = buf, silent = true, desc = 'co-sidecar: close diff' })
  M.hunk_selection(buf, result, header_count)

  local win = vim.fn.bufwinid(buf)
  if win ~= -1 then
    vim.api.nvim_set_current_win(win)
  else
    local open = config.options.diff.open
    if open == 'current' then
      vim.api.nvim_set_current_buf(buf)
    else
      local mods = ({ split = '', vsplit = 'vertical ', tab = 'tab ' })[open] or ''
      vim.cmd(mods .. 'sbuffer ' .. buf)
    end
  end
  return buf
end

local ns = vim.api.nvim_create_namespace('co_sidecar_hunks')

--- Which hunk each line of the shown patch belongs to: {path, number} (numbers as co/diff's
--- `hunks` give them; the shown patch holds the hunks not applied yet, in order).
local function hunk_lines(result, header_count, lines)
  local pending = {}
  for _, h in ipairs(result.hunks or {}) do
    if not h.applied then
      pending[h.path] = pending[h.path] or {}
      table.insert(pending[h.path], h.number)
    end
  end
  local at, starts = {}, {}
  local file_index, path, k = 0, nil, 0
  for i = header_count + 1, #lines do
    local line = lines[i]
    if vim.startswith(line, 'diff --git ') then
      file_index = file_index + 1
      local f = (result.files or {})[file_index]
      path, k = f and f.path, 0
    elseif path and vim.startswith(line, '@@ ') then
      k = k + 1
      local number = (pending[path] or {})[k]
      if number then
        starts[#starts + 1] = { row = i, path = path, number = number }
      end
    end
    if path and k > 0 and (pending[path] or {})[k] then
      at[i] = { path = path, number = pending[path][k] }
    end
  end
  return at, starts
end

--- x leaves the hunk under the cursor out (or takes it back); a applies the hunks kept.
function M.hunk_selection(buf, result, header_count)
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local at, starts = hunk_lines(result, header_count, lines)
  local out = {} -- "path\0number" -> true when left out
  local function key(h)
    return h.path .. '\0' .. h.number
  end
  local function redraw()
    vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
    for _, s in ipairs(starts) do
      local text = out[key(s)] and '  ✗ left out (x takes it back)' or ''
      if text ~= '' then
        vim.api.nvim_buf_set_extmark(buf, ns, s.row - 1, 0, { virt_text = { { text, 'WarningMsg' } } })
      end
    end
  end
  vim.keymap.set('n', 'x', function()
    local h = at[vim.api.nvim_win_get_cursor(0)[1]]
    if not h then
      return util.notify('put the cursor on a hunk (from its @@ line to its last line) to leave it out')
    end
    out[key(h)] = not out[key(h)] or nil
    redraw()
  end, { buffer = buf, silent = true, nowait = true, desc = 'co-sidecar: leave this hunk out / take it back' })
  vim.keymap.set('n', 'a', function()
    local keep, kept, total = {}, 0, #starts
    for _, s in ipairs(starts) do
      if not out[key(s)] then
        keep[s.path] = keep[s.path] or {}
        table.insert(keep[s.path], s.number)
        kept = kept + 1
      end
    end
    if kept == 0 then
      return util.notify('every hunk is left out; nothing to apply', levels.WARN)
    end
    local files = {}
    for _, f in ipairs(result.files or {}) do
      local has_hunks = false
      for _, s in ipairs(starts) do
        has_hunks = has_hunks or s.path == f.path
      end
      if not has_hunks then
        files[#files + 1] = f.path -- binary, rename or mode only: taken whole
      end
    end
    local selection = nil
    if kept < total then
      selection = { hunks = keep }
      if #files > 0 then
        selection.files = files
      end
    end
    require('co_sidecar.accept').apply(result.runId, {
      selection = selection,
      selected = ('%d of %d hunks'):format(kept, total),
      attempt = result.attempt ~= vim.NIL and result.attempt or nil,
    })
  end, { buffer = buf, silent = true, nowait = true, desc = 'co-sidecar: apply the hunks kept' })
end

--- Show a run's patch in a scratch buffer.
function M.diff(arg, opts)
  opts = opts or {}
  target.with_run(arg, function(id, client)
    local params = { runId = id }
    if opts.attempt then
      params.attempt = opts.attempt
    end
    client_mod.request(client, 'co/diff', params, function(err, result)
      if err then
        return client_mod.report(err)
      end
      if (result.patch or '') == '' then
        util.notify(('run %s made no changes'):format(util.short(id)))
        return
      end
      M.show_diff(result)
      if #(result.conflicts or {}) > 0 then
        util.notify(
          ('run %s: %s with the workspace, see the diff header'):format(
            util.short(id),
            plural(#result.conflicts, 'conflict')
          ),
          levels.WARN
        )
      end
    end)
  end)
end

return M
