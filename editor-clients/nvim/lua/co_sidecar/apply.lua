--- The workspace/applyEdit handler for co-sidecar clients.
---
--- The user has already confirmed the whole run in :CoApply before co/apply was sent, so the
--- edit's change annotations (needsConfirmation) are treated as confirmed: Neovim's own
--- apply_workspace_edit would otherwise prompt once per file (0.12) or ignore them (0.11).
--- Text edits go to buffers (files that are not open are loaded) with
--- vim.lsp.util.apply_text_edits, file operations to disk, and afterwards buffers are written
--- according to `apply.write` (see :h co_sidecar-apply). Everything is checked before anything
--- changes: stale buffers, deleting a buffer with unsaved changes, creating over existing files.
local config = require('co_sidecar.config')
local util = require('co_sidecar.util')

local M = {}
local uv = vim.uv or vim.loop

--- Summary of the last edit applied per client id, read by :CoApply to report what happened.
---@type table<integer, table>
M.last = {}

local function fname(uri)
  return vim.fs.normalize(vim.uri_to_fname(uri))
end

local function loaded_buf(path)
  local b = vim.fn.bufnr(path)
  if b ~= -1 and vim.api.nvim_buf_is_loaded(b) then
    return b
  end
end

--- A copy of the edit without change annotations (the user confirmed in :CoApply).
local function strip_annotations(edit)
  edit = vim.deepcopy(edit)
  edit.changeAnnotations = nil
  for _, change in ipairs(edit.documentChanges or {}) do
    change.annotationId = nil
    for _, e in ipairs(change.edits or {}) do
      e.annotationId = nil
    end
  end
  for _, edits in pairs(edit.changes or {}) do
    for _, e in ipairs(edits) do
      e.annotationId = nil
    end
  end
  return edit
end

--- Check the edit against the buffers and files before touching anything.
---@return string? failure_reason
local function precheck(edit)
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.kind == 'delete' then
      local b = loaded_buf(fname(change.uri))
      if b and vim.bo[b].modified then
        return ('%s has unsaved changes and the edit deletes it; save or discard them first'):format(
          vim.fn.fnamemodify(fname(change.uri), ':~:.')
        )
      end
    elseif change.kind == 'create' then
      local opts = change.options or {}
      if uv.fs_stat(fname(change.uri)) and not opts.overwrite and not opts.ignoreIfExists then
        return ('%s already exists; the edit would create it'):format(vim.fn.fnamemodify(fname(change.uri), ':~:.'))
      end
    elseif change.kind == 'rename' then
      local opts = change.options or {}
      if uv.fs_stat(fname(change.newUri)) and not opts.overwrite and not opts.ignoreIfExists then
        return ('%s already exists; the edit would rename %s to it'):format(
          vim.fn.fnamemodify(fname(change.newUri), ':~:.'),
          vim.fn.fnamemodify(fname(change.oldUri), ':~:.')
        )
      end
    elseif change.kind == nil and change.textDocument then
      local td = change.textDocument
      local b = loaded_buf(fname(td.uri))
      if b and util.present(td.version) then
        local current = vim.lsp.util.buf_versions[b] or 0
        if current > td.version then
          return ('%s changed after the edit was computed; run :CoApply again'):format(
            vim.fn.fnamemodify(fname(td.uri), ':~:.')
          )
        end
      end
    end
  end
end

