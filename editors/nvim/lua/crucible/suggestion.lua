-- Ghost text: asking for a suggestion, drawing it with extmarks, accepting it.
--
-- The rule this module exists for: a suggestion is never shown for text it was not computed
-- for. Each suggestion keeps its anchor, the buffer as it was when it was asked for (row,
-- byte column, the line before and after the cursor, changedtick). Before anything is drawn,
-- on an answer and on every change or cursor move, `rest()` checks the buffer against the
-- anchor: same buffer; the same changedtick and cursor (nothing changed), or else the line
-- still starts with the anchor's prefix, what was typed since is the start of the
-- suggestion, and the text after the cursor is unchanged. Then the rest
-- of the suggestion is drawn at once, with no new request; otherwise the ghost text is
-- cleared synchronously, inside the autocommand, before Neovim redraws, and a new request
-- goes out (the previous one is cancelled with $/cancelRequest). Answers to any request but
-- the newest are dropped.
local compat = require('crucible.compat')
local client_mod = require('crucible.client')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('crucible')
M.HL = 'CrucibleSuggestion'

local INVOKED, AUTOMATIC = 1, 2
local REQUEST_CANCELLED = -32800

local current -- the shown (or fitting) suggestion: anchor + items + index
local pending -- { client = , id = , buf = } of the request in flight
local last_seen -- "buf:tick:row:col" of the last change handled
local dismissed_tick -- no automatic request until the buffer changes after a dismiss
M.enabled = true

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

-- Identifies the buffer state a change handler saw (buffer, changedtick, cursor).
local function state_key()
  local row, col = cursor()
  local buf = api.nvim_get_current_buf()
  return table.concat({ buf, api.nvim_buf_get_changedtick(buf), row, col }, ':')
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

function M.clear(buf)
  buf = buf or (current and current.buf)
  if buf and api.nvim_buf_is_valid(buf) then
    api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

local function cancel_pending()
  if pending then
    local client = pending.client
    local id = pending.id
    pending = nil
    if not compat.is_stopped(client) then
      compat.cancel(client, id)
    end
  end
end

local function drop()
  M.clear()
  current = nil
end

