--- :CoApply: confirm, then co/apply (the server sends workspace/applyEdit).
local apply = require('co_sidecar.apply')
local client_mod = require('co_sidecar.client')
local config = require('co_sidecar.config')
local diffview = require('co_sidecar.diffview')
local state = require('co_sidecar.state')
local target = require('co_sidecar.target')
local util = require('co_sidecar.util')

local M = {}
local levels = vim.log.levels
local plural = util.plural

--- Ask yes/no. cb(true) only on an explicit yes.
local function confirm(question, yes_label, cb)
  if config.options.apply.confirm == 'confirm' then
    local ok, choice = pcall(vim.fn.confirm, question, '&Yes\n&No', 2, 'Question')
    cb(ok and choice == 1)
    return
  end
  vim.ui.select({ yes_label, 'Cancel' }, { prompt = question, kind = 'co_sidecar.confirm' }, function(_, idx)
    cb(idx == 1)
  end)
end

local function report_applied(id, client, result)
  local s = apply.last[client.id]
  apply.last[client.id] = nil
  local paths = result.paths or {}
  local msg = ('applied run %s: %s'):format(util.short(id), plural(s and #s.files or #paths, 'file'))
  if s then
    local parts = {}
    if #s.written > 0 then
      parts[#parts + 1] = 'on disk: ' .. table.concat(s.written, ', ')
    end
    if #s.deleted > 0 then
      parts[#parts + 1] = 'deleted: ' .. table.concat(s.deleted, ', ')
    end
    if #s.modified > 0 then
      parts[#parts + 1] = 'modified buffers (review, then :w or u): ' .. table.concat(s.modified, ', ')
    end
    if #parts > 0 then
      msg = msg .. ' (' .. table.concat(parts, '; ') .. ')'
    end
  end
  util.notify(msg)
end

--- Accept a run's diff: confirm, then co/apply (the server sends workspace/applyEdit).
---@param arg string? run id
---@param opts? {force: boolean?, attempt: integer?}
function M.apply(arg, opts)
  opts = opts or {}
  target.with_run(arg, function(id, client)
    local short = util.short(id)
    client_mod.request(client, 'co/status', { runId = id }, function(serr, rec)
      if serr then
        return client_mod.report(serr)
      end
      state.update(id, { state = rec.state, prompt = rec.prompt, client_id = client.id })
      if rec.state ~= 'succeeded' then
        local why = state.ACTIVE[rec.state] and 'wait for it to finish'
          or (rec.state == 'applied' and 'it was already applied')
          or 'only a succeeded run can be applied'
        util.notify(('run %s is %s; %s'):format(short, rec.state, why), levels.WARN)
        return
      end
      local dparams = { runId = id, attempt = opts.attempt }
      client_mod.request(client, 'co/diff', dparams, function(derr, diff)
        if derr then
          return client_mod.report(derr)
        end
        if #(diff.files or {}) == 0 then
          util.notify(('run %s made no changes; nothing to apply'):format(short))
          return
        end
        local names = {}
        for i, f in ipairs(diff.files) do
          if i > 3 then
            names[#names + 1] = '…'
            break
          end
          names[#names + 1] = f.path
        end
        local question = ('co-sidecar: apply run %s (%s) to %s? %s: %s'):format(
          short,
          util.summary(rec.prompt, 40),
          vim.fs.basename(client.root_dir),
          diffview.summary(diff),
          table.concat(names, ', ')
        )
        if #(diff.conflicts or {}) > 0 then
          question = question .. (' [%s]'):format(plural(#diff.conflicts, 'conflict'))
        end
        confirm(question, 'Apply', function(yes)
          if not yes then
            util.notify(('apply cancelled; run %s is still %s (:CoReject to decline it)'):format(short, rec.state))
            return
          end
          local params = { runId = id, accept = true }
          if opts.force then
            params.force = true
          end
          if opts.attempt then
            params.attempt = opts.attempt
          end
          client_mod.request(client, 'co/apply', params, function(err, result)
            if err then
              apply.last[client.id] = nil
              if type(err.data) == 'table' and err.data.category == 'over_budget' then
                err = vim.tbl_extend('force', err, { message = err.message .. ' (:CoApply! applies it anyway)' })
              end
              return client_mod.report(err, ('run %s was not applied'):format(short))
            end
            if result.applied then
              state.update(id, { state = 'applied' })
              report_applied(id, client, result)
            else
              apply.last[client.id] = nil
              local lines = {
                ('run %s was not applied: %s'):format(short, result.failureReason or 'the edit was refused'),
              }
              local reason = lines[1]
              for _, c in ipairs(result.conflicts or {}) do
                if not reason:find(c.reason, 1, true) then
                  lines[#lines + 1] = ('  %s: %s'):format(c.path, c.reason)
                end
              end
              util.notify(table.concat(lines, '\n'), levels.WARN)
            end
          end)
        end)
      end)
    end)
  end)
end

return M
