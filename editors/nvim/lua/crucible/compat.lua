-- The differences between Neovim 0.7.2 and 0.12 that the plugin meets, in one place, so the
-- other modules read the same on every version. Each function picks the newest API present
-- and never calls one that the running version deprecates (a deprecation notice lands in
-- :messages, which users read as an error).
local M = {}

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

M.has = has
M.uv = vim.uv or vim.loop

-- Ghost text's first line: 'inline' pushes the rest of the line right (0.10+); before that the
-- plugin draws an 'overlay' that repeats the text after the cursor, shifted.
M.inline_virt_text = has('0.10')

-- Client methods became `client:method()` in 0.11; the `client.method()` form is deprecated
-- there (and prints a notice).
local colon_methods = has('0.11')

function M.request(client, method, params, handler, bufnr)
  if colon_methods then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.request_sync(client, method, params, timeout_ms, bufnr)
  if colon_methods then
    return client:request_sync(method, params, timeout_ms, bufnr)
  end
  return client.request_sync(method, params, timeout_ms, bufnr)
end

function M.notify(client, method, params)
  if colon_methods then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel(client, id)
  if colon_methods then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.stop(client, force)
  if colon_methods then
    return client:stop(force)
  end
  return client.stop(force)
end

function M.is_stopped(client)
  if colon_methods then
    return client:is_stopped()
  end
  return client.is_stopped()
end

-- Rewrites the params of every request `client` sends (`rewrite(method, params, bufnr)` returns
-- the params to send). Core calls `client:request(...)` from 0.11 and `client.request(...)`
-- before, and other plugins may still use either form on 0.11: the wrapper takes both.
function M.rewrite_requests(client, rewrite)
  local original = client.request
  client.request = function(...)
    local args = { n = select('#', ...), ... }
    local first = args[1] == client and 2 or 1 -- the method's position: after self, or first
    args[first + 1] = rewrite(args[first], args[first + 1], args[first + 3])
    return original((table.unpack or unpack)(args, 1, math.max(args.n, first + 3)))
  end
end

function M.clients(filter)
  if vim.lsp.get_clients then
    return vim.lsp.get_clients(filter)
  end
  local found = {}
  for _, client in pairs(vim.lsp.get_active_clients()) do
    local keep = not filter or not filter.name or client.name == filter.name
    if keep and filter and filter.bufnr then
      keep = vim.lsp.buf_is_attached(filter.bufnr, client.id)
    end
    if keep then
      found[#found + 1] = client
    end
  end
  return found
end

--- Byte column of `index` (in `encoding` units) in `line`.
function M.byte_index(line, encoding, index)
  if encoding == 'utf-8' then
    return math.min(index, #line)
  end
  local ok, col
  if has('0.11') then
    ok, col = pcall(vim.str_byteindex, line, encoding, index, false)
  else
    ok, col = pcall(vim.str_byteindex, line, index, encoding == 'utf-16')
  end
  return ok and col or #line
end

--- `encoding` units before byte column `col` of `line`.
function M.char_index(line, encoding, col)
  col = math.min(col, #line)
  if encoding == 'utf-8' then
    return col
  end
  if has('0.11') then
    local ok, index = pcall(vim.str_utfindex, line, encoding, col, false)
    return ok and index or col
  end
  local ok, utf32, utf16 = pcall(vim.str_utfindex, line, col)
  if not ok then
    return col
  end
  return encoding == 'utf-16' and utf16 or utf32
end

-- :checkhealth reporters: vim.health.ok (0.10+), vim.health.report_ok (0.8, 0.9),
-- require('health').report_ok (0.7).
function M.health()
  local h = vim.health or require('health')
  return {
    start = h.start or h.report_start,
    ok = h.ok or h.report_ok,
    info = h.info or h.report_info,
    warn = h.warn or h.report_warn,
    error = h.error or h.report_error,
  }
end

return M
