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

--- Ask before acting. cb('yes') only on an explicit yes; with `choose_label`, a third answer
--- cb('choose') (e.g. "Choose files…"); anything else cb('no').
local function ask(question, yes_label, cb, choose_label)
  if config.options.apply.confirm == 'confirm' then
    local buttons = '&Yes\n&No' .. (choose_label and '\n&Choose files' or '')
    local ok, choice = pcall(vim.fn.confirm, question, buttons, 2, 'Question')
    cb(ok and ({ 'yes', 'no', 'choose' })[choice] or 'no')
    return
  end
  local items = { yes_label, 'Cancel', choose_label }
  vim.ui.select(items, { prompt = question, kind = 'co_sidecar.confirm' }, function(_, idx)
    cb(({ 'yes', 'no', 'choose' })[idx or 2] or 'no')
  end)
end

--- Ask yes/no. cb(true) only on an explicit yes.
function M.confirm(question, yes_label, cb)
  ask(question, yes_label, function(answer)
    cb(answer == 'yes')
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

local APPLICABLE = { succeeded = true, partially_applied = true }

--- What to say about files an apply left or refused, each with what to do next.
local function file_lines(result)
  local lines = {}
  for _, f in ipairs(result.files or {}) do
    if (f.outcome == 'conflict' or f.outcome == 'skipped') and not f.written then
      local advice = f.outcome == 'conflict' and ' — save or undo your change there and :CoApply again, or untick it in the :CoApply checklist'
        or ''
      lines[#lines + 1] = ('  %s: %s%s'):format(f.path, f.reason or f.outcome, advice)
    end
  end
  return lines
end

local function report_result(id, client, result)
  local short = util.short(id)
  if result.applied then
    local left = result.remaining or {}
    state.update(id, { state = #left > 0 and 'partially_applied' or 'applied' })
    if result.outcome == 'conflicts' then
      apply.last[client.id] = nil
      util.notify(
        ('applied run %s with git conflict markers in %s: resolve them (search for <<<<<<<), then save'):format(
          short,
          table.concat(result.conflictPaths or {}, ', ')
        ),
        levels.WARN
      )
    elseif result.outcome == 'applied' or #(result.skippedPaths or {}) == 0 then
      report_applied(id, client, result)
    else
      apply.last[client.id] = nil
      local lines = { ('applied part of run %s; not applied:'):format(short) }
      vim.list_extend(lines, file_lines(result))
      util.notify(table.concat(lines, '\n'), levels.WARN)
    end
    if #left > 0 then
      util.notify(
        ('run %s: %s left (%s): :CoApply applies the rest, :CoReject declines it'):format(
          short,
          plural(#left, 'file'),
          table.concat(left, ', ')
        )
      )
    end
    if result.strategy == 'git' then
      vim.cmd('silent! checktime') -- git wrote the files: reload unmodified buffers
    end
    return
  end
  apply.last[client.id] = nil
  local lines = file_lines(result)
  local head = ('run %s was not applied: %s'):format(
    short,
    #lines > 0 and 'nothing was written' or (result.failureReason or 'the edit was refused')
  )
  table.insert(lines, 1, head)
  util.notify(table.concat(lines, '\n'), levels.WARN)
end

--- co/apply for real, with a selection (paths and/or hunks) or none (the whole rest).
local function send(id, client, opts, selection)
  local params = { runId = id, accept = true }
  if opts.force then
    params.force = true
  end
  if opts.attempt then
    params.attempt = opts.attempt
  end
  for k, v in pairs(selection or {}) do
    params[k] = v
  end
  client_mod.request(client, 'co/apply', params, function(err, result)
    if err then
      apply.last[client.id] = nil
      if type(err.data) == 'table' and err.data.category == 'over_budget' then
        err = vim.tbl_extend('force', err, { message = err.message .. ' (:CoApply! applies it anyway)' })
      end
      return client_mod.report(err, ('run %s was not applied'):format(util.short(id)))
    end
    report_result(id, client, result)
  end)
end

--- Accept a run's diff: a dry run first, then a confirmation (or the file checklist when a file
--- would not apply cleanly, or when the user asks to choose), then co/apply; the server sends
--- workspace/applyEdit.
---@param arg string? run id
---@param opts? {force: boolean?, attempt: integer?, choose: boolean?, selection: table?, selected: string?}
function M.apply(arg, opts)
  opts = opts or {}
  target.with_run(arg, function(id, client)
    local short = util.short(id)
    client_mod.request(client, 'co/status', { runId = id }, function(serr, rec)
      if serr then
        return client_mod.report(serr)
      end
      state.update(id, { state = rec.state, prompt = rec.prompt, client_id = client.id })
      if not APPLICABLE[rec.state] then
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
        local dry = { runId = id, dryRun = true, attempt = opts.attempt, force = opts.force or nil }
        for k, v in pairs(opts.selection or {}) do
          dry[k] = v
        end
        client_mod.request(client, 'co/apply', dry, function(perr, plan)
          if perr then
            return client_mod.report(perr)
          end
          if plan.overBudget and not opts.force then
            util.notify(
              ('run %s is over the diff budget (%s); :CoApply! applies it anyway'):format(short, plan.files[1].reason),
              levels.WARN
            )
            return
          end
          local blocked = 0
          for _, f in ipairs(plan.files or {}) do
            if f.outcome == 'conflict' or f.outcome == 'skipped' then
              blocked = blocked + 1
            end
          end
          local function checklist()
            require('co_sidecar.checklist').open({
              id = id,
              files = plan.files,
              diff = diff,
              apply = function(paths, markers)
                local sel = #paths < #plan.files and { files = paths } or {}
                if markers then
                  sel.strategy, sel.onConflict = 'git', 'markers'
                end
                send(id, client, opts, sel)
              end,
            })
            if blocked > 0 then
              local lines = { ('run %s: %s would not apply cleanly; they are unticked:'):format(short, plural(blocked, 'file')) }
              vim.list_extend(lines, file_lines(plan))
              util.notify(table.concat(lines, '\n'), levels.WARN)
            end
          end
          if opts.selection then
            if blocked > 0 then
              local lines = { ('run %s: the hunks you kept would not apply cleanly; nothing was written:'):format(short) }
              vim.list_extend(lines, file_lines(plan))
              util.notify(table.concat(lines, '\n'), levels.WARN)
              return
            end
            local question = ('co-sidecar: apply %s of run %s (%s)?'):format(opts.selected or 'the hunks kept', short, util.summary(rec.prompt, 40))
            M.confirm(question, 'Apply', function(yes)
              if yes then
                send(id, client, opts, opts.selection)
              else
                util.notify(('apply cancelled; run %s is still %s'):format(short, rec.state))
              end
            end)
            return
          end
          if blocked > 0 or opts.choose then
            return checklist()
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
          ask(question, 'Apply', function(answer)
            if answer == 'choose' then
              return checklist()
            end
            if answer ~= 'yes' then
              util.notify(('apply cancelled; run %s is still %s (:CoReject to decline it)'):format(short, rec.state))
              return
            end
            send(id, client, opts, nil)
          end, 'Choose files…')
        end)
      end)
    end)
  end)
end

return M
