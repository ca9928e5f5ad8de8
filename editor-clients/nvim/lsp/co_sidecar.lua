--- co-sidecar as a Neovim 0.11+ LSP config (:h lsp-config). With the plugin installed,
---
---     vim.lsp.enable('co_sidecar')
---
--- starts the server for files inside a workspace root (the nearest `.git`, or setup()'s
--- `root_markers`), and the :Co commands use that client. No setup() needed; change fields with
--- vim.lsp.config('co_sidecar', { cmd = { '/path/to/co-sidecar', 'serve' } }) and server
--- settings with init_options = { ['co-sidecar'] = { ... } } (or a co-sidecar.toml).
---@type vim.lsp.Config
return {
  cmd = { 'co-sidecar', 'serve' },
  -- Only files inside a root: the server works on a repository, never on a lone file.
  root_dir = function(bufnr, on_dir)
    local root = vim.fs.root(bufnr, require('co_sidecar.config').options.root_markers)
    if root then
      on_dir(root)
    end
  end,
  handlers = {
    ['co/runUpdate'] = function(...)
      return require('co_sidecar.progress').on_run_update(...)
    end,
    ['workspace/applyEdit'] = function(...)
      return require('co_sidecar.apply').handler(...)
    end,
  },
  on_exit = function(...)
    require('co_sidecar')._on_exit(...)
  end,
}
