--- co-sidecar.nvim: hand coding tasks to a local agent or Codex Cloud through the co-sidecar
--- server, watch them run, review the diff and apply it only when you accept it.
---
--- See :h co_sidecar.
local config = require('co_sidecar.config')
local client_mod = require('co_sidecar.client')
local state = require('co_sidecar.state')
local progress = require('co_sidecar.progress')
local apply = require('co_sidecar.apply')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local NAME = config.NAME
local augroup = vim.api.nvim_create_augroup('co_sidecar', { clear = true })

local function on_exit(code, signal, client_id)
  if code ~= 0 or (signal and signal ~= 0) then
    vim.schedule(function()
      if vim.v.exiting == vim.NIL then
        util.notify(
          ('server exited (code %s, signal %s); runs in progress are no longer tracked. See :LspLog'):format(
            tostring(code),
            tostring(signal)
          ),
          levels.WARN
        )
      end
    end)
  end
  for _, run in pairs(state.runs) do
    if run.client_id == client_id then
      run.client_id = nil
    end
  end
end

-- Used by lsp/co_sidecar.lua (the vim.lsp.enable() path) as well as setup()'s config.
M._on_exit = on_exit

local autocmds_created = false

--- Attach buffers opened under a running root (and autostart), and track $/progress.
local function create_autocmds()
  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
    group = augroup,
    desc = 'co-sidecar: attach file buffers inside a running workspace',
    callback = function(ev)
      if config.options.autostart and vim.bo[ev.buf].buftype == '' then
        local root, found = client_mod.root_for(ev.buf)
        if found and not client_mod.get(root) then
          client_mod.ensure(root)
          return
        end
      end
      client_mod.attach_if_under_root(ev.buf)
    end,
  })
  vim.api.nvim_create_autocmd('LspProgress', {
    group = augroup,
    desc = 'co-sidecar: track $/progress for the statusline',
    callback = progress.on_lsp_progress,
  })
  autocmds_created = true
end

--- Configure the plugin. Safe to call more than once; a running server keeps its old settings
--- until restarted (e.g. :lua vim.lsp.stop_client(vim.lsp.get_clients{name="co_sidecar"})).
---@param opts? table see :h co_sidecar-setup
function M.setup(opts)
  local o = config.set(opts)
  local lsp_cfg = vim.tbl_deep_extend('force', {
    flags = { debounce_text_changes = 150 },
  }, o.lsp or {})
  lsp_cfg.cmd = o.cmd
  lsp_cfg.root_markers = o.root_markers
  if next(o.settings) then
    lsp_cfg.init_options = { ['co-sidecar'] = o.settings }
    lsp_cfg.settings = { ['co-sidecar'] = o.settings }
  end
  lsp_cfg.handlers = vim.tbl_extend('force', lsp_cfg.handlers or {}, {
    ['co/runUpdate'] = progress.on_run_update,
    ['workspace/applyEdit'] = apply.handler,
  })
  local user_exit = lsp_cfg.on_exit
  lsp_cfg.on_exit = function(...)
    on_exit(...)
    if type(user_exit) == 'function' then
      user_exit(...)
    end
  end
  vim.lsp.config[NAME] = lsp_cfg

  create_autocmds()
  return o
end

