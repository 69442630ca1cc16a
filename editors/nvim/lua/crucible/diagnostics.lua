-- Other servers' diagnostics, forwarded to Crucible as crucible/didChangeDiagnostics
-- {textDocument = {uri, version}, diagnostics = Diagnostic[]} so that it can explain them on
-- hover. Debounced per buffer (a linter publishes several times while one types), and
-- Crucible's own diagnostics are left out (they would come back to it as input).
local client = require('crucible.client')
local compat = require('crucible.compat')

local api = vim.api
local M = {}

M.METHOD = 'crucible/didChangeDiagnostics'

local generation = {} -- bufnr -> counter: only the last change of a burst is sent

local function own_namespaces(crucible)
  local own = {}
  local get = vim.lsp.diagnostic and vim.lsp.diagnostic.get_namespace
  if get then
    own[get(crucible.id)] = true
    local ok, pull = pcall(get, crucible.id, true)
    if ok and pull then
      own[pull] = true
    end
  end
  return own
end

local function to_lsp(d, buf, encoding)
  local function position(lnum, col)
    local line = api.nvim_buf_get_lines(buf, lnum, lnum + 1, false)[1] or ''
    return { line = lnum, character = compat.char_index(line, encoding, col or 0) }
  end
  local lsp = d.user_data and d.user_data.lsp or {}
  return {
    range = {
      start = position(d.lnum, d.col),
      ['end'] = position(d.end_lnum or d.lnum, d.end_col or d.col),
    },
    severity = d.severity,
    message = d.message,
    source = d.source or lsp.source,
    code = d.code or lsp.code,
  }
end

function M.send(buf)
  local crucible = client.get(buf)
  if not crucible or not api.nvim_buf_is_valid(buf) then
    return
  end
  local own = own_namespaces(crucible)
  local encoding = crucible.offset_encoding or 'utf-16'
  local diagnostics = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if not own[d.namespace] then
      diagnostics[#diagnostics + 1] = to_lsp(d, buf, encoding)
    end
  end
  local version = vim.lsp.util.buf_versions and vim.lsp.util.buf_versions[buf]
  compat.notify(crucible, M.METHOD, {
    textDocument = {
      uri = vim.uri_from_bufnr(buf),
      version = version or api.nvim_buf_get_changedtick(buf),
    },
    diagnostics = diagnostics,
  })
end

-- Neovim 0.10+ puts in a code-action request only the diagnostics of the server asked (its
-- own namespace), so Crucible would never see the line's errors and offer no "Crucible: fix".
-- A textDocument/codeAction with no diagnostics gets the other servers' diagnostics on the
-- lines of its range, as Neovim 0.7 to 0.9 send them to every server.
function M.for_code_action(crucible, params, buf)
  local context = type(params) == 'table' and params.context
  if not context or (context.diagnostics and #context.diagnostics > 0) or not params.range then
    return params
  end
  buf = (buf == nil or buf == 0) and api.nvim_get_current_buf() or buf
  if not api.nvim_buf_is_valid(buf) then
    return params
  end
  local first, last = params.range.start.line, params.range['end'].line
  local own = own_namespaces(crucible)
  local encoding = crucible.offset_encoding or 'utf-16'
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if not own[d.namespace] and d.lnum <= last and (d.end_lnum or d.lnum) >= first then
      found[#found + 1] = to_lsp(d, buf, encoding)
    end
  end
  if #found == 0 then
    return params
  end
  -- A copy: 0.7 to 0.9 send the same params table to every server.
  return vim.tbl_extend('force', params, {
    context = vim.tbl_extend('force', context, { diagnostics = found }),
  })
end

function M.setup(group, opts)
  if not opts.forward then
    return
  end
  api.nvim_create_autocmd('DiagnosticChanged', {
    group = group,
    callback = function(args)
      local buf = args.buf
      if not buf or buf == 0 or not client.get(buf) then
        return
      end
      generation[buf] = (generation[buf] or 0) + 1
      local mine = generation[buf]
      vim.defer_fn(function()
        if generation[buf] == mine then
          M.send(buf)
        end
      end, opts.debounce_ms)
    end,
  })
end

return M
