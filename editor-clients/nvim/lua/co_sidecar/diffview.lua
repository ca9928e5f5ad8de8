--- :CoDiff: a run's patch in a scratch buffer.
local client_mod = require('co_sidecar.client')
local config = require('co_sidecar.config')
local state = require('co_sidecar.state')
local target = require('co_sidecar.target')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local plural = util.plural

local function find_buffer(name)
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(b) == name then
      return b
    end
  end
end

function M.summary(result)
  local adds, dels = 0, 0
  for _, f in ipairs(result.files or {}) do
    adds = adds + (f.additions or 0)
    dels = dels + (f.deletions or 0)
  end
  return ('%s, +%d -%d'):format(plural(#(result.files or {}), 'file'), adds, dels)
end

--- Show a co/diff result in a scratch buffer (filetype=diff). Returns the buffer.
function M.show_diff(result)
  local id = result.runId
  local name = 'co-sidecar://' .. id .. '.diff'
  local buf = find_buffer(name)
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
  end
  local run = state.runs[id]
  local lines = {
    ('# co-sidecar run %s%s: %s'):format(
      id,
      (run and run.state) and (' (' .. run.state .. ')') or '',
      M.summary(result)
    ),
  }
  if run and run.prompt then
    lines[#lines + 1] = '# prompt: ' .. util.summary(run.prompt, 100)
  end
  for _, c in ipairs(result.conflicts or {}) do
    lines[#lines + 1] = ('# conflict: %s: %s'):format(c.path, c.reason)
  end
  lines[#lines + 1] = '# :CoApply accepts it, :CoReject declines it, q closes this window'
  vim.list_extend(lines, vim.split(result.patch or '', '\n', { plain = true, trimempty = false }))
  if lines[#lines] == '' then
    lines[#lines] = nil
  end
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.bo[buf].filetype = 'diff'
  vim.b[buf].co_sidecar_run_id = id
  vim.keymap.set('n', 'q', '<cmd>close<cr>', { buffer = buf, silent = true, desc = 'co-sidecar: close diff' })

  local win = vim.fn.bufwinid(buf)
  if win ~= -1 then
    vim.api.nvim_set_current_win(win)
  else
    local open = config.options.diff.open
    if open == 'current' then
      vim.api.nvim_set_current_buf(buf)
    else
      local mods = ({ split = '', vsplit = 'vertical ', tab = 'tab ' })[open] or ''
      vim.cmd(mods .. 'sbuffer ' .. buf)
    end
  end
  return buf
end

--- Show a run's patch in a scratch buffer.
function M.diff(arg, opts)
  opts = opts or {}
  target.with_run(arg, function(id, client)
    local params = { runId = id }
    if opts.attempt then
      params.attempt = opts.attempt
    end
    client_mod.request(client, 'co/diff', params, function(err, result)
      if err then
        return client_mod.report(err)
      end
      if (result.patch or '') == '' then
        util.notify(('run %s made no changes'):format(util.short(id)))
        return
      end
      M.show_diff(result)
      if #(result.conflicts or {}) > 0 then
        util.notify(
          ('run %s: %s with the workspace, see the diff header'):format(
            util.short(id),
            plural(#result.conflicts, 'conflict')
          ),
          levels.WARN
        )
      end
    end)
  end)
end

return M
