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
-- The Lua API: each action lives in the module of its concern.
--------------------------------------------------------------------------------------------

local runs = require('co_sidecar.runs')
local diffview = require('co_sidecar.diffview')
local accept = require('co_sidecar.accept')

M.run = runs.run
M.status = runs.status
M.list = runs.list
M.actions = runs.actions
M.cancel = runs.cancel
M.reject = runs.reject
M.follow_up = runs.follow_up
M.diff = diffview.diff
M.show_diff = diffview.show_diff
M.apply = accept.apply

--- Statusline component, e.g. `set statusline+=%{v:lua.require'co_sidecar'.statusline()}`.
function M.statusline()
  return progress.statusline()
end

--- The run id commands default to (the last run started from this Neovim), if any.
function M.current_run()
  return state.last_run_id
end

return M
