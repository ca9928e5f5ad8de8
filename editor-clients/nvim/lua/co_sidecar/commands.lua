--- User commands (:CoRun, :CoStatus, :CoList, :CoCancel, :CoDiff, :CoApply, :CoReject, :CoFollowUp).
local M = {}

local MODES = { ['local'] = true, cloud = true, auto = true }
local STATES = require('co_sidecar.protocol').RUN_STATES

--- Split leading key=value options off a :CoRun argument string.
--- Known keys: mode=local|cloud|auto, attempts=N (1-4), task=NAME. The first token that is not
--- a known option starts the prompt, which is kept verbatim.
---@param args string
---@return string prompt, table opts, string? err
function M.parse_run_args(args)
  local opts = {}
  local rest = args or ''
  while true do
    local key, value, after = rest:match('^%s*(%a+)=(%S+)()')
    if not key or not (key == 'mode' or key == 'attempts' or key == 'task') then
      break
    end
    if key == 'mode' then
      if not MODES[value] then
        return '', opts, ('mode must be local, cloud or auto (got %q)'):format(value)
      end
      opts.mode = value
    elseif key == 'attempts' then
      local n = tonumber(value)
      if not n or n ~= math.floor(n) or n < 1 or n > 4 then
        return '', opts, ('attempts must be a whole number from 1 to 4 (got %q)'):format(value)
      end
      opts.attempts = n
    else
      opts.task = value
    end
    rest = rest:sub(after)
  end
  return vim.trim(rest), opts
end

local function complete_runs(arglead)
  local co = require('co_sidecar')
  local state = require('co_sidecar.state')
  local client_mod = require('co_sidecar.client')
  co._ensure_setup()
  local client = client_mod.current()
  if client and client.initialized then
    local result = client_mod.request_sync(client, 'co/list', { limit = 50 }, 300)
    for _, r in ipairs(result and result.runs or {}) do
      local known = state.runs[r.runId]
      if not known then
        state.update(r.runId, { state = r.state, mode = r.mode, prompt = r.prompt, client_id = client.id })
      end
    end
  end
  local out = {}
  local util = require('co_sidecar.util')
  for _, id in ipairs(state.ids()) do
    if arglead == '' or vim.startswith(id, arglead) or vim.startswith(util.short(id), arglead) then
      out[#out + 1] = id
    end
  end
  return out
end

local function complete_run_options(arglead, cmdline)
  -- Only complete options before the prompt starts.
  local before = cmdline:gsub('^%s*%S+%s*', '')
  before = before:sub(1, #before - #arglead)
  for token in before:gmatch('%S+') do
    if not token:match('^%a+=') then
      return {}
    end
  end
  local candidates = { 'mode=local', 'mode=cloud', 'mode=auto', 'attempts=', 'task=' }
  return vim.tbl_filter(function(c)
    return vim.startswith(c, arglead)
  end, candidates)
end

function M.create()
  local function co()
    local mod = require('co_sidecar')
    mod._ensure_setup()
    return mod
  end
  local cmd = vim.api.nvim_create_user_command

  cmd('CoRun', function(a)
    local prompt, opts, err = M.parse_run_args(a.args)
    if err then
      require('co_sidecar.util').notify(err, vim.log.levels.WARN)
      return
    end
    co().run(prompt, opts)
  end, {
    nargs = '*',
    desc = 'co-sidecar: run a task ([mode=local|cloud|auto] [attempts=N] [task=NAME] {prompt})',
    complete = complete_run_options,
  })
  cmd('CoStatus', function(a)
    co().status(a.args)
  end, { nargs = '?', desc = 'co-sidecar: show a run', complete = complete_runs })
  cmd('CoList', function(a)
    co().list(a.args)
  end, {
    nargs = '?',
    desc = 'co-sidecar: pick a run (optionally only runs in a state)',
    complete = function(arglead)
      return vim.tbl_filter(function(s)
        return vim.startswith(s, arglead)
      end, STATES)
    end,
  })
  cmd('CoCancel', function(a)
    co().cancel(a.args)
  end, { nargs = '?', desc = 'co-sidecar: cancel a run', complete = complete_runs })
  cmd('CoDiff', function(a)
    co().diff(a.args)
  end, { nargs = '?', desc = "co-sidecar: show a run's patch", complete = complete_runs })
  cmd('CoApply', function(a)
    co().apply(a.args, { force = a.bang })
  end, {
    nargs = '?',
    bang = true,
    desc = "co-sidecar: apply a run's diff after confirmation (! = force)",
    complete = complete_runs,
  })
  cmd('CoFollowUp', function(a)
    local runs = require('co_sidecar.runs')
    co()
    local run, prompt = runs.parse_follow_up_args(a.args)
    runs.follow_up(run, prompt)
  end, {
    nargs = '*',
    desc = "co-sidecar: continue a run from its result ([run] {prompt})",
    complete = complete_runs,
  })
  cmd('CoReject', function(a)
    co().reject(a.args)
  end, { nargs = '?', desc = "co-sidecar: decline a run's diff", complete = complete_runs })
end

return M
