-- The options of require('crucible').setup(opts): defaults, and the merge with the user's.
local M = {}

M.defaults = {
  -- How to start the server: a list (argv). nil: `crucible-lsp --stdio` from PATH.
  cmd = nil,
  -- Run this editor's server as a thin client of one shared server per user (`--shared`):
  -- the first window starts it, later windows (of any editor with the option) connect to it
  -- already loaded and share its cache, provider connections and memory budget. On by
  -- default here, unlike the server and the other editors: Neovim users start many short-lived
  -- editors (one per terminal pane, `nvim file` and quit), and each plain server pays the
  -- ~0.8 s import before its first suggestion, a thin client ~0.1 s (docs/startup.md). Where
  -- no daemon can be used the thin client serves its window alone; a daemon that dies costs
  -- each window one restart. `shared = false`: a plain server per workspace, whatever
  -- CRUCIBLE_SHARED says in the environment. Applies to your own `cmd` too (client.lua).
  shared = true,
  -- Start the server again when it exits unexpectedly (a crash, a kill, the shared daemon's
  -- end), after 0.5 s, re-attaching its buffers; at most 4 times in 3 minutes, then one
  -- message and no more until :Crucible restart. false: never (as Neovim's own LSP client).
  restart = true,
  -- Which buffers get Crucible: every file buffer (buftype ''), unless its filetype is in
  -- `exclude`; when `include` is a non-empty list, only those filetypes.
  filetypes = { include = {}, exclude = {} },
  -- Files that mark a workspace root, nearest first; else the current directory.
  root_markers = { 'crucible.toml', '.git', '.hg', '.jj', '.svn' },
  -- Sent as initializationOptions and, on update_settings(), as didChangeConfiguration.
  -- Same schema as crucible.toml (providers, completion, cache, ...).
  settings = {},
  -- Ghost text: 'own' (drawn by this plugin on every version) or 'builtin'
  -- (vim.lsp.inline_completion, Neovim 0.12+ only; falls back to 'own' elsewhere).
  renderer = 'own',
  -- Ask for a suggestion on insert-mode changes and cursor moves (false: only on trigger()).
  auto_trigger = true,
  -- Insert-mode keys; false leaves a key unmapped (the <Plug> mappings and Lua functions stay).
  keymaps = {
    accept = '<Tab>', -- a normal Tab when no suggestion is shown
    accept_word = '<M-w>',
    accept_line = '<M-l>',
    dismiss = '<C-]>',
    next = '<M-]>',
    previous = '<M-[>',
    trigger = '<M-\\>',
  },
  -- Your own fields of the LSP client configuration (as for vim.lsp.start_client: on_attach,
  -- on_exit, on_init, handlers, flags, ...; cmd and settings are the options above), merged
  -- over the plugin's on every version. Hooks
  -- the plugin sets too (on_init, on_exit, crucible/* handlers) run after the plugin's rather
  -- than replace them. On 0.11+ `vim.lsp.config('crucible', {...})` does the same.
  lsp = {},
  -- Forward other servers' diagnostics to Crucible (crucible/didChangeDiagnostics).
  diagnostics = { forward = true, debounce_ms = 500 },
}

-- Settings the plugin sends unless the user says otherwise: the suggestion is shown as ghost
-- text, so it stays out of the completion menu (nvim-cmp / blink.cmp would show it twice).
M.default_settings = { completion = { completion_items = false } }

function M.merge(opts)
  local merged = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  -- Lists replace, they do not merge element by element.
  if opts and opts.cmd then
    merged.cmd = opts.cmd
  end
  if opts and opts.lsp then -- as given: the user's functions and lists, not copies
    merged.lsp = opts.lsp
  end
  if opts and opts.root_markers then
    merged.root_markers = opts.root_markers
  end
  if opts and opts.filetypes then
    merged.filetypes = {
      include = opts.filetypes.include or {},
      exclude = opts.filetypes.exclude or {},
    }
  end
  merged.settings = M.server_settings(opts and opts.settings)
  return merged
end

function M.server_settings(settings)
  return vim.tbl_deep_extend('force', vim.deepcopy(M.default_settings), settings or {})
end

return M
