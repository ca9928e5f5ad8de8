--- :checkhealth co_sidecar
local M = {}

function M.check()
  local health = vim.health
  local config = require('co_sidecar.config')
  local client_mod = require('co_sidecar.client')

  health.start('co-sidecar: Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version)
  else
    health.error('Neovim ' .. version .. ' is too old', { 'co-sidecar.nvim needs Neovim 0.11 or newer' })
  end
  if config.did_setup then
    health.ok('setup() called: its options are in effect')
  else
    health.info("setup() not called (not needed): the defaults and lsp/co_sidecar.lua are used")
  end
  local enabled = vim.lsp.is_enabled and vim.lsp.is_enabled(config.NAME)
  if enabled then
    health.ok("vim.lsp.enable('co_sidecar'): the server starts for files in a workspace root")
  else
    health.info("vim.lsp.enable('co_sidecar') not called: the server starts on the first :Co command")
  end
  if #vim.fn.getcompletion('co_sidecar', 'help') > 0 then
    health.ok('help tags found (doc/tags): the :help pages work')
  else
    health.warn(':help co_sidecar has no tags', { 'Run :helptags ALL, or install the plugin with its doc/tags' })
  end

  health.start('co-sidecar: server command')
  local cfg = client_mod.lsp_config()
  local cmd = (cfg and cfg.cmd) or config.options.cmd
  if type(cmd) == 'function' then
    health.info('cmd is a function; cannot check it before starting')
  elseif type(cmd) == 'table' and cmd[1] then
    local shown = table.concat(cmd, ' ')
    if vim.fn.executable(cmd[1]) == 1 then
      health.ok(('`%s` found (%s)'):format(shown, vim.fn.exepath(cmd[1])))
    else
      health.error(('`%s` not found'):format(cmd[1]), {
        'Install the server from a clone of the co-sidecar repository: '
          .. '`pipx install /path/to/co-sidecar` or `uv tool install /path/to/co-sidecar` (:help co_sidecar-install)',
        "Or point cmd at it: vim.lsp.config('co_sidecar', { cmd = { '/path/to/venv/bin/co-sidecar', 'serve' } })",
      })
    end
  else
    health.error('cmd is not set', { "vim.lsp.config('co_sidecar', { cmd = { 'co-sidecar', 'serve' } })" })
  end

  health.start('co-sidecar: server')
  local clients = client_mod.clients()
  if #clients == 0 then
    local root = client_mod.root_for()
    health.info(('not running; it starts for %s on the first :Co command'):format(root))
    return
  end
  for _, client in ipairs(clients) do
    health.ok(('running for %s (client id %d)'):format(client.root_dir or '?', client.id))
    local result, err = client_mod.request_sync(client, 'co/doctor', {}, 10000)
    if not result then
      health.warn('co/doctor failed: ' .. tostring(err and err.message or err))
    else
      for _, check in ipairs(result.checks or {}) do
        local text = ('%s: %s'):format(check.name, check.message)
        if check.ok then
          health.ok(text)
        else
          local advice = (check.fix ~= nil and check.fix ~= vim.NIL) and { check.fix } or nil
          health.warn(text, advice)
        end
      end
      local function readiness(mode, r)
        if type(r) ~= 'table' then
          return
        end
        if r.ok then
          health.ok(mode .. ' mode ready')
        elseif #(result.checks or {}) > 0 then
          health.info(('%s mode not ready (%d issue(s) above)'):format(mode, #(r.issues or {})))
        else
          local issues = {}
          for _, i in ipairs(r.issues or {}) do
            issues[#issues + 1] = i.message .. ((i.fix and i.fix ~= vim.NIL) and (' — ' .. i.fix) or '')
          end
          health.warn(mode .. ' mode not ready', issues)
        end
      end
      readiness('local', result['local'])
      readiness('cloud', result.cloud)
      if result.defaultMode then
        health.info(('default mode: %s, cloud fallback: %s'):format(result.defaultMode, tostring(result.fallbackPolicy)))
      end
    end
  end
end

return M
