--- Which run a command means and which server owns it: the preamble every run command shares.
local client_mod = require('co_sidecar.client')
local state = require('co_sidecar.state')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels

local function ensure_setup()
  require('co_sidecar')._ensure_setup()
end
M.ensure_setup = ensure_setup

--- The run a command applies to: the argument, else the diff buffer's run, else the last run
--- started from this Neovim. Tells the user and returns nil when there is none.
---@param arg string?
---@return string?
function M.target(arg)
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
function M.client_for(run_id)
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

--- Resolve the run `arg` names and its server, then call fn(id, client). Tells the user and
--- does nothing when either is missing.
---@param arg string?
---@param fn fun(id: string, client: vim.lsp.Client)
function M.with_run(arg, fn)
  ensure_setup()
  local id = M.target(arg)
  local client = id and M.client_for(id)
  if id and client then
    fn(id, client)
  end
end

return M
