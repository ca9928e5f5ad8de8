-- co-sidecar.nvim: user commands. Configuration: require("co_sidecar").setup{...} (:h co_sidecar).
if vim.g.loaded_co_sidecar then
  return
end
vim.g.loaded_co_sidecar = true

if vim.fn.has('nvim-0.11') == 0 then
  vim.api.nvim_echo({ { 'co-sidecar: requires Neovim 0.11 or newer', 'WarningMsg' } }, true, {})
  return
end

require('co_sidecar.commands').create()