--- Paths the edit touches, with their kind ("edit", "create", "delete", "rename").
local function touched(edit)
  local list = {}
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.kind == 'create' or change.kind == 'delete' then
      list[#list + 1] = { path = fname(change.uri), kind = change.kind }
    elseif change.kind == 'rename' then
      list[#list + 1] = { path = fname(change.newUri), kind = 'rename', from = fname(change.oldUri) }
    elseif change.textDocument then
      list[#list + 1] = { path = fname(change.textDocument.uri), kind = 'edit' }
    end
  end
  for uri in pairs(edit.changes or {}) do
    list[#list + 1] = { path = fname(uri), kind = 'edit' }
  end
  return list
end

--- Neovim represents a file's final newline with 'eol', not with an empty last line. An LSP
--- insert at the end of a document ("line\n" at the line after the last one) or into an empty
--- document would otherwise leave an extra empty line. Adjust such edits to the buffer model.
---@return boolean? noeol the buffer was empty and its new text has no final newline
local function fit_to_buffer(bufnr, edits)
  local count = vim.api.nvim_buf_line_count(bufnr)
  local empty = count == 1 and vim.api.nvim_buf_get_lines(bufnr, 0, 1, false)[1] == ''
  local noeol
  for _, e in ipairs(edits) do
    local s, en = e.range.start, e.range['end']
    local at_end = s.line >= count and en.line >= count
    local into_empty = empty and s.line == 0 and s.character == 0 and en.line <= 1
      and (en.line == 0 and en.character == 0 or en.line == 1)
    if (at_end or into_empty) and e.newText ~= '' then
      if e.newText:sub(-1) == '\n' then
        e.newText = e.newText:sub(1, -2):gsub('\r$', '')
      elseif into_empty then
        noeol = true
      end
    end
  end
  return noeol
end

local function create_file(change)
  local opts = change.options or {}
  local path = fname(change.uri)
  local exists = uv.fs_stat(path) ~= nil
  if exists and not opts.overwrite then
    return -- ignoreIfExists (precheck refused the other case)
  end
  vim.fn.mkdir(vim.fs.dirname(path), 'p')
  local f = assert(io.open(path, 'w'))
  f:close()
  local b = vim.fn.bufnr(path)
  if b ~= -1 and vim.api.nvim_buf_is_loaded(b) then
    vim.api.nvim_buf_call(b, function()
      vim.cmd('silent edit!')
    end)
  end
end

local function delete_file(change)
  local opts = change.options or {}
  local path = fname(change.uri)
  if not uv.fs_stat(path) then
    if opts.ignoreIfNotExists then
      return
    end
    error(path .. ' does not exist')
  end
  if vim.fs.rm then
    vim.fs.rm(path, { recursive = opts.recursive, force = opts.ignoreIfNotExists })
  else
    assert(os.remove(path))
  end
  local b = vim.fn.bufnr(path)
  if b ~= -1 then
    vim.api.nvim_buf_delete(b, { force = true })
  end
end

--- Apply the document changes in order (text edits go to buffers, loading files as needed).
function M.apply_changes(edit, position_encoding)
  local function text_edit(uri, edits)
    local bufnr = vim.uri_to_bufnr(uri)
    if not vim.api.nvim_buf_is_loaded(bufnr) then
      vim.fn.bufload(bufnr)
    else
      -- Close the current undo block so a single `u` reverts exactly this edit.
      vim.api.nvim_buf_call(bufnr, function()
        vim.cmd('let &g:undolevels = &g:undolevels')
      end)
    end
    edits = vim.deepcopy(edits)
    local noeol = fit_to_buffer(bufnr, edits)
    vim.lsp.util.apply_text_edits(edits, bufnr, position_encoding)
    if noeol then
      vim.bo[bufnr].eol = false
      vim.bo[bufnr].fixeol = false
    end
  end
  if edit.documentChanges then
    for _, change in ipairs(edit.documentChanges) do
      if change.kind == 'create' then
        create_file(change)
      elseif change.kind == 'delete' then
        delete_file(change)
      elseif change.kind == 'rename' then
        local opts = change.options or {}
        if not (uv.fs_stat(fname(change.newUri)) and opts.ignoreIfExists and not opts.overwrite) then
          vim.lsp.util.rename(fname(change.oldUri), fname(change.newUri), { overwrite = true })
        end
      elseif change.kind then
        error('unsupported change kind ' .. tostring(change.kind))
      else
        text_edit(change.textDocument.uri, change.edits)
      end
    end
  else
    for uri, edits in pairs(edit.changes or {}) do
      text_edit(uri, edits)
    end
  end
end

local function write_buffer(b)
  vim.api.nvim_buf_call(b, function()
    -- noautocmd: write exactly the accepted text (no format-on-save rewriting it).
    vim.cmd('silent keepalt noautocmd write!')
  end)
end

--- Apply a WorkspaceEdit as co-sidecar does. Returns ApplyWorkspaceEditResult.
---@param edit table lsp.WorkspaceEdit
---@param client_id integer?
---@param position_encoding string
function M.apply(edit, client_id, position_encoding)
  edit = strip_annotations(edit)
  local reason = precheck(edit)
  if reason then
    return { applied = false, failureReason = reason }
  end

  local paths = touched(edit)
  local before = {} ---@type table<string, {loaded: boolean, listed: boolean}>
  for _, p in ipairs(paths) do
    local b = vim.fn.bufnr(p.path)
    before[p.path] = {
      loaded = b ~= -1 and vim.api.nvim_buf_is_loaded(b),
      existed = b ~= -1,
    }
    if p.from then
      local ob = vim.fn.bufnr(p.from)
      local was = ob ~= -1 and vim.api.nvim_buf_is_loaded(ob)
      before[p.path].loaded = before[p.path].loaded or was
      before[p.path].existed = before[p.path].existed or ob ~= -1
    end
  end

  local ok, err = pcall(M.apply_changes, edit, position_encoding)
  if not ok then
    return { applied = false, failureReason = 'Neovim could not apply the edit: ' .. tostring(err) }
  end

  local mode = config.options.apply.write
  local summary = { written = {}, modified = {}, deleted = {}, files = {} }
  local seen = {}
  for _, p in ipairs(paths) do
    if not seen[p.path] then
      seen[p.path] = true
      local rel = vim.fn.fnamemodify(p.path, ':~:.')
      summary.files[#summary.files + 1] = rel
      if p.kind == 'delete' then
        summary.deleted[#summary.deleted + 1] = rel
      else
        local b = vim.fn.bufnr(p.path)
        local was = before[p.path]
        if b ~= -1 and vim.api.nvim_buf_is_loaded(b) then
          local write = mode == 'all' or (mode == 'unopened' and not was.loaded)
          if write and (vim.bo[b].modified or vim.fn.filereadable(p.path) == 0) then
            local wok, werr = pcall(write_buffer, b)
            if not wok then
              return { applied = false, failureReason = ('could not write %s: %s'):format(rel, werr) }
            end
          end
          if vim.bo[b].modified then
            summary.modified[#summary.modified + 1] = rel
          else
            summary.written[#summary.written + 1] = rel
            if not was.existed and mode ~= 'none' then
              -- Loaded only to apply the edit: don't leave it behind in the buffer list.
              pcall(vim.api.nvim_buf_delete, b, {})
            end
          end
        else
          summary.written[#summary.written + 1] = rel
        end
      end
    end
  end
  if client_id then
    M.last[client_id] = summary
  end
  return { applied = true }
end

--- lsp-handler for workspace/applyEdit (server -> client request).
function M.handler(_, params, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not (params and params.edit) then
    return { applied = false, failureReason = 'no edit given' }
  end
  local encoding = client and client.offset_encoding or 'utf-16'
  local result = M.apply(params.edit, ctx.client_id, encoding)
  return result
end

return M
