--- Starting the co-sidecar language server client and talking to it.
local config = require('co_sidecar.config')
local util = require('co_sidecar.util')

local M = {}

local NAME = config.NAME
local uv = vim.uv or vim.loop

local function is_file_buffer(bufnr)
  return vim.api.nvim_buf_is_loaded(bufnr)
    and vim.bo[bufnr].buftype == ''
    and vim.api.nvim_buf_get_name(bufnr) ~= ''
end

local function under(path, root)
  return path == root or vim.startswith(path, root == '/' and root or (root .. '/'))
end

local function real(path)
  return vim.fs.normalize(uv.fs_realpath(path) or path)
end

--- The workspace root for a buffer: nearest root marker, else the current directory.
---@param bufnr? integer
---@return string root, boolean found whether a root marker was found
function M.root_for(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local markers = config.options.root_markers
  local root
  if vim.api.nvim_buf_is_valid(bufnr) and is_file_buffer(bufnr) then
    root = vim.fs.root(bufnr, markers)
  end
  root = root or vim.fs.root(vim.fn.getcwd(), markers)
  if root then
    return real(root), true
  end
  return real(vim.fn.getcwd()), false
end

--- Running co-sidecar clients.
---@return vim.lsp.Client[]
function M.clients()
  return vim.lsp.get_clients({ name = NAME })
end

---@param root string
---@return vim.lsp.Client?
function M.get(root)
  for _, client in ipairs(M.clients()) do
    if client.root_dir and real(client.root_dir) == root and not client:is_stopped() then
      return client
    end
  end
end

--- The client for the current buffer's root, if running.
function M.current()
  return M.get((M.root_for()))
end

--- Attach every loaded file buffer under the client's root, so the server knows their
--- (possibly unsaved) text and can compute edits against it.
---@param client vim.lsp.Client
function M.attach_buffers(client)
  local root = real(client.root_dir)
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if is_file_buffer(buf) and under(real(vim.api.nvim_buf_get_name(buf)), root) then
      if not vim.lsp.buf_is_attached(buf, client.id) then
        vim.lsp.buf_attach_client(buf, client.id)
      end
    end
  end
end

--- Attach one buffer to the client whose root contains it (used by BufReadPost/BufNewFile).
function M.attach_if_under_root(bufnr)
  if vim.bo[bufnr].buftype ~= '' then
    return
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' then
    return
  end
  local path = real(name)
  for _, client in ipairs(M.clients()) do
    if client.root_dir and under(path, real(client.root_dir)) and not client:is_stopped() then
      if not vim.lsp.buf_is_attached(bufnr, client.id) then
        vim.lsp.buf_attach_client(bufnr, client.id)
      end
      return
    end
  end
end

local function command_available(cmd)
  if type(cmd) == 'function' then
    return true
  end
  return type(cmd) == 'table' and cmd[1] ~= nil and vim.fn.executable(cmd[1]) == 1
end

M.command_available = command_available

--- The resolved vim.lsp config for co-sidecar (vim.lsp.config merges '*' and lsp/*.lua).
function M.lsp_config()
  local ok, resolved = pcall(function()
    return vim.lsp.config[NAME]
  end)
  return ok and resolved or nil
end

--- Start (or reuse) the client for a root and attach its loaded buffers.
---@param root? string
---@return vim.lsp.Client? client, string? err
function M.ensure(root)
  root = root or (M.root_for())
  local existing = M.get(root)
  if existing then
    return existing
  end
  local cfg = M.lsp_config()
  if not cfg then
    return nil, "no LSP config 'co_sidecar' (is the plugin's lsp/ directory on 'runtimepath'?)"
  end
  if not command_available(cfg.cmd) then
    local first = type(cfg.cmd) == 'table' and cfg.cmd[1] or '?'
    return nil,
      ('server command %q not found; install the server (:help co_sidecar-install) or set cmd (:checkhealth co_sidecar)'):format(
        tostring(first)
      )
  end
  cfg = vim.deepcopy(cfg)
  cfg.name = NAME
  cfg.root_dir = root
  cfg.workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fs.basename(root) } }
  local id = vim.lsp.start(cfg, { attach = false, silent = true })
  if not id and vim.lsp.start_client then
    -- Older 0.11 builds without `attach = false`: create the client without a buffer.
    id = vim.lsp.start_client(cfg)
  end
  local client = id and vim.lsp.get_client_by_id(id)
  if not client then
    return nil, 'could not start the server (' .. table.concat(type(cfg.cmd) == 'table' and cfg.cmd or {}, ' ') .. '); see :LspLog'
  end
  M.attach_buffers(client)
  return client
end

--- Call fn(err) once the client has finished initializing (or failed to).
---@param client vim.lsp.Client
---@param fn fun(err: string?)
function M.when_ready(client, fn)
  if client.initialized then
    return fn()
  end
  local waited = 0
  local timer = assert(uv.new_timer())
  timer:start(
    20,
    20,
    vim.schedule_wrap(function()
      waited = waited + 20
      if timer:is_closing() then
        return
      end
      if client.initialized then
        timer:stop()
        timer:close()
        fn()
      elseif client:is_stopped() or waited > 20000 then
        timer:stop()
        timer:close()
        fn(client:is_stopped() and 'the server exited during startup; see :LspLog' or 'the server did not finish starting')
      end
    end)
  )
end

--- Send a co/* request. cb(err, result) where err is a JSON-RPC error table (or {message=...}).
---@param client vim.lsp.Client
---@param method string
---@param params table
---@param cb fun(err: table?, result: any)
function M.request(client, method, params, cb)
  M.when_ready(client, function(start_err)
    if start_err then
      return cb({ message = start_err })
    end
    local ok = client:request(method, params, function(err, result)
      cb(err, result)
    end)
    if not ok then
      cb({ message = 'the server is not running' })
    end
  end)
end

--- Synchronous request (for completion and :checkhealth); nil on timeout or error.
---@return any result, table? err
function M.request_sync(client, method, params, timeout_ms)
  if not client.initialized then
    vim.wait(timeout_ms or 1000, function()
      return client.initialized or client:is_stopped()
    end, 20)
  end
  if not client.initialized then
    return nil, { message = 'the server is not ready' }
  end
  local response, err = client:request_sync(method, params, timeout_ms or 1000)
  if not response then
    return nil, { message = err or 'no response' }
  end
  if response.err then
    return nil, response.err
  end
  return response.result
end

--- Report a request error to the user with the right level.
function M.report(err, context)
  local msg, level = util.describe_error(err)
  util.notify((context and (context .. ': ') or '') .. msg, level)
end

return M