--- The part of the current suggestion still to insert, if the buffer still fits it; nil
--- otherwise. See the module's comment.
local function rest(s)
  s = s or current
  if not s or api.nvim_get_current_buf() ~= s.buf then
    return nil
  end
  local item = s.items[s.index]
  local row, col = cursor()
  if api.nvim_buf_get_changedtick(s.buf) == s.tick and row == s.row and col == s.col then
    return item.text, item.replace -- nothing changed since it was asked for
  end
  if row < s.row then
    return nil
  end
  local lines = api.nvim_buf_get_lines(s.buf, s.row, row + 1, false)
  if #lines ~= row - s.row + 1 then
    return nil
  end
  if lines[1]:sub(1, #s.prefix) ~= s.prefix then
    return nil
  end
  local typed
  if row == s.row then
    if col < s.col then
      return nil
    end
    typed = lines[1]:sub(s.col + 1, col)
  else
    local parts = { lines[1]:sub(s.col + 1) }
    for i = 2, #lines - 1 do
      parts[#parts + 1] = lines[i]
    end
    parts[#parts + 1] = lines[#lines]:sub(1, col)
    typed = table.concat(parts, '\n')
  end
  if lines[#lines]:sub(col + 1) ~= s.after then
    return nil
  end
  if item.text:sub(1, #typed) ~= typed or #item.text <= #typed then
    return nil
  end
  -- Characters after the cursor that the suggestion replaces (a closing bracket it repeats)
  -- apply only while nothing has been typed through.
  return item.text:sub(#typed + 1), (#typed == 0) and item.replace or 0
end

local function display(text)
  return (text:gsub('\t', string.rep(' ', vim.bo.tabstop)))
end

local function draw(text, replace)
  M.clear()
  local buf = current.buf
  local row, col = cursor()
  local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
  local after = line:sub(col + 1)
  local kept = after:sub(replace + 1)
  local lines = vim.split(text, '\n', { plain = true })
  local first = display(lines[1])
  local opts = { hl_mode = 'combine', priority = 200 }
  if compat.inline_virt_text then
    local shown = first
    if #lines == 1 and replace > 0 and first:sub(-replace) == after:sub(1, replace) then
      shown = first:sub(1, #first - replace) -- the real bracket after the cursor ends it
    end
    if shown ~= '' then
      opts.virt_text = { { shown, M.HL } }
      opts.virt_text_pos = 'inline'
    end
  else
    -- Overlay: the ghost text covers the rest of the line, which is drawn again after it.
    local chunks = { { first, M.HL } }
    if #lines == 1 then
      if kept ~= '' then
        chunks[#chunks + 1] = { kept, 'Normal' }
      end
    elseif after ~= '' then
      chunks[#chunks + 1] = { string.rep(' ', vim.fn.strdisplaywidth(after)), 'Normal' }
    end
    if first ~= '' or #chunks > 1 then
      opts.virt_text = chunks
      opts.virt_text_pos = 'overlay'
    end
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      virt_lines[#virt_lines + 1] = { { display(lines[i]), M.HL } }
    end
    if kept ~= '' and not compat.inline_virt_text then
      table.insert(virt_lines[#virt_lines], { kept, 'Normal' })
    end
    opts.virt_lines = virt_lines
  end
  if opts.virt_text or opts.virt_lines then
    api.nvim_buf_set_extmark(buf, M.ns, row, col, opts)
  end
end

--- Draws the current suggestion if it fits the buffer; clears it otherwise. True if drawn.
local function refresh()
  if not current then
    return false
  end
  local text, replace = rest()
  if not text or not M.enabled or not in_insert_mode() then
    drop()
    return false
  end
  draw(text, replace)
  return true
end

-- An LSP item as the plugin keeps it: text to insert at the anchor's cursor and how many bytes
-- after the cursor it replaces. Items whose range starts before the cursor carry the text
-- between; it must be what the line holds there.
local function to_item(raw, anchor, encoding)
  local text = raw.insertText
  if type(text) == 'table' then
    text = text.value
  end
  if type(text) ~= 'string' then
    return nil
  end
  local line = anchor.prefix .. anchor.after
  local replace = 0
  if raw.range then
    local start, finish = raw.range.start, raw.range['end']
    if start.line ~= anchor.row then
      return nil
    end
    local start_col = compat.byte_index(line, encoding, start.character)
    if start_col < anchor.col then
      local between = line:sub(start_col + 1, anchor.col)
      if text:sub(1, #between) ~= between then
        return nil
      end
      text = text:sub(#between + 1)
    end
    if finish.line == anchor.row then
      replace = math.max(0, compat.byte_index(line, encoding, finish.character) - anchor.col)
    end
  end
  if text == '' then
    return nil
  end
  return { text = text, replace = replace }
end

local function on_answer(anchor, select_next)
  return function(err, result, ctx)
    if not pending or pending.id ~= anchor.request_id then
      return -- an older request: never drawn
    end
    pending = nil
    if err then
      if err.code ~= REQUEST_CANCELLED then
        require('vim.lsp.log').warn('crucible: inlineCompletion failed', err)
      end
      return
    end
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    local encoding = client and client.offset_encoding or 'utf-16'
    local raw = result and (result.items or result) or {}
    local items = {}
    for _, r in ipairs(raw) do
      local item = to_item(r, anchor, encoding)
      if item then
        items[#items + 1] = item
      end
    end
    if #items == 0 then
      return
    end
    local previous = current
    current = vim.tbl_extend('force', anchor, { items = items, index = 1 })
    if select_next and #items > 1 then
      current.index = 2
    end
    if not refresh() and previous and previous ~= current then
      current = nil
    end
  end
end

--- Ask for a suggestion at the cursor (invoked: an explicit trigger, no debounce server-side).
function M.request(invoked, select_next)
  local buf = api.nvim_get_current_buf()
  local client = client_mod.get(buf)
  if not client or not M.enabled then
    return
  end
  cancel_pending()
  local row, col = cursor()
  local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
  local encoding = client.offset_encoding or 'utf-16'
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = { line = row, character = compat.char_index(line, encoding, col) },
    context = { triggerKind = invoked and INVOKED or AUTOMATIC },
  }
  local anchor = {
    buf = buf,
    row = row,
    col = col,
    prefix = line:sub(1, col),
    after = line:sub(col + 1),
    tick = api.nvim_buf_get_changedtick(buf),
  }
  local ok, id = compat.request(
    client,
    'textDocument/inlineCompletion',
    params,
    on_answer(anchor, select_next),
    buf
  )
  if ok and id then
    anchor.request_id = id
    pending = { client = client, id = id, buf = buf }
    -- The change events still queued for this same state (a trigger typed right after a
    -- character) must not cancel this request.
    last_seen = state_key()
  end
end

--- TextChangedI / TextChangedP / CursorMovedI / InsertEnter: keep a fitting suggestion
--- (no request), or clear it at once and ask again.
function M.on_change()
  if not M.enabled then
    return
  end
  local buf = api.nvim_get_current_buf()
  local tick = api.nvim_buf_get_changedtick(buf)
  local seen = state_key()
  if seen == last_seen then
    return
  end
  last_seen = seen
  if current and refresh() then
    return
  end
  drop()
  if dismissed_tick == tick or not client_mod.options().auto_trigger then
    cancel_pending()
    return
  end
  dismissed_tick = nil
  M.request(false)
end

--- A server finished starting: if the user is typing in one of its buffers, ask now.
function M.on_ready()
  if in_insert_mode() and client_mod.get(api.nvim_get_current_buf()) then
    last_seen = nil
    M.on_change()
  end
end

--- InsertLeave / BufLeave: nothing stays on screen, nothing stays in flight.
function M.reset()
  cancel_pending()
  drop()
  last_seen = nil
end

function M.is_visible()
  return current ~= nil and rest() ~= nil and M.enabled
end

local function word_of(text)
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%s%w_]+') or text:match('^\n[ \t]*')
    or text:match('^%s+')
    or text
end

local function line_of(text)
  if text:sub(1, 1) == '\n' then
    return '\n' .. (text:sub(2):match('^[^\n]*'))
  end
  return text:match('^[^\n]*')
end

--- Insert all of the suggestion, or its next word or line ('all' | 'word' | 'line').
--- Returns false when no suggestion is shown.
function M.accept(kind)
  local text, replace = rest()
  if not text then
    return false
  end
  local piece = text
  if kind == 'word' then
    piece = word_of(text)
  elseif kind == 'line' then
    piece = line_of(text)
  end
  if piece ~= text then
    replace = 0 -- the rest stays a suggestion; what it replaces is still there
  end
  local buf = current.buf
  local row, col = cursor()
  local lines = vim.split(piece, '\n', { plain = true })
  M.clear()
  api.nvim_buf_set_text(buf, row, col, row, col + replace, lines)
  local last = #lines == 1 and col + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { row + #lines, last })
  if piece == text then
    current = nil
  else
    refresh()
  end
  return true
end

function M.dismiss()
  cancel_pending()
  local buf = api.nvim_get_current_buf()
  dismissed_tick = api.nvim_buf_get_changedtick(buf)
  drop()
end

--- Cycle through the alternatives (asks for them with an invoked request the first time).
function M.cycle(step)
  if current and #current.items > 1 then
    local candidate = vim.tbl_extend('force', current, {})
    for _ = 1, #current.items do
      candidate.index = (candidate.index - 1 + step) % #candidate.items + 1
      if rest(candidate) then
        current = candidate
        refresh()
        return
      end
    end
    return
  end
  M.request(true, true)
end

--- The text the shown ghost text stands for (first line, then virtual lines), for tests and
--- statuslines; nil when none is shown.
function M.shown()
  return current and rest() or nil
end

function M.set_enabled(on)
  M.enabled = on
  if not on then
    M.reset()
  end
end

return M
