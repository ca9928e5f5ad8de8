--- Run commands: launch, status, the runs list and its actions, cancel, reject.
local client_mod = require('co_sidecar.client')
local protocol = require('co_sidecar.protocol')
local state = require('co_sidecar.state')
local target = require('co_sidecar.target')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local plural, relpath = util.plural, util.relpath

--- Start a run. opts: mode ("local"|"cloud"|"auto"), attempts (cloud best-of-N), task (taskId),
--- on_launch (callback with the co/launch result).
---@param prompt string?
---@param opts? table
function M.run(prompt, opts)
  target.ensure_setup()
  opts = opts or {}
  if not prompt or vim.trim(prompt) == '' then
    vim.ui.input({ prompt = 'co-sidecar task: ' }, function(input)
      if input and vim.trim(input) ~= '' then
        M.run(input, opts)
      end
    end)
    return
  end
  local client = target.client_for(nil)
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

--- Start a follow-up of a run: a new run that starts from its result (co/followUp).
---@param arg string? the run (default: the last run started here)
---@param prompt string? asked for when missing
function M.follow_up(arg, prompt)
  if not prompt or vim.trim(prompt) == '' then
    local id = target.target(arg)
    if not id then
      return
    end
    vim.ui.input({ prompt = ('co-sidecar follow-up of %s: '):format(util.short(id)) }, function(input)
      if input and vim.trim(input) ~= '' then
        M.follow_up(id, input)
      end
    end)
    return
  end
  target.with_run(arg, function(parent, client)
    client_mod.request(client, 'co/followUp', { runId = parent, prompt = prompt }, function(err, result)
      if err then
        return client_mod.report(err, 'could not start the follow-up')
      end
      state.last_run_id = result.runId
      local run = state.update(result.runId, {
        client_id = client.id,
        mode = result.mode,
        prompt = prompt,
        started_here = true,
        parentRunId = parent,
        rootRunId = (state.runs[parent] and state.runs[parent].rootRunId) or parent,
      })
      run.state = run.state or result.state
      util.notify(('follow-up %s of run %s started (%s)'):format(util.short(result.runId), util.short(parent), result.mode))
    end)
  end)
end

--- :CoFollowUp's argument: "[run] {prompt}". The first word is the run when it names a known
--- run (an id, or a unique prefix or suffix of one); otherwise it all is the prompt.
---@return string? run, string prompt
function M.parse_follow_up_args(args)
  local first, rest = (args or ''):match('^%s*(%S+)%s*(.*)$')
  if first and (state.runs[state.resolve(first) or ''] or first:match('^%d+T%d+%-%x+$')) then
    return state.resolve(first), rest
  end
  return nil, vim.trim(args or '')
end

