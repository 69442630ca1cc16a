-- :checkhealth crucible: the Neovim version's features, the server binary and its version,
-- whether the server is shared (and where the shared server's log is), and whether a provider
-- can serve (the running server's crucible/status, else `crucible-lsp doctor --json`).
local client = require('crucible.client')
local compat = require('crucible.compat')

local M = {}

local function neovim(h)
  h.start('crucible: Neovim')
  local v = vim.version()
  local version = string.format('%d.%d.%d', v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.7.2') ~= 1 then
    h.error('Neovim ' .. version .. ' is older than 0.7.2, the oldest Crucible supports')
    return
  end
  h.ok('Neovim ' .. version)
  h.info(
    compat.inline_virt_text and 'ghost text: inline virtual text (0.10+)'
      or 'ghost text: overlay virtual text (inline needs 0.10)'
  )
  h.info(vim.lsp.start and 'client: vim.lsp.start' or 'client: vim.lsp.start_client (0.7)')
  local options = require('crucible').options()
  if vim.lsp.inline_completion then
    h.info(
      'vim.lsp.inline_completion available; renderer: '
        .. (options and options.renderer or 'own')
    )
  end
  if not options then
    h.warn('require("crucible").setup() has not been called')
  end
end

local function run(argv, timeout_ms)
  local output = {}
  local function collect(_, data)
    vim.list_extend(output, data or {})
  end
  local ok, job = pcall(vim.fn.jobstart, argv, { on_stdout = collect, on_stderr = collect })
  if not ok or job <= 0 then
    return nil, 'could not run ' .. argv[1]
  end
  local code = vim.fn.jobwait({ job }, timeout_ms)[1]
  if code == -1 then
    vim.fn.jobstop(job)
    return nil, 'timed out after ' .. timeout_ms .. ' ms'
  end
  -- on_stdout may still be queued: let it run.
  vim.wait(100, function()
    return false
  end)
  return table.concat(output, '\n'), code
end

local function server(h)
  h.start('crucible: server')
  local cmd, why = client.command(require('crucible').options() or {})
  if not cmd then
    h.error(why)
    return false
  end
  h.ok('server command: ' .. table.concat(cmd, ' ') .. ' (' .. vim.fn.exepath(cmd[1]) .. ')')
  local argv = client.tool_command({ '--version' }, require('crucible').options() or {})
  local out, code = run(argv, 10000)
  if out and code == 0 then
    h.ok('version: ' .. vim.trim(out))
  else
    h.error('`' .. table.concat(argv, ' ') .. '` failed: ' .. tostring(out or code))
    return false
  end
  return true
end

local function report_providers(h, status)
  local overall = status.status or {}
  local state = tostring(overall.state)
  local line = 'server state: ' .. state .. (overall.message and (' (' .. overall.message .. ')') or '')
  if state == 'ready' or state == 'busy' then
    h.ok(line)
  elseif state == 'degraded' or state == 'disabled' then
    h.warn(line)
  else
    h.error(line)
  end
  for _, p in ipairs(status.providers or {}) do
    local health = tostring(p.health or p.state)
    local text = string.format('provider %s (%s %s): %s', p.name, p.kind, p.model, health)
    if health == 'ready' or health == 'slow' then
      h.ok(text)
    elseif health == 'rate_limited' then
      h.warn(text .. ' (waiting for its rate limit to reset)')
    else
      h.error(text)
    end
  end
end

--- The running server's crucible/status (this buffer's, else any), or nil and why not.
local function running_status()
  local running = client.get(vim.api.nvim_get_current_buf()) or client.all()[1]
  if not running then
    return nil, nil
  end
  local response = compat.request_sync(running, 'crucible/status', {}, 5000)
  if response and type(response.result) == 'table' then
    return response.result
  end
  return nil, 'crucible/status did not answer: ' .. vim.inspect(response and response.err)
end

-- The shared server's log, as server/crucible/shared/place.py's `log_path` finds it from this
-- Neovim's environment (the one a shared server started from here has; another editor's
-- could differ, which a path in crucible/status would settle).
local function daemon_log()
  local state = vim.env.XDG_STATE_HOME
  if not state or state:sub(1, 1) ~= '/' then
    state = (vim.env.HOME or vim.fn.expand('~')) .. '/.local/state'
  end
  return state .. '/crucible/daemon.log'
end

local function shared(h, status)
  h.start('crucible: shared server')
  local options = require('crucible').options() or {}
  if options.shared == false then
    h.info('shared = false: each workspace root gets a server of its own')
    return
  end
  h.ok(
    'shared = true (the default): a thin client of your one shared server (--shared);'
      .. ' shared = false turns it off'
  )
  h.info("the shared server's log: " .. daemon_log())
  if status == nil then
    return
  end
  if type(status.shared) == 'table' then
    local daemon = status.shared
    local line = 'this session runs in the shared server (pid %s, %s sessions)'
    h.ok(string.format(line, tostring(daemon.pid), tostring(daemon.sessions)))
  else
    -- The thin client found no usable shared server (or the cmd dropped --shared and
    -- CRUCIBLE_SHARED): the window is served, alone.
    h.warn(
      'this session runs in a server of its own: no shared server could be used'
        .. ' (the reason is in :Crucible log)'
    )
  end
end

local function providers(h, status, why_not)
  h.start('crucible: providers')
  if status then
    report_providers(h, status)
    return
  end
  if why_not then
    h.warn(why_not)
  end
  local root = client.root_dir(vim.api.nvim_get_current_buf())
  local argv = client.doctor_command({ '--json', '--workspace', root }, require('crucible').options())
  local out, code = run(argv, 20000)
  local ok, report = pcall(vim.json.decode, out or '')
  if not ok or type(report) ~= 'table' then
    h.error('`crucible-lsp doctor --json` gave no report: ' .. tostring(out or code))
    return
  end
  local verdict = tostring(report.verdict)
  if verdict == 'ready' then
    h.ok('doctor: ' .. verdict)
  elseif verdict == 'degraded' then
    h.warn('doctor: ' .. verdict)
  else
    h.error('doctor: ' .. verdict .. ' (run :Crucible doctor for details)')
  end
end

function M.check()
  local h = compat.health()
  neovim(h)
  local gave_up = require('crucible.restart').given_up()
  if gave_up then
    h.start('crucible: restarts')
    h.error(
      gave_up .. '. :Crucible restart starts it again; the LSP log (:Crucible log) has its stderr'
    )
  elseif client.halted() then
    h.start('crucible: restarts')
    h.info('stopped by :Crucible stop; :Crucible restart starts it again')
  end
  if server(h) then
    local status, why_not = running_status()
    shared(h, status)
    providers(h, status, why_not)
  end
end

return M
