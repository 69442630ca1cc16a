-- :Crucible status | toggle | clearCache | doctor | log | stop | restart
local client = require('crucible.client')
local compat = require('crucible.compat')

local api = vim.api
local M = {}

local function notify(msg, level)
  vim.notify('Crucible: ' .. msg, level or vim.log.levels.INFO)
end

local function current_client()
  local c = client.get(api.nvim_get_current_buf()) or client.all()[1]
  if not c then
    notify('no server runs for this buffer (see :checkhealth crucible)', vim.log.levels.WARN)
  end
  return c
end

-- crucible/status as indented "key: value" lines, lists of objects one item per block.
local function render(value, indent, lines)
  local keys = {}
  for k in pairs(value) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    local v = value[k]
    local label = indent .. (type(k) == 'number' and '-' or tostring(k) .. ':')
    if type(v) == 'table' and next(v) ~= nil then
      lines[#lines + 1] = label
      render(v, indent .. '  ', lines)
    elseif type(v) == 'table' then
      lines[#lines + 1] = label .. ' (none)'
    elseif v == vim.NIL then
      lines[#lines + 1] = label .. ' -'
    else
      lines[#lines + 1] = label .. ' ' .. tostring(v)
    end
  end
  return lines
end

--- The lines :Crucible status shows: the verdict first, then every counter.
function M.status_lines(status)
  local overall = status.status or {}
  local lines = {
    string.format('Crucible %s: %s', tostring(status.version), tostring(overall.state)),
  }
  if overall.message and overall.message ~= '' then
    lines[#lines + 1] = tostring(overall.message)
  end
  for _, p in ipairs(status.providers or {}) do
    lines[#lines + 1] = string.format(
      '  %s (%s %s): %s',
      tostring(p.name),
      tostring(p.kind),
      tostring(p.model),
      tostring(p.health or p.state or '?')
    )
  end
  lines[#lines + 1] = ''
  local rest = vim.deepcopy(status)
  rest.version, rest.status, rest.providers = nil, nil, nil
  render(rest, '', lines)
  lines[#lines + 1] = ''
  vim.list_extend(lines, render({ providers = status.providers }, '', {}))
  return lines
end

local function float(lines, title)
  local buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = 'wipe'
  local width = 20
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  width = math.min(width + 2, vim.o.columns - 4)
  local height = math.min(#lines, math.max(3, vim.o.lines - 6))
  local win = api.nvim_open_win(buf, true, {
    relative = 'editor',
    width = width,
    height = height,
    row = math.floor((vim.o.lines - height) / 2),
    col = math.floor((vim.o.columns - width) / 2),
    style = 'minimal',
    border = 'rounded',
  })
  vim.keymap.set('n', 'q', '<Cmd>close<CR>', { buffer = buf, nowait = true })
  vim.b[buf].crucible_title = title
  return win, buf
end

function M.status()
  local c = current_client()
  if not c then
    return
  end
  compat.request(c, 'crucible/status', {}, function(err, result)
    if err or type(result) ~= 'table' then
      notify('crucible/status failed: ' .. tostring(err and err.message), vim.log.levels.WARN)
      return
    end
    float(M.status_lines(result), 'crucible/status')
  end, api.nvim_get_current_buf())
end

function M.toggle()
  local on = require('crucible').toggle()
  notify(on and 'suggestions on' or 'suggestions off')
end

function M.clear_cache()
  local c = current_client()
  if not c then
    return
  end
  compat.request(
    c,
    'workspace/executeCommand',
    { command = 'crucible.clearCache', arguments = {} },
    function(err, result)
      if err then
        notify('clearCache failed: ' .. tostring(err.message), vim.log.levels.WARN)
        return
      end
      local parts = {}
      for k, v in pairs(type(result) == 'table' and result or {}) do
        parts[#parts + 1] = k .. ' ' .. tostring(v)
      end
      table.sort(parts)
      notify('cache cleared (' .. table.concat(parts, ', ') .. ')')
    end,
    api.nvim_get_current_buf()
  )
end

--- `crucible-lsp doctor` for this buffer's workspace, in a scratch window.
function M.doctor()
  local root = client.root_dir(api.nvim_get_current_buf())
  local argv, why = client.doctor_command({ '--workspace', root })
  if not argv then
    notify(why, vim.log.levels.ERROR)
    return
  end
  vim.cmd('botright new')
  local buf = api.nvim_get_current_buf()
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  pcall(api.nvim_buf_set_name, buf, 'crucible://doctor')
  api.nvim_buf_set_lines(buf, 0, -1, false, { 'Running ' .. table.concat(argv, ' ') .. ' ...' })
  local output = {}
  local function collect(_, data)
    for _, line in ipairs(data or {}) do
      output[#output + 1] = line
    end
  end
  vim.fn.jobstart(argv, {
    cwd = root,
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = collect,
    on_stderr = collect,
    on_exit = function(_, code)
      if not api.nvim_buf_is_valid(buf) then
        return
      end
      while output[#output] == '' do
        output[#output] = nil
      end
      output[#output + 1] = ''
      output[#output + 1] = '(exit status ' .. code .. ')'
      api.nvim_buf_set_lines(buf, 0, -1, false, output)
      vim.bo[buf].modified = false
    end,
  })
end

--- Neovim's LSP log, where the server's log lines (window/logMessage) go.
function M.log()
  vim.cmd('botright split ' .. vim.fn.fnameescape(require('vim.lsp.log').get_filename()))
  vim.cmd('normal! G')
end

--- Stop every Crucible server; none starts again until :Crucible restart.
function M.stop()
  local count = #client.all()
  client.stop_all()
  notify(string.format('server stopped (%d); :Crucible restart starts it again', count))
end

--- Stop the servers (if any run), then start them again for the buffers they served.
function M.restart()
  client.restart(function()
    require('crucible').attach_loaded()
  end)
  notify('restarting the server')
end

local commands = {
  status = M.status,
  toggle = M.toggle,
  clearCache = M.clear_cache,
  doctor = M.doctor,
  log = M.log,
  stop = M.stop,
  restart = M.restart,
}

function M.names()
  return { 'status', 'toggle', 'clearCache', 'doctor', 'log', 'stop', 'restart' }
end

function M.run(name)
  local command = commands[name]
  if not command then
    notify('unknown command ' .. tostring(name) .. ' (' .. table.concat(M.names(), ', ') .. ')',
      vim.log.levels.ERROR)
    return
  end
  if not require('crucible').options() then
    notify('call require("crucible").setup() first', vim.log.levels.WARN)
    return
  end
  command()
end

return M