--- co/list rows grouped by chain: chains newest first, each from its first run down, with
--- each row's depth in its chain.
function M.lineage_order(rows)
  local groups, order = {}, {}
  for _, r in ipairs(rows) do
    local root = util.present(r.rootRunId) and r.rootRunId or r.runId
    if not groups[root] then
      groups[root] = {}
      order[#order + 1] = root
    end
    table.insert(groups[root], r)
  end
  local out = {}
  for _, root in ipairs(order) do
    local group = groups[root]
    table.sort(group, function(a, b)
      return a.runId < b.runId
    end)
    local depth = {}
    for _, r in ipairs(group) do
      local parent = util.present(r.parentRunId) and r.parentRunId or nil
      depth[r.runId] = parent and ((depth[parent] or 0) + 1) or 0
      r.depth = depth[r.runId]
      out[#out + 1] = r
    end
  end
  return out
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
  if util.present(rec.parentRunId) then
    add('follows', ('%s (chain %s)'):format(rec.parentRunId, rec.rootRunId))
  end
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
    if type(cloud.env) == 'table' then
      add('env', ('%s (%s)'):format(cloud.env.id, cloud.env.source))
    end
    -- Each attempt's answer: the assistant's messages and its worklog summary.
    for _, a in ipairs(type(cloud.attemptStatus) == 'table' and cloud.attemptStatus or {}) do
      if type(a.messages) == 'table' and #a.messages > 0 then
        add('answer ' .. a.attempt, util.summary(table.concat(a.messages, ' '), 200))
      end
      add('worklog', a.worklog)
    end
  end
  local run = state.runs[id]
  if run and run.message and state.ACTIVE[rec.state or ''] then
    add('last', run.message)
  end
  return table.concat(lines, '\n')
end

--- Show one run's record.
function M.status(arg)
  target.with_run(arg, function(id, client)
    client_mod.request(client, 'co/status', { runId = id }, function(err, rec)
      if err then
        return client_mod.report(err)
      end
      state.update(rec.runId, { state = rec.state, prompt = rec.prompt, client_id = client.id })
      vim.notify(format_status(rec), levels.INFO, { title = 'co-sidecar' })
    end)
  end)
end

local ACTIONS = {
  { 'Diff', 'diff', { succeeded = true, partially_applied = true, applied = true, rejected = true } },
  { 'Apply', 'apply', { succeeded = true, partially_applied = true } },
  { 'Follow up', 'follow_up', protocol.FOLLOWABLE },
  { 'Reject', 'reject', { succeeded = true, partially_applied = true } },
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
      require('co_sidecar')[choice[2]](run.runId)
    end
  end)
end

--- List runs (newest first) and pick one with vim.ui.select, then an action for it.
---@param filter? string a run state to filter on
---@param on_choice? fun(run: table?) instead of the action menu
function M.list(filter, on_choice)
  target.ensure_setup()
  local client = target.client_for(nil)
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
        parentRunId = r.parentRunId,
        rootRunId = r.rootRunId,
      })
      -- A running run's live stats (from its runUpdates) are newer than the list's.
      if util.present(r.diffStats) and not (known and known.diffStats and state.ACTIVE[r.state]) then
        state.runs[r.runId].diffStats = r.diffStats
      end
    end
    runs = M.lineage_order(runs)
    vim.ui.select(runs, {
      prompt = 'co-sidecar runs',
      kind = 'co_sidecar.run',
      format_item = function(r)
        local known = state.runs[r.runId]
        local stats = util.diff_stats(known and known.diffStats) or ''
        local lineage = (r.depth or 0) > 0 and (string.rep('  ', r.depth - 1) .. '↳ ') or ''
        return ('%-6s  %-9s  %-5s  %s  %-18s  %s%s'):format(
          util.short(r.runId),
          r.state,
          r.mode or '',
          (tostring(r.createdAt or '')):sub(1, 16):gsub('T', ' '),
          stats,
          lineage,
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
  target.with_run(arg, function(id, client)
    client_mod.request(client, method, { runId = id }, function(err, result)
      if err then
        return client_mod.report(err)
      end
      state.update(id, { state = result.state })
      done(id, result)
    end)
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

--- Decline a run's diff (recorded by the server; nothing changes in the workspace), after
--- asking: a rejected run cannot be applied any more.
function M.reject(arg)
  target.with_run(arg, function(id)
    local short = util.short(id)
    local run = state.runs[id] or {}
    local what = run.state == 'partially_applied' and 'the rest of run ' or 'run '
    local question = ('co-sidecar: reject %s%s%s? It cannot be applied afterwards.'):format(
      what,
      short,
      run.prompt and (' (' .. util.summary(run.prompt, 40) .. ')') or ''
    )
    require('co_sidecar.accept').confirm(question, 'Reject', function(yes)
      if not yes then
        return util.notify(('run %s was not rejected'):format(short))
      end
      change_run_state(id, 'co/reject', function()
        util.notify(('run %s rejected; its diff will not be applied'):format(short))
      end)
    end)
  end)
end

return M
