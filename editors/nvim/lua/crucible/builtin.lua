-- Neovim 0.12's vim.lsp.inline_completion as Crucible's renderer (renderer = 'builtin').
-- Not the default: measured against the plugin's own ghost text (editors/nvim/README.md,
-- "Which ghost text"), it shows suggestions that no longer fit the line while the user types
-- and has no accept-word / accept-line. Offered for users who prefer the built-in.
local M = {}

local enabled = true

function M.available()
  return vim.lsp.inline_completion ~= nil
end

function M.enable(buf)
  vim.lsp.inline_completion.enable(enabled, { bufnr = buf })
end

function M.set_enabled(on)
  enabled = on
  if not M.available() then
    return
  end
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.b[buf].crucible_attached then
      vim.lsp.inline_completion.enable(on, { bufnr = buf })
    end
  end
end

local function ns()
  return vim.api.nvim_create_namespace('nvim.lsp.inline_completion')
end

function M.is_visible()
  local marks = vim.api.nvim_buf_get_extmarks(0, ns(), 0, -1, { limit = 1 })
  return #marks > 0
end

function M.accept()
  return vim.lsp.inline_completion.get() or false
end

function M.dismiss()
  vim.api.nvim_buf_clear_namespace(0, ns(), 0, -1)
end

function M.cycle(step)
  vim.lsp.inline_completion.select({ count = step })
end

function M.trigger()
  vim.lsp.inline_completion.select({ count = 0 })
end

return M
