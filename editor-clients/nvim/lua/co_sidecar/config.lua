--- Configuration for co-sidecar.nvim: defaults, validation and the resolved vim.lsp config.
local M = {}

M.NAME = 'co_sidecar'

---@class co_sidecar.Config
M.defaults = {
  -- Command that starts the server (stdio). A list, or a function as accepted by vim.lsp.ClientConfig.cmd.
  cmd = { 'co-sidecar', 'serve' },
  -- Files/directories marking the workspace root; falls back to the current directory.
  root_markers = { '.git' },
  -- Server settings, sent as initializationOptions and workspace settings under "co-sidecar"
  -- (e.g. { local = { agentCommand = { "codex", "exec", "{prompt}" } }, cloud = { envId = "..." } }).
  settings = {},
  -- Start the server when a file inside a root (found by root_markers) is opened, instead of
  -- on the first :Co* command.
  autostart = false,
  apply = {
    -- How :CoApply asks for confirmation: "select" (vim.ui.select) or "confirm" (vim.fn.confirm).
    confirm = 'select',
    -- Which buffers to :write after an accepted edit lands:
    --   "unopened": files that were not loaded before the edit (default; open buffers stay
    --               modified so you can review and undo them),
    --   "none":     write nothing (edited files stay in modified buffers until you :wa),
    --   "all":      also write buffers that were already open (including your unsaved edits).
    write = 'unopened',
  },
  notify = {
    -- Show agent output lines as they arrive (throttled); state changes are always shown.
    output = true,
    -- At most one output notification per run per this many milliseconds.
    throttle_ms = 1500,
  },
  diff = {
    -- Where :CoDiff opens the patch: "split", "vsplit", "tab" or "current".
    open = 'split',
  },
  -- Extra vim.lsp.Config fields merged into the client config (capabilities, flags, ...).
  lsp = {},
}

---@type co_sidecar.Config
M.options = vim.deepcopy(M.defaults)
M.did_setup = false

local function check(opts)
  vim.validate('cmd', opts.cmd, { 'table', 'function' })
  vim.validate('root_markers', opts.root_markers, 'table')
  vim.validate('settings', opts.settings, 'table')
  vim.validate('apply.write', opts.apply.write, function(v)
    return v == 'unopened' or v == 'none' or v == 'all'
  end, false, '"unopened", "none" or "all"')
  vim.validate('apply.confirm', opts.apply.confirm, function(v)
    return v == 'select' or v == 'confirm'
  end, false, '"select" or "confirm"')
  vim.validate('diff.open', opts.diff.open, function(v)
    return v == 'split' or v == 'vsplit' or v == 'tab' or v == 'current'
  end, false, '"split", "vsplit", "tab" or "current"')
end

---@param opts? table
function M.set(opts)
  opts = opts or {}
  local merged = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts)
  -- Lists are values, not things to merge element-wise.
  for _, key in ipairs({ 'cmd', 'root_markers' }) do
    if opts[key] ~= nil then
      merged[key] = opts[key]
    end
  end
  check(merged)
  M.options = merged
  M.did_setup = true
  return merged
end

return M
