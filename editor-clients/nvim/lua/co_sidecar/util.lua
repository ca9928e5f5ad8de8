--- Small shared helpers: messages, run ids, error text.
local M = {}

local levels = vim.log.levels

--- vim.notify with the "co-sidecar: " prefix and a title for notification plugins.
---@param msg string
---@param level? integer
function M.notify(msg, level)
  vim.notify('co-sidecar: ' .. msg, level or levels.INFO, { title = 'co-sidecar' })
end

--- A run id shortened for messages: "20251124T200102123-a1b2c3" -> "a1b2c3".
---@param run_id string
function M.short(run_id)
  if type(run_id) ~= 'string' then
    return tostring(run_id)
  end
  return run_id:match('%-(%x+)$') or run_id
end

--- One line of a prompt, trimmed for messages.
function M.summary(text, width)
  width = width or 50
  text = vim.trim((tostring(text or '')):gsub('%s+', ' '))
  if vim.fn.strchars(text) > width then
    text = vim.fn.strcharpart(text, 0, width - 1) .. '…'
  end
  return text
end

-- JSON-RPC error codes of the co/* protocol, generated from the server (protocol.lua).
M.codes = require('co_sidecar.protocol').error_codes

--- "1 file", "2 files".
function M.plural(n, word)
  return ('%d %s%s'):format(n, word, n == 1 and '' or 's')
end

--- A run's diffStats ({files, additions, deletions}) as "+12 -3 in 2 files"; nil when unknown.
function M.diff_stats(stats)
  if type(stats) ~= 'table' or type(stats.files) ~= 'number' then
    return nil
  end
  return ('+%d -%d in %s'):format(stats.additions or 0, stats.deletions or 0, M.plural(stats.files, 'file'))
end

--- A path as the user would type it (relative to the cwd or ~).
function M.relpath(path)
  return vim.fn.fnamemodify(path, ':~:.')
end

--- Expected protocol errors are warnings; anything else is an error.
---@param err table JSON-RPC error {code, message, data}
---@return string message, integer level
function M.describe_error(err)
  if type(err) ~= 'table' then
    return tostring(err), levels.ERROR
  end
  local msg = err.message or vim.inspect(err)
  local code = err.code
  if type(code) == 'number' and ((code <= -32001 and code >= -32099) or code == -32602) then
    return msg, levels.WARN
  end
  return msg, levels.ERROR
end

--- Is this value a real (non-nil, non-vim.NIL) value?
function M.present(v)
  return v ~= nil and v ~= vim.NIL
end

return M
