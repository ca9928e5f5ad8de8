--- The file checklist :CoApply shows before applying part of a run: one line per file with what
--- the server's dry run says would happen to it. x (or <Space>) ticks/unticks the file under the
--- cursor, <CR> applies the ticked files, M applies them with git writing conflict markers into
--- the conflicting ones, q cancels. Files that would conflict or be skipped start unticked.
local util = require('co_sidecar.util')

local M = {}

local LETTER = { added = 'A', modified = 'M', deleted = 'D', renamed = 'R', binary = 'B' }
local WORDS = {
  clean = nil,
  merged = '3-way merge',
  conflict = 'conflict',
  skipped = 'skipped',
  already_applied = 'already applied',
}

local function stats_by_path(diff)
  local out = {}
  for _, f in ipairs(diff.files or {}) do
    out[f.path] = f
  end
  return out
end

--- What to do about a file the dry run would not apply, in this plugin's words.
function M.advice(file)
  if file.outcome == 'conflict' then
    return 'fix it (save or undo your change there) and :CoApply again, leave it unticked, '
      .. 'or tick it and press M for git conflict markers'
  end
  return nil
end

--- Open the checklist. ctx: {id, files (dry-run ApplyFile list), diff (DiffResult),
--- apply = function(paths, markers)} — paths: the ticked files, markers: M was pressed.
---@return integer buf
function M.open(ctx)
  local name = 'co-sidecar://' .. ctx.id .. '.apply'
  local old = vim.fn.bufnr(name)
  if old ~= -1 then
    vim.api.nvim_buf_delete(old, { force = true })
  end
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_name(buf, name)
  local stats = stats_by_path(ctx.diff)
  local ticked, order = {}, {}
  for _, f in ipairs(ctx.files) do
    order[#order + 1] = f
    ticked[f.path] = f.outcome == 'clean' or f.outcome == 'merged' or f.outcome == 'already_applied'
  end
  local first_file_line
  local function render()
    local lines = {
      ('# apply run %s: x ticks or unticks a file, <CR> applies the ticked files, M the same with git conflict markers, q cancels'):format(
        util.short(ctx.id)
      ),
    }
    first_file_line = #lines + 1
    for _, f in ipairs(order) do
      local s = stats[f.path] or {}
      local name = (f.oldPath and f.oldPath ~= vim.NIL) and (f.oldPath .. ' → ' .. f.path) or f.path
      local line = ('[%s] %s %s +%d -%d'):format(
        ticked[f.path] and 'x' or ' ',
        LETTER[f.status] or '?',
        name,
        s.additions or 0,
        s.deletions or 0
      )
      local word = WORDS[f.outcome]
      if word then
        local reason = util.present(f.reason) and (': ' .. f.reason) or ''
        line = line .. '  (' .. word .. reason .. ')'
        local advice = M.advice(f)
        if advice then
          line = line .. ' — ' .. advice
        end
      end
      lines[#lines + 1] = line
    end
    vim.bo[buf].modifiable = true
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].modifiable = false
    vim.bo[buf].modified = false
  end
  local function file_at_cursor()
    local row = vim.api.nvim_win_get_cursor(0)[1]
    return order[row - first_file_line + 1]
  end
  local function toggle()
    local f = file_at_cursor()
    if f then
      ticked[f.path] = not ticked[f.path]
      local cursor = vim.api.nvim_win_get_cursor(0)
      render()
      vim.api.nvim_win_set_cursor(0, cursor)
    end
  end
  local function finish(markers)
    local paths = {}
    for _, f in ipairs(order) do
      if ticked[f.path] then
        paths[#paths + 1] = f.path
      end
    end
    pcall(vim.cmd, 'close')
    if #paths == 0 then
      util.notify(('nothing ticked; run %s was not applied'):format(util.short(ctx.id)))
      return
    end
    ctx.apply(paths, markers)
  end
  render()
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.b[buf].co_sidecar_run_id = ctx.id
  local map = function(lhs, fn, desc)
    vim.keymap.set('n', lhs, fn, { buffer = buf, silent = true, nowait = true, desc = 'co-sidecar: ' .. desc })
  end
  map('x', toggle, 'tick or untick the file')
  map('<Space>', toggle, 'tick or untick the file')
  map('<CR>', function()
    finish(false)
  end, 'apply the ticked files')
  map('M', function()
    finish(true)
  end, 'apply the ticked files, with conflict markers')
  map('q', function()
    pcall(vim.cmd, 'close')
    util.notify(('apply cancelled; run %s is unchanged (:CoReject to decline it)'):format(util.short(ctx.id)))
  end, 'cancel')
  vim.cmd('botright sbuffer ' .. buf)
  vim.api.nvim_win_set_cursor(0, { math.min(first_file_line, vim.api.nvim_buf_line_count(buf)), 0 })
  return buf
end

return M
