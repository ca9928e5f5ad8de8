--- Runs known to this Neovim: what co/runUpdate, co/launch and co/list told us.
local M = {}

---@class co_sidecar.Run
---@field runId string
---@field client_id integer?
---@field state string?
---@field mode string?
---@field prompt string?
---@field message string?       last state message, output line or agent step
---@field step table?           last agent step (co/runUpdate.event: kind, command, exitCode, ...)
---@field elapsedMs integer?
---@field updated number?       vim.uv.now() of the last update
---@field started_here boolean? launched from this Neovim
---@field diffStats table?      {files, additions, deletions}: live while a local agent works
---@field parentRunId string?   a follow-up's parent run
---@field rootRunId string?     a follow-up's first run (its chain)

---@type table<string, co_sidecar.Run>
M.runs = {}
--- The most recent run started from this Neovim.
---@type string?
M.last_run_id = nil

local protocol = require('co_sidecar.protocol')
M.ACTIVE = protocol.ACTIVE
M.FINISHED = protocol.FINISHED

---@param run_id string
---@param fields table
---@return co_sidecar.Run
function M.update(run_id, fields)
  local run = M.runs[run_id] or { runId = run_id }
  for k, v in pairs(fields) do
    if v ~= vim.NIL then
      run[k] = v
    end
  end
  run.updated = vim.uv.now()
  M.runs[run_id] = run
  return run
end

--- Resolve a user-given run id: exact, else a unique prefix or suffix of a known run.
---@param arg string?
---@return string? run_id
function M.resolve(arg)
  if arg == nil or arg == '' then
    return nil
  end
  if M.runs[arg] then
    return arg
  end
  local found
  for id in pairs(M.runs) do
    if vim.startswith(id, arg) or vim.endswith(id, arg) then
      if found then
        return arg -- ambiguous: let the server decide (it reports unknown ids)
      end
      found = id
    end
  end
  return found or arg
end

--- Known run ids, newest first.
function M.ids()
  local ids = vim.tbl_keys(M.runs)
  table.sort(ids, function(a, b)
    return a > b
  end)
  return ids
end

function M.reset()
  M.runs = {}
  M.last_run_id = nil
end

return M