--- Without setup(): the defaults, and the server config from lsp/co_sidecar.lua (which
--- vim.lsp.config() finds on 'runtimepath', merged with the user's vim.lsp.config() fields).
--- Nothing is registered over it, so a vim.lsp.config('co_sidecar', {...}) stays in effect.
local function ensure_setup()
  if not config.did_setup and not autocmds_created then
    create_autocmds()
  end
end
M._ensure_setup = ensure_setup

--- Options in effect.
function M.config()
  return config.options
end

--------------------------------------------------------------------------------------------
-- Helpers
--------------------------------------------------------------------------------------------

--- The run a command applies to: the argument, else the diff buffer's run, else the last run
--- started from this Neovim. Tells the user and returns nil when there is none.
---@param arg string?
---@return string?
local function target(arg)
  if arg and arg ~= '' then
    return state.resolve(arg)
  end
  local from_buf = vim.b.co_sidecar_run_id
  if type(from_buf) == 'string' then
    return from_buf
  end
  if state.last_run_id then
    return state.last_run_id
  end
  util.notify('no run started from this Neovim yet; pass a run id or pick one with :CoList', levels.INFO)
end

--- The client that owns a run (or the current workspace's), started on demand.
---@param run_id string?
---@return vim.lsp.Client?
local function client_for(run_id)
  ensure_setup()
  local run = run_id and state.runs[run_id]
  if run and run.client_id then
    local c = vim.lsp.get_client_by_id(run.client_id)
    if c and not c:is_stopped() then
      return c
    end
  end
  local c, err = client_mod.ensure()
  if not c then
    util.notify(err or 'could not start the server', levels.WARN)
  end
  return c
end

local function plural(n, word)
  return ('%d %s%s'):format(n, word, n == 1 and '' or 's')
end

local function relpath(path)
  return vim.fn.fnamemodify(path, ':~:.')
end

--------------------------------------------------------------------------------------------
-- Actions (also the Lua API)
--------------------------------------------------------------------------------------------

--- Start a run. opts: mode ("local"|"cloud"|"auto"), attempts (cloud best-of-N), task (taskId),
--- on_launch (callback with the co/launch result).
---@param prompt string?
---@param opts? table
function M.run(prompt, opts)
  ensure_setup()
  opts = opts or {}
  if not prompt or vim.trim(prompt) == '' then
    vim.ui.input({ prompt = 'co-sidecar task: ' }, function(input)
      if input and vim.trim(input) ~= '' then
        M.run(input, opts)
      end
    end)
    return
  end
  local client = client_for(nil)
  if not client then
    return
  end
  local params = {
    prompt = prompt,
    workspaceFolder = vim.uri_from_fname(client.root_dir),
    metadata = { client = 'nvim' },
  }
  local file = vim.api.nvim_buf_get_name(0)
  if file ~= '' and vim.bo.buftype == '' then
    params.metadata.file = vim.fs.relpath and vim.fs.relpath(client.root_dir, file) or relpath(file)
  end
  if opts.mode then
    params.mode = opts.mode
  end
  if opts.task then
    params.taskId = opts.task
  end
  if opts.attempts then
    params.cloud = { attempts = opts.attempts }
  end
  client_mod.request(client, 'co/launch', params, function(err, result)
    if err then
      return client_mod.report(err, 'could not start the run')
    end
    state.last_run_id = result.runId
    local known = state.runs[result.runId] and state.runs[result.runId].state
    local run = state.update(result.runId, {
      client_id = client.id,
      mode = result.mode,
      prompt = prompt,
      started_here = true,
    })
    run.state = run.state or result.state
    if state.FINISHED[result.state] or state.FINISHED[known or ''] then
      -- Finished at once (e.g. cloud denied by the fallback policy): report that, not a start.
      if not state.FINISHED[known or ''] then
        run.state = result.state
        util.notify(
          ('run %s %s: %s'):format(util.short(result.runId), result.state, result.reason or ''),
          result.state == 'succeeded' and levels.INFO or levels.ERROR
        )
      end
      if opts.on_launch then
        opts.on_launch(result)
      end
      return
    end
    local fallback = util.present(result.fallback) and type(result.fallback) == 'table'
    local msg = ('run %s started (%s'):format(util.short(result.runId), result.mode)
    if not fallback and util.present(result.reason) and result.reason ~= '' then
      msg = msg .. ': ' .. result.reason
    end
    util.notify(msg .. ')')
    if fallback then
      util.notify(
        ('run %s fell back to %s: %s'):format(util.short(result.runId), result.mode, result.fallback.reason or ''),
        levels.WARN
      )
    end
    if opts.on_launch then
      opts.on_launch(result)
    end
  end)
end

local function format_status(rec)
  local id = rec.runId
  local mode = util.present(rec.selectedMode) and rec.selectedMode or rec.requestedMode
  local lines = {
    ('co-sidecar: run %s %s%s'):format(util.short(id), rec.state or '?', mode and (' (' .. mode .. ')') or ''),
    '  id:      ' .. id,
  }
  local function add(label, value)
    if util.present(value) and value ~= '' then
      lines[#lines + 1] = ('  %-8s %s'):format(label .. ':', value)
    end
  end
  add('prompt', util.summary(rec.prompt, 70))
  add('routing', rec.routingReason)
  add('failure', rec.failureReason)
  local d = rec.diff
  if type(d) == 'table' then
    local files = type(d.files) == 'table' and #d.files or d.files
    if util.present(files) then
      add('diff', ('%s, +%s -%s'):format(plural(tonumber(files) or 0, 'file'), d.additions or 0, d.deletions or 0))
    end
  end
  local cloud = rec.cloud
  if type(cloud) == 'table' then
    add('cloud', cloud.taskUrl)
  end
  local run = state.runs[id]
  if run and run.message and state.ACTIVE[rec.state or ''] then
    add('last', run.message)
  end
  return table.concat(lines, '\n')
end

--- Show one run's record.
function M.status(arg)
  ensure_setup()
  local id = target(arg)
  local client = id and client_for(id)
  if not client then
    return
  end
  client_mod.request(client, 'co/status', { runId = id }, function(err, rec)
    if err then
      return client_mod.report(err)
    end
    state.update(rec.runId, { state = rec.state, prompt = rec.prompt, client_id = client.id })
    vim.notify(format_status(rec), levels.INFO, { title = 'co-sidecar' })
  end)
end

local ACTIONS = {
  { 'Diff', 'diff', { succeeded = true, applied = true, rejected = true } },
  { 'Apply', 'apply', { succeeded = true } },
  { 'Reject', 'reject', { succeeded = true } },
  { 'Cancel', 'cancel', state.ACTIVE },
  { 'Status', 'status', nil },
}

--- Pick an action for a run (used by :CoList).
function M.actions(run)
  local items = {}
  for _, a in ipairs(ACTIONS) do
    if a[3] == nil or a[3][run.state] then
      items[#items + 1] = a
    end
  end
  vim.ui.select(items, {
    prompt = ('co-sidecar: run %s (%s)'):format(util.short(run.runId), run.state),
    kind = 'co_sidecar.action',
    format_item = function(a)
      return a[1]
    end,
  }, function(choice)
    if choice then
      M[choice[2]](run.runId)
    end
  end)
end

--- List runs (newest first) and pick one with vim.ui.select, then an action for it.
---@param filter? string a run state to filter on
---@param on_choice? fun(run: table?) instead of the action menu
function M.list(filter, on_choice)
  ensure_setup()
  local client = client_for(nil)
  if not client then
    return
  end
  local params = { limit = 100 }
  if filter and filter ~= '' then
    params.state = filter
  end
  client_mod.request(client, 'co/list', params, function(err, result)
    if err then
      return client_mod.report(err)
    end
    local runs = result and result.runs or {}
    if #runs == 0 then
      util.notify(
        (filter and filter ~= '') and ('no %s runs'):format(filter)
          or 'no runs yet; start one with :CoRun {prompt}'
      )
      return
    end
    for _, r in ipairs(runs) do
      local known = state.runs[r.runId]
      state.update(r.runId, {
        state = r.state,
        mode = r.mode,
        prompt = r.prompt,
        client_id = (known and known.client_id) or client.id,
      })
    end
    vim.ui.select(runs, {
      prompt = 'co-sidecar runs',
      kind = 'co_sidecar.run',
      format_item = function(r)
        return ('%-6s  %-9s  %-5s  %s  %s'):format(
          util.short(r.runId),
          r.state,
          r.mode or '',
          (tostring(r.createdAt or '')):sub(1, 16):gsub('T', ' '),
          util.summary(r.prompt, 60)
        )
      end,
    }, function(run)
      if on_choice then
        return on_choice(run)
      end
      if run then
        M.actions(run)
      end
    end)
  end)
end

--- Send `method` ({runId}) for the run `arg` names; on success record the state it answers
--- (a RunStateResult) and call done(id, result). Errors are reported, not raised.
local function change_run_state(arg, method, done)
  ensure_setup()
  local id = target(arg)
  local client = id and client_for(id)
  if not client then
    return
  end
  client_mod.request(client, method, { runId = id }, function(err, result)
    if err then
      return client_mod.report(err)
    end
    state.update(id, { state = result.state })
    done(id, result)
  end)
end

--- Cancel a run.
function M.cancel(arg)
  change_run_state(arg, 'co/cancel', function(id, result)
    if result.state == 'cancelled' then
      util.notify(('run %s cancelled'):format(util.short(id)))
    else
      util.notify(('run %s is already %s'):format(util.short(id), result.state))
    end
  end)
end

local function find_buffer(name)
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b) == name then
      return b
    end
  end
end

local function diff_summary(result)
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
      diff_summary(result)
    ),
  }
  if run and run.prompt then
    lines[#lines + 1] = '# prompt: ' .. util.summary(run.prompt, 100)
  end
  for _, c in ipairs(result.conflicts or {}) do
    lines[#lines + 1] = ('# conflict: %s: %s'):format(c.path, c.reason)
  end
  lines[#lines + 1] = '# :CoApply accepts it, :CoReject declines it, q closes this window'
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

--- Show a run's patch in a scratch buffer.
function M.diff(arg, opts)
  ensure_setup()
  opts = opts or {}
  local id = target(arg)
  local client = id and client_for(id)
  if not client then
    return
  end
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
end

--- Ask yes/no. cb(true) only on an explicit yes.
local function confirm(question, yes_label, cb)
  if config.options.apply.confirm == 'confirm' then
    local ok, choice = pcall(vim.fn.confirm, question, '&Yes\n&No', 2, 'Question')
    cb(ok and choice == 1)
    return
  end
  vim.ui.select({ yes_label, 'Cancel' }, { prompt = question, kind = 'co_sidecar.confirm' }, function(_, idx)
    cb(idx == 1)
  end)
end

local function report_applied(id, client, result)
  local s = apply.last[client.id]
  apply.last[client.id] = nil
  local paths = result.paths or {}
  local msg = ('applied run %s: %s'):format(util.short(id), plural(s and #s.files or #paths, 'file'))
  if s then
    local parts = {}
    if #s.written > 0 then
      parts[#parts + 1] = 'on disk: ' .. table.concat(s.written, ', ')
    end
    if #s.deleted > 0 then
      parts[#parts + 1] = 'deleted: ' .. table.concat(s.deleted, ', ')
    end
    if #s.modified > 0 then
      parts[#parts + 1] = 'modified buffers (review, then :w or u): ' .. table.concat(s.modified, ', ')
    end
    if #parts > 0 then
      msg = msg .. ' (' .. table.concat(parts, '; ') .. ')'
    end
  end
  util.notify(msg)
end

--- Accept a run's diff: confirm, then co/apply (the server sends workspace/applyEdit).
---@param arg string? run id
---@param opts? {force: boolean?, attempt: integer?}
function M.apply(arg, opts)
  ensure_setup()
  opts = opts or {}
  local id = target(arg)
  local client = id and client_for(id)
  if not client then
    return
  end
  local short = util.short(id)
  client_mod.request(client, 'co/status', { runId = id }, function(serr, rec)
    if serr then
      return client_mod.report(serr)
    end
    state.update(id, { state = rec.state, prompt = rec.prompt, client_id = client.id })
    if rec.state ~= 'succeeded' then
      local why = state.ACTIVE[rec.state] and 'wait for it to finish'
        or (rec.state == 'applied' and 'it was already applied')
        or 'only a succeeded run can be applied'
      util.notify(('run %s is %s; %s'):format(short, rec.state, why), levels.WARN)
      return
    end
    local dparams = { runId = id, attempt = opts.attempt }
    client_mod.request(client, 'co/diff', dparams, function(derr, diff)
      if derr then
        return client_mod.report(derr)
      end
      if #(diff.files or {}) == 0 then
        util.notify(('run %s made no changes; nothing to apply'):format(short))
        return
      end
      local names = {}
      for i, f in ipairs(diff.files) do
        if i > 3 then
          names[#names + 1] = '…'
          break
        end
        names[#names + 1] = f.path
      end
      local question = ('co-sidecar: apply run %s (%s) to %s? %s: %s'):format(
        short,
        util.summary(rec.prompt, 40),
        vim.fs.basename(client.root_dir),
        diff_summary(diff),
        table.concat(names, ', ')
      )
      if #(diff.conflicts or {}) > 0 then
        question = question .. (' [%s]'):format(plural(#diff.conflicts, 'conflict'))
      end
      confirm(question, 'Apply', function(yes)
        if not yes then
          util.notify(('apply cancelled; run %s is still %s (:CoReject to decline it)'):format(short, rec.state))
          return
        end
        local params = { runId = id, accept = true }
        if opts.force then
          params.force = true
        end
        if opts.attempt then
          params.attempt = opts.attempt
        end
        client_mod.request(client, 'co/apply', params, function(err, result)
          if err then
            apply.last[client.id] = nil
            if type(err.data) == 'table' and err.data.category == 'over_budget' then
              err = vim.tbl_extend('force', err, { message = err.message .. ' (:CoApply! applies it anyway)' })
            end
            return client_mod.report(err, ('run %s was not applied'):format(short))
          end
          if result.applied then
            state.update(id, { state = 'applied' })
            report_applied(id, client, result)
          else
            apply.last[client.id] = nil
            local lines = {
              ('run %s was not applied: %s'):format(short, result.failureReason or 'the edit was refused'),
            }
            local reason = lines[1]
            for _, c in ipairs(result.conflicts or {}) do
              if not reason:find(c.reason, 1, true) then
                lines[#lines + 1] = ('  %s: %s'):format(c.path, c.reason)
              end
            end
            util.notify(table.concat(lines, '\n'), levels.WARN)
          end
        end)
      end)
    end)
  end)
end

--- Decline a run's diff (recorded by the server; nothing changes in the workspace).
function M.reject(arg)
  change_run_state(arg, 'co/reject', function(id)
    util.notify(('run %s rejected; its diff will not be applied'):format(util.short(id)))
  end)
end

--- Statusline component, e.g. `set statusline+=%{v:lua.require'co_sidecar'.statusline()}`.
function M.statusline()
  return progress.statusline()
end

--- The run id commands default to (the last run started from this Neovim), if any.
function M.current_run()
  return state.last_run_id
end

return M
