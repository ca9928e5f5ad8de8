--- Progress: co/runUpdate notifications, $/progress (LspProgress) and the statusline component.
local config = require('co_sidecar.config')
local state = require('co_sidecar.state')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local uv = vim.uv or vim.loop

-- Latest $/progress value per run id (title, message, percentage, kind).
---@type table<string, table>
M.work_done = {}

local STATE_LEVEL = {
  running = levels.INFO,
  succeeded = levels.INFO,
  failed = levels.ERROR,
  timed_out = levels.ERROR,
  cancelled = levels.WARN,
}

local STATE_HINT = {
  succeeded = ' — review with :CoDiff, accept with :CoApply, decline with :CoReject',
  partially_applied = ' — :CoDiff shows the rest, :CoApply applies it, :CoReject declines it',
}

-- Per-run throttling of output notifications: {last = ms, pending = line, timer = uv_timer}.
local throttle = {}

local function redraw()
  vim.cmd('redrawstatus')
end

--- Milliseconds since the run started, by this Neovim's clock: the server sends elapsedMs only
--- with an update, and a quiet agent sends none for a long time.
---@param run co_sidecar.Run
---@return integer?
function M.elapsed_ms(run)
  if not run.started_at then
    return nil
  end
  return math.max(0, uv.now() - run.started_at)
end

-- While a run is live the statusline is redrawn every second, so its clock keeps moving.
local ticker
local function any_active()
  for _, run in pairs(state.runs) do
    if run.state and state.ACTIVE[run.state] then
      return true
    end
  end
  return false
end

local function tick()
  if any_active() then
    redraw()
  elseif ticker then
    ticker:stop()
    ticker:close()
    ticker = nil
  end
end

local function ensure_ticking()
  if not ticker and any_active() then
    ticker = uv.new_timer()
    ticker:start(1000, 1000, vim.schedule_wrap(tick))
  end
end

local function last_line(text)
  local out = ''
  for line in tostring(text or ''):gmatch('[^\n]+') do
    if vim.trim(line) ~= '' then
      out = vim.trim(line)
    end
  end
  return out
end

local function label(run)
  return 'run ' .. util.short(run.runId)
end

--- A cloud run's answers (co/runUpdate.answers): each attempt's assistant messages, and
--- whether any attempt has a diff.
local function answers_text(answers)
  if type(answers) ~= 'table' then
    return nil, false
  end
  local parts, any_diff = {}, false
  for _, a in ipairs(answers) do
    if type(a) == 'table' then
      any_diff = any_diff or a.hasDiff == true
      if type(a.messages) == 'table' and #a.messages > 0 then
        parts[#parts + 1] = ('attempt %s: %s'):format(a.attempt, table.concat(a.messages, '\n'))
      end
    end
  end
  return #parts > 0 and table.concat(parts, '\n') or nil, any_diff
end

local function notify_output(run_id, line)
  local opts = config.options.notify
  if not opts.output then
    return
  end
  local t = throttle[run_id] or { last = 0 }
  throttle[run_id] = t
  local now = uv.now()
  local function emit(text)
    t.last = uv.now()
    t.pending = nil
    util.notify(('%s: %s'):format(label({ runId = run_id }), text), levels.INFO)
  end
  if now - t.last >= opts.throttle_ms then
    emit(line)
    return
  end
  -- Within the window: keep only the newest line and show it when the window ends.
  t.pending = line
  if not t.timer then
    t.timer = vim.defer_fn(function()
      t.timer = nil
      local run = state.runs[run_id]
      if t.pending and run and state.ACTIVE[run.state] then
        emit(t.pending)
      end
      t.pending = nil
    end, math.max(opts.throttle_ms - (now - t.last), 1))
  end
end

--- Handler for the co/runUpdate notification.
---@param params table RunUpdate
---@param ctx table
function M.on_run_update(_, params, ctx)
  if type(params) ~= 'table' or type(params.runId) ~= 'string' then
    return
  end
  local previous = state.runs[params.runId]
  local old_state = previous and previous.state
  local run = state.update(params.runId, {
    client_id = ctx and ctx.client_id,
    state = params.state,
    mode = params.mode,
    elapsedMs = params.elapsedMs,
    cloudTaskUrl = params.cloudTaskUrl,
    attempt = params.attempt,
  })
  if type(params.elapsedMs) == 'number' then
    -- Anchor the start; only ever earlier, so a late update cannot rewind the clock.
    local started = uv.now() - params.elapsedMs
    run.started_at = run.started_at and math.min(run.started_at, started) or started
  end
  local message = util.present(params.message) and last_line(params.message) or nil
  if message and message ~= '' then
    run.message = message
  end

  if util.present(params.event) then
    run.step = params.event
  end

  -- Agent output and agent steps (a Codex agent's commands, edits, messages) are shown the
  -- same way: throttled, newest first.
  if util.present(params.stream) or util.present(params.event) then
    if message and message ~= '' then
      notify_output(params.runId, message)
    end
  elseif params.state ~= old_state and STATE_LEVEL[params.state] then
    local text = ('%s %s'):format(label(run), (params.state:gsub('_', ' ')))
    if params.state == 'running' and util.present(params.mode) then
      text = text .. ' (' .. params.mode .. ')'
    end
    if message and message ~= '' and params.state ~= 'succeeded' then
      text = text .. ': ' .. message
    end
    local said, any_diff = answers_text(params.answers)
    if params.state == 'succeeded' and type(params.answers) == 'table' and #params.answers > 0 and not any_diff then
      text = text .. ' — no changes to apply'
    else
      text = text .. (STATE_HINT[params.state] or '')
    end
    if said then
      run.answers = params.answers
      text = text .. '\n' .. said
    end
    util.notify(text, STATE_LEVEL[params.state])
  end

  vim.api.nvim_exec_autocmds('User', {
    pattern = 'CoSidecarRunUpdate',
    modeline = false,
    data = params,
  })
  ensure_ticking()
  redraw()
end

--- LspProgress autocmd callback: remember the latest $/progress of co-sidecar tokens.
function M.on_lsp_progress(ev)
  local data = ev.data or {}
  local client = data.client_id and vim.lsp.get_client_by_id(data.client_id)
  if not client or client.name ~= config.NAME then
    return
  end
  local params = data.params or {}
  local value = type(params.value) == 'table' and params.value or {}
  local token = tostring(params.token)
  local run_id = token:match('^co%-sidecar/(.+)$') or token
  M.work_done[run_id] = {
    kind = value.kind,
    title = value.title,
    message = value.message,
    percentage = value.percentage,
  }
  if value.kind == 'end' then
    M.work_done[run_id] = nil
  end
  redraw()
end

--- Statusline component: the newest active run ("co running 12s"), else the last run's state.
---@return string
function M.statusline()
  local best
  for _, run in pairs(state.runs) do
    if run.state and state.ACTIVE[run.state] then
      if not best or (run.updated or 0) > (best.updated or 0) then
        best = run
      end
    end
  end
  if best then
    local text = 'co ' .. best.state
    local wd = M.work_done[best.runId]
    if wd and wd.percentage then
      text = text .. (' %d%%'):format(wd.percentage)
    end
    local elapsed = M.elapsed_ms(best) or best.elapsedMs
    if elapsed then
      text = text .. (' %ds'):format(math.floor(elapsed / 1000))
    end
    if best.message and best.message ~= '' then
      text = text .. ' ' .. util.summary(best.message, 40)
    end
    return text
  end
  local last = state.last_run_id and state.runs[state.last_run_id]
  if last and last.state then
    return 'co ' .. last.state
  end
  return ''
end

return M
