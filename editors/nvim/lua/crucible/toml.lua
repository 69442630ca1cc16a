-- The editor's settings as a TOML file, so that `crucible-lsp doctor --config FILE` (used by
-- :Crucible doctor and :checkhealth crucible) checks the providers this editor configured.
-- Covers what the settings schema holds: strings, numbers, booleans, lists of those, tables,
-- and lists of tables ([[providers]]).
local M = {}

local function is_list(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then
      return false
    end
  end
  return n > 0
end

local function key(k)
  k = tostring(k)
  if k:match('^[%w_-]+$') then
    return k
  end
  return M.string(k)
end

function M.string(s)
  local escaped = s:gsub('[%c"\\]', function(c)
    if c == '"' then
      return '\\"'
    elseif c == '\\' then
      return '\\\\'
    end
    return string.format('\\u%04X', c:byte())
  end)
  return '"' .. escaped .. '"'
end

local function scalar(v)
  local t = type(v)
  if t == 'string' then
    return M.string(v)
  elseif t == 'boolean' then
    return tostring(v)
  elseif t == 'number' then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format('%d', v)
    end
    return string.format('%.17g', v)
  end
end

local function inline_list(list)
  local parts = {}
  for _, v in ipairs(list) do
    local s = scalar(v)
    if s then
      parts[#parts + 1] = s
    end
  end
  return '[' .. table.concat(parts, ', ') .. ']'
end

local function sorted_keys(t)
  local keys = vim.tbl_keys(t)
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function encode(t, path, out)
  local tables, arrays = {}, {}
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    if type(v) ~= 'table' then
      local s = scalar(v)
      if s then
        out[#out + 1] = key(k) .. ' = ' .. s
      end
    elseif is_list(v) and type(v[1]) == 'table' then
      arrays[#arrays + 1] = k
    elseif is_list(v) then
      out[#out + 1] = key(k) .. ' = ' .. inline_list(v)
    elseif next(v) ~= nil then
      tables[#tables + 1] = k
    end
  end
  for _, k in ipairs(tables) do
    local sub = path .. (path == '' and '' or '.') .. key(k)
    out[#out + 1] = ''
    out[#out + 1] = '[' .. sub .. ']'
    encode(t[k], sub, out)
  end
  for _, k in ipairs(arrays) do
    local sub = path .. (path == '' and '' or '.') .. key(k)
    for _, item in ipairs(t[k]) do
      out[#out + 1] = ''
      out[#out + 1] = '[[' .. sub .. ']]'
      encode(item, sub, out)
    end
  end
  return out
end

function M.encode(t)
  return table.concat(encode(t or {}, '', {}), '\n') .. '\n'
end

--- Writes the settings to a temporary file; returns its path.
function M.write_temp(settings)
  local path = vim.fn.tempname() .. '.toml'
  vim.fn.writefile(vim.split(M.encode(settings), '\n', { plain = true }), path)
  return path
end

return M
