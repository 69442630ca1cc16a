-- Finding, starting and attaching crucible-lsp, one client per workspace root, on every
-- Neovim from 0.7.2: vim.lsp.start (0.8+) with the configuration registered through
-- vim.lsp.config where it exists (0.11+, so `vim.lsp.config('crucible', {...})` overrides
-- apply and :checkhealth vim.lsp lists it), vim.lsp.start_client + buf_attach_client on 0.7.
-- Attaching is this module's own (BufEnter/FileType autocommands), not vim.lsp.enable's:
-- enable attaches on FileType only, so a file without a filetype would get no suggestions.
local compat = require('crucible.compat')
local hooks = require('crucible.hooks')

local M = {}

M.NAME = 'crucible'

local options -- set by M.configure
local roots = {} -- 0.7 only: root_dir -> client id
local statuses = {} -- client id -> last crucible/didChangeStatus params
local served = {} -- bufnr -> id of the client the plugin attached it to (re-attached on restart)
local stopping = {} -- client id -> true: stopped on purpose by :Crucible stop / restart
local after_stop -- :Crucible restart: called once every client it stopped has exited
local halted = false -- :Crucible stop, or restarts given up: attach starts no server
local warned_missing = false

local SHARED = '--shared'

--- cmd, with --shared after it when the shared option is on (once, and a copy: the user's
--- list is left as it is). The user's own cmd too: the option says which server they want,
--- and `crucible-lsp`, `python -m crucible` or a wrapper that passes its arguments on takes
--- it; a wrapper that does not still gets the option through the environment (M.command_env).
local function with_shared(cmd, shared)
  if shared == false or vim.tbl_contains(cmd, SHARED) then
    return cmd
  end
  local argv = vim.list_extend({}, cmd)
  argv[#argv + 1] = SHARED
  return argv
end

--- The argv that starts the server, or nil and why not.
function M.command(opts)
  opts = opts or options or {}
  if opts.cmd then
    local cmd = type(opts.cmd) == 'string' and { opts.cmd } or opts.cmd
    if vim.fn.executable(cmd[1]) == 1 then
      return with_shared(cmd, opts.shared)
    end
    return nil, string.format('%s (from the cmd option) is not executable', cmd[1])
  end
  if vim.fn.executable('crucible-lsp') == 1 then
    return with_shared({ 'crucible-lsp', '--stdio' }, opts.shared)
  end
  return nil, 'crucible-lsp is not on PATH (pip install crucible-lsp, or set the cmd option)'
end

--- What the server's process gets in its environment beyond Neovim's: CRUCIBLE_SHARED, set
--- from the shared option either way, so that the option reaches a server behind a wrapper
--- that drops its arguments (or a cmd set with vim.lsp.config, which gets no --shared), and
--- so that `shared = false` wins over a CRUCIBLE_SHARED=1 exported for other editors.
function M.command_env(opts)
  opts = opts or options or {}
  return { CRUCIBLE_SHARED = opts.shared == false and '0' or '1' }
end

--- `crucible-lsp doctor ...` with the editor's settings as its --config file.
function M.doctor_command(args, opts)
  opts = opts or options or {}
  local argv = { 'doctor' }
  if opts.settings and next(opts.settings) ~= nil then
    vim.list_extend(argv, { '--config', require('crucible.toml').write_temp(opts.settings) })
  end
  return M.tool_command(vim.list_extend(argv, args), opts)
end

--- The same program with other arguments (doctor, --version): argv without --stdio.
function M.tool_command(args, opts)
  local cmd, why = M.command(opts)
  if not cmd then
    return nil, why
  end
  local argv = {}
  for _, arg in ipairs(cmd) do
    if arg ~= '--stdio' and arg ~= SHARED then
      argv[#argv + 1] = arg
    end
  end
  vim.list_extend(argv, args)
  return argv
end

function M.root_dir(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local start = name ~= '' and vim.fn.fnamemodify(name, ':p:h') or vim.fn.getcwd()
  local markers = (options or require('crucible.config').defaults).root_markers
  for _, marker in ipairs(markers) do
    local found = vim.fn.findfile(marker, start .. ';')
    if found == '' then
      found = vim.fn.finddir(marker, start .. ';')
    end
    if found ~= '' then
      return vim.fn.fnamemodify(vim.fn.fnamemodify(found, ':p'):gsub('/$', ''), ':h')
    end
  end
  return vim.fn.getcwd()
end

--- Whether the plugin attaches to this buffer: a file buffer whose filetype passes the lists.
function M.wanted(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= '' then
    return false
  end
  if vim.api.nvim_buf_get_name(bufnr) == '' then
    return false
  end
  local ft = vim.bo[bufnr].filetype
  local lists = options.filetypes
  if #lists.include > 0 and not vim.tbl_contains(lists.include, ft) then
    return false
  end
  return not vim.tbl_contains(lists.exclude, ft)
end

local function on_status(_, params, ctx)
  statuses[ctx.client_id] = params
  pcall(vim.api.nvim_exec_autocmds, 'User', { pattern = 'CrucibleStatus', modeline = false })
  pcall(vim.cmd, 'redrawstatus')
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  -- 0.12 announces it itself; before that the plugin is the client that renders it.
  caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion
    or { dynamicRegistration = false }
  return caps
end

-- Whether an exit is one to restart after: not asked for (by the plugin, or by anyone through
-- shutdown + exit, which ends the server with 0), not Neovim quitting (core stops every
-- client then, and kills with SIGTERM a server that is slow to go).
local function unexpected(code, signal, client_id)
  if stopping[client_id] or vim.v.exiting ~= vim.NIL then
    return false
  end
  return code ~= 0 or (signal ~= nil and signal ~= 0)
end

-- Runs in a fast event on 0.7 (libuv's exit callback): the tables here, the rest scheduled.
local function on_exit(code, signal, client_id)
  statuses[client_id] = nil
  for root, id in pairs(roots) do
    if id == client_id then
      roots[root] = nil
    end
  end
  local buffers = {}
  for buf, id in pairs(served) do
    if id == client_id then
      buffers[#buffers + 1] = buf
      served[buf] = nil
    end
  end
  local restart = unexpected(code, signal, client_id)
  stopping[client_id] = nil
  vim.schedule(function()
    if after_stop and next(stopping) == nil then
      local resume = after_stop
      after_stop = nil
      resume()
    end
    local opts = options or {}
    if restart and opts.restart ~= false and not halted then
      require('crucible.restart').on_unexpected_exit(code, signal, buffers, M.reattach, function()
        halted = true
      end)
    end
  end)
end

-- The plugin's own hooks. They are chained before the user's (hooks.lua) wherever a user's
-- configuration could replace them.
local own_hooks = {
  on_init = function(client)
    compat.rewrite_requests(client, function(method, params, bufnr)
      if method == 'textDocument/codeAction' then
        return require('crucible.diagnostics').for_code_action(client, params, bufnr)
      end
      return params
    end)
    -- Keys typed while the server started asked nothing: ask now.
    vim.schedule(function()
      require('crucible.suggestion').on_ready()
    end)
  end,
  on_exit = on_exit,
  handlers = { ['crucible/didChangeStatus'] = on_status },
}

-- What was registered with vim.lsp.config (0.11+): its hooks tell the user's apart.
local registered

--- The client configuration: the plugin's, with the user's `lsp` option merged over it (its
--- hooks chained after the plugin's).
function M.base_config()
  local user = options.lsp or {}
  local config = vim.tbl_deep_extend('force', { capabilities = capabilities() }, user)
  -- Which server, and its settings, are the plugin's own options (cmd, settings).
  config.name = M.NAME
  config.cmd = M.command()
  -- The user's environment for the server, with CRUCIBLE_SHARED from the `shared` option.
  config.cmd_env = vim.tbl_extend('force', user.cmd_env or {}, M.command_env())
  config.init_options = options.settings
  -- Answers the server's workspace/configuration pull for the `crucible` section.
  config.settings = { crucible = options.settings }
  return hooks.compose(config, own_hooks, user)
end

local function uses_lsp_config()
  return vim.lsp.config ~= nil and vim.fn.has('nvim-0.11') == 1
end

-- 0.11+: the configuration as vim.lsp.config resolves it, so that the user's own
-- vim.lsp.config('crucible', {...}) after setup() is merged over the plugin's; a hook it
-- replaced (or, where it set none, one from vim.lsp.config('*', {...}), which the plugin's
-- registration would otherwise hide) runs after the registered one.
local function resolved_config()
  if not uses_lsp_config() then
    return M.base_config()
  end
  local resolved = vim.deepcopy(vim.lsp.config[M.NAME])
  local ok, everyone = pcall(function()
    return vim.lsp.config['*']
  end)
  local theirs = hooks.replaced(resolved, registered, ok and everyone or {})
  resolved = hooks.compose(resolved, registered, theirs)
  resolved.name = M.NAME
  -- The server settings are the plugin's (setup, update_settings): always the newest.
  resolved.init_options = options.settings
  resolved.settings = { crucible = options.settings }
  return resolved
end

function M.configure(opts)
  options = opts
  if uses_lsp_config() then
    registered = M.base_config()
    vim.lsp.config(M.NAME, registered)
  end
end

function M.options()
  return options
end

--- The Crucible client attached to bufnr, if any.
function M.get(bufnr)
  for _, client in ipairs(compat.clients({ name = M.NAME, bufnr = bufnr })) do
    if not compat.is_stopped(client) then
      return client
    end
  end
end

function M.all()
  return compat.clients({ name = M.NAME })
end

--- Start (or reuse) the client for bufnr's root and attach it. True when the buffer is
--- Crucible's (attached now or before; the client may still be initializing).
function M.attach(bufnr)
  if not options or halted or not M.wanted(bufnr) then
    return false
  end
  local running = M.get(bufnr)
  if running then
    served[bufnr] = running.id
    return true
  end
  local cmd, why = M.command()
  if not cmd then
    if not warned_missing then
      warned_missing = true
      vim.notify('Crucible: ' .. why .. '. See :checkhealth crucible', vim.log.levels.ERROR)
    end
    return false
  end
  local root = M.root_dir(bufnr)
  if vim.lsp.start then
    local config = resolved_config()
    config.cmd = config.cmd or cmd
    config.root_dir = root
    local started = vim.lsp.start(config, { bufnr = bufnr })
    served[bufnr] = started
    return started ~= nil
  end
  local id = roots[root]
  if not id or not vim.lsp.get_client_by_id(id) then
    local config = M.base_config()
    config.cmd = cmd
    config.root_dir = root
    config.workspace_folders = { { uri = vim.uri_from_fname(root), name = root } }
    id = vim.lsp.start_client(config)
    roots[root] = id
  end
  if id ~= nil and vim.lsp.buf_attach_client(bufnr, id) then
    served[bufnr] = id
    return true
  end
  return false
end

--- Attach again the buffers a server served before it exited (those still loaded).
function M.reattach(buffers)
  for _, buf in ipairs(buffers) do
    if vim.api.nvim_buf_is_loaded(buf) then
      M.attach(buf)
    end
  end
end

--- :Crucible stop: every Crucible server stops, and none starts (no restart, no attach on
--- BufEnter) until :Crucible restart. `then_do` runs once they have all exited.
function M.stop_all(then_do)
  halted = true
  require('crucible.restart').cancel()
  local clients = M.all()
  for _, c in ipairs(clients) do
    stopping[c.id] = true
  end
  after_stop = then_do
  if #clients == 0 then
    after_stop = nil
    if then_do then
      then_do()
    end
    return
  end
  for _, c in ipairs(clients) do
    compat.stop(c)
  end
  -- A server that does not answer shutdown is ended, as core ends it when Neovim quits.
  vim.defer_fn(function()
    for _, c in ipairs(clients) do
      if stopping[c.id] then
        compat.stop(c, true)
      end
    end
  end, 3000)
end

--- :Crucible restart: stop every server (if any), then `attach_all()` once they have exited,
--- with servers allowed to start again; also the way back after :Crucible stop or after
--- restarts were given up.
function M.restart(attach_all)
  M.stop_all(function()
    halted = false
    require('crucible.restart').reset()
    attach_all()
  end)
end

--- Whether :Crucible stop (or giving up on restarts) keeps servers from starting.
function M.halted()
  return halted
end

--- New settings: sent to every running client (didChangeConfiguration) and used by the next.
function M.update_settings(settings)
  options.settings = settings
  for _, client in ipairs(M.all()) do
    -- Where workspace/configuration answers come from: client.settings from 0.11,
    -- client.config.settings before.
    client.config.settings = { crucible = settings }
    if client.settings ~= nil then
      client.settings = { crucible = settings }
    end
    compat.notify(client, 'workspace/didChangeConfiguration', { settings = { crucible = settings } })
  end
end

--- The last crucible/didChangeStatus of the client attached to bufnr (or of any client).
function M.status(bufnr)
  local client = bufnr and M.get(bufnr)
  if client then
    return statuses[client.id]
  end
  for _, c in ipairs(M.all()) do
    if statuses[c.id] then
      return statuses[c.id]
    end
  end
end

return M
