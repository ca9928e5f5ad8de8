-- Minimal init for the plugin tests: the plugin on 'runtimepath', setup() from $CO_NVIM_TEST_CONFIG.
local here = vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2))
local plugin = vim.fs.normalize(here .. '/../../editor-clients/nvim')
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'
vim.o.more = false
local cfg = vim.json.decode(vim.env.CO_NVIM_TEST_CONFIG or '{}')
require('co_sidecar').setup(cfg)
