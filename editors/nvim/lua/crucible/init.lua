-- Crucible for Neovim: require('crucible').setup(opts). See :help crucible.
--
-- Modules: config (options), compat (the 0.7.2 .. 0.12 differences), client (finding,
-- starting and attaching crucible-lsp; the status feed), suggestion (ghost text of its own),
-- builtin (0.12's vim.lsp.inline_completion as the alternative renderer), commands
-- (:Crucible), diagnostics (forwarding to crucible/didChangeDiagnostics), health
-- (:checkhealth crucible).
local config = require('crucible.config')
local client = require('crucible.client')
local suggestion = require('crucible.suggestion')
local builtin = require('crucible.builtin')

local api = vim.api
local M = {}

local options
local group

local function use_builtin()
  return options and options.renderer == 'builtin' and builtin.available()
end

-- CrucibleSuggestion links to Comment, unless Comment would leave ghost text uncoloured:
-- Neovim's default colorscheme from 0.10 gives Comment a GUI colour only, so in a 256-colour
-- terminal without 'termguicolors' the suggestion would look like real text. Then it gets
-- Comment's GUI colour and a grey for the terminal. `default`: a user's own definition wins.
local function define_highlight()
  local comment = vim.fn.synIDtrans(vim.fn.hlID('Comment'))
  if vim.o.termguicolors or vim.fn.synIDattr(comment, 'fg', 'cterm') ~= '' then
    vim.cmd('highlight default link CrucibleSuggestion Comment')
    return
  end
  local gui = vim.fn.synIDattr(comment, 'fg#', 'gui')
  vim.cmd(
    'highlight default CrucibleSuggestion ctermfg=244' .. (gui ~= '' and (' guifg=' .. gui) or '')
  )
end

local function attach_buffer_events(buf)
  if vim.b[buf].crucible_attached then
    return
  end
  vim.b[buf].crucible_attached = true
  if use_builtin() then
    builtin.enable(buf)
    return
  end
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP', 'CursorMovedI', 'InsertEnter' }, {
    group = group,
    buffer = buf,
    callback = function()
      suggestion.on_change()
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = buf,
    callback = function()
      suggestion.reset()
    end,
  })
end

local function maybe_attach(buf)
  if client.attach(buf) then
    attach_buffer_events(buf)
  end
end

-- Insert-mode keys. accept is an <expr> mapping so that with no suggestion shown the key does
-- what it does without the plugin (Tab indents); the others go through the <Plug> mappings.
local function map_keys(keymaps)
  local function map(lhs, plug)
    if lhs then
      vim.keymap.set('i', lhs, plug, { remap = true, silent = true, desc = 'Crucible' })
    end
  end
  if keymaps.accept then
    local key = keymaps.accept
    -- Not remapped: with no suggestion the key is Neovim's own (Tab indents).
    vim.keymap.set('i', key, function()
      if M.is_visible() then
        return '<Cmd>lua require("crucible").accept()<CR>'
      end
      return key
    end, { expr = true, silent = true, desc = 'Crucible: accept the suggestion, else ' .. key })
  end
  map(keymaps.accept_word, '<Plug>(crucible-accept-word)')
  map(keymaps.accept_line, '<Plug>(crucible-accept-line)')
  map(keymaps.dismiss, '<Plug>(crucible-dismiss)')
  map(keymaps.next, '<Plug>(crucible-next)')
  map(keymaps.previous, '<Plug>(crucible-previous)')
  map(keymaps.trigger, '<Plug>(crucible-trigger)')
end

--- Start Crucible for the buffers you edit. Calling it again replaces the options.
function M.setup(opts)
  options = config.merge(opts)
  client.configure(options)
  if #client.all() > 0 then -- called again: running servers get the new settings now
    client.update_settings(options.settings)
  end
  define_highlight()
  group = api.nvim_create_augroup('crucible', { clear = true })
  api.nvim_create_autocmd('ColorScheme', { group = group, callback = define_highlight })
  api.nvim_create_autocmd('OptionSet', {
    group = group,
    pattern = 'termguicolors',
    callback = function()
      vim.cmd('highlight clear CrucibleSuggestion')
      define_highlight()
    end,
  })
  api.nvim_create_autocmd({ 'BufEnter', 'FileType' }, {
    group = group,
    callback = function(args)
      maybe_attach(args.buf)
    end,
  })
  for _, buf in ipairs(api.nvim_list_bufs()) do
    vim.b[buf].crucible_attached = nil
    if api.nvim_buf_is_loaded(buf) then
      maybe_attach(buf)
    end
  end
  map_keys(options.keymaps)
  require('crucible.diagnostics').setup(group, options.diagnostics)
end

--- Attach every loaded buffer the plugin wants (:Crucible restart).
function M.attach_loaded()
  for _, buf in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(buf) then
      maybe_attach(buf)
    end
  end
end

--- Replace the server settings (same schema as initializationOptions); sent at once.
function M.update_settings(settings)
  local merged = config.server_settings(settings)
  options.settings = merged
  client.update_settings(merged)
end

function M.is_visible()
  if use_builtin() then
    return builtin.is_visible()
  end
  return suggestion.is_visible()
end

function M.accept()
  if use_builtin() then
    return builtin.accept()
  end
  return suggestion.accept('all')
end

function M.accept_word()
  return not use_builtin() and suggestion.accept('word')
end

function M.accept_line()
  return not use_builtin() and suggestion.accept('line')
end

function M.dismiss()
  if use_builtin() then
    return builtin.dismiss()
  end
  suggestion.dismiss()
end

function M.next()
  if use_builtin() then
    return builtin.cycle(1)
  end
  suggestion.cycle(1)
end

function M.previous()
  if use_builtin() then
    return builtin.cycle(-1)
  end
  suggestion.cycle(-1)
end

--- Ask now (an invoked request: no debounce on the server, alternatives when configured).
function M.trigger()
  if use_builtin() then
    return builtin.trigger()
  end
  suggestion.request(true)
end

--- Turn suggestions on or off for this session (all buffers); returns the new state.
function M.toggle()
  local on = not suggestion.enabled
  suggestion.set_enabled(on)
  builtin.set_enabled(on)
  pcall(vim.cmd, 'redrawstatus')
  return on
end

--- The last crucible/didChangeStatus of the current buffer's server, as a table
--- { state = 'ready'|'busy'|'degraded'|'offline'|'disabled', message =, providers = }, or nil.
function M.status_data(bufnr)
  return client.status(bufnr or api.nvim_get_current_buf())
end

--- A short text for statuslines: '' when no Crucible server serves this buffer.
function M.status(bufnr)
  if not suggestion.enabled then
    return 'Crucible: off'
  end
  local data = M.status_data(bufnr)
  if not data then
    return ''
  end
  return 'Crucible: ' .. tostring(data.state)
end

--- The options setup() was given, merged with the defaults (nil before setup()).
function M.options()
  return options
end

return M
