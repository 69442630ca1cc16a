-- Loaded at start-up by every plugin manager: <Plug> mappings and :Crucible. Nothing starts
-- until require('crucible').setup() is called.
if vim.g.loaded_crucible then
  return
end
vim.g.loaded_crucible = true

local plugs = {
  ['crucible-accept'] = 'accept',
  ['crucible-accept-word'] = 'accept_word',
  ['crucible-accept-line'] = 'accept_line',
  ['crucible-dismiss'] = 'dismiss',
  ['crucible-next'] = 'next',
  ['crucible-previous'] = 'previous',
  ['crucible-trigger'] = 'trigger',
}
for name, fn in pairs(plugs) do
  vim.api.nvim_set_keymap(
    'i',
    '<Plug>(' .. name .. ')',
    '<Cmd>lua require("crucible").' .. fn .. '()<CR>',
    { noremap = true, silent = true }
  )
end

vim.api.nvim_create_user_command('Crucible', function(args)
  require('crucible.commands').run(args.fargs[1] or 'status')
end, {
  nargs = '?',
  complete = function()
    return require('crucible.commands').names()
  end,
  desc = 'Crucible: status | toggle | clearCache | doctor | log | stop | restart',
})
