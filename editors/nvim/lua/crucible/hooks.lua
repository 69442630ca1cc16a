-- The plugin's client hooks (on_init, on_exit, the crucible/* handlers) composed with the
-- user's own, so that neither replaces the other. A client configuration holds one value per
-- hook, and every way a user configures the Crucible client merges by replacing it:
-- vim.lsp.config (0.11+, tbl_deep_extend 'force': a function, or a list, replaces the
-- plugin's), and the plugin's `lsp` option. Without this, a user's on_exit silently ended the
-- restarts and a user's on_init the code-action diagnostics. Here the plugin's hook runs
-- first (what it keeps, the restart, cannot be lost to an error in the user's), then the
-- user's, with the same arguments; the user's result is the one returned.
local M = {}

-- The fields whose value is a callback core calls; a user's may be a function or a list of
-- them (0.11+ accepts lists).
M.CALLBACKS = { 'on_init', 'on_exit', 'on_attach' }

local function as_list(value)
  if value == nil then
    return {}
  end
  if type(value) == 'function' then
    return { value }
  end
  return value
end

--- One function that calls `own` (a function or nil), then each of `theirs` (nil, a
--- function or a list of functions; `own` itself, met there, is not called twice).
function M.chain(own, theirs)
  local others = {}
  for _, fn in ipairs(as_list(theirs)) do
    if fn ~= own then
      others[#others + 1] = fn
    end
  end
  if #others == 0 then
    return own
  end
  if own == nil and #others == 1 then
    return others[1]
  end
  return function(...)
    local result
    if own then
      result = own(...)
    end
    for _, fn in ipairs(others) do
      result = fn(...)
    end
    return result
  end
end

--- `config` (the plugin's fields merged with the user's, as core would merge them) with
--- every hook of `own` (the plugin's: callbacks and handlers) chained before the user's.
--- `user` holds the user's values for those hooks: what replaced the plugin's in `config`.
function M.compose(config, own, user)
  for _, name in ipairs(M.CALLBACKS) do
    config[name] = M.chain(own[name], user[name])
  end
  local handlers = vim.tbl_extend('force', {}, user.handlers or {})
  for method, handler in pairs(own.handlers or {}) do
    handlers[method] = M.chain(handler, handlers[method])
  end
  config.handlers = handlers
  return config
end

--- 0.11+: the user's hooks in `resolved` (vim.lsp.config's merge of '*', lsp/*.lua and the
--- named configuration), told apart from `registered` (what the plugin registered) by
--- identity. Where `resolved` still holds the registered hook, the user's is `everyone`'s
--- (vim.lsp.config['*']): the named configuration the plugin registered hid it.
function M.replaced(resolved, registered, everyone)
  local theirs = { handlers = {} }
  for _, name in ipairs(M.CALLBACKS) do
    if resolved[name] ~= registered[name] then
      theirs[name] = resolved[name]
    else
      theirs[name] = everyone[name]
    end
  end
  local registered_handlers = registered.handlers or {}
  local everyones_handlers = everyone.handlers or {}
  for method, handler in pairs(resolved.handlers or {}) do
    if handler ~= registered_handlers[method] then
      theirs.handlers[method] = handler
    else
      theirs.handlers[method] = everyones_handlers[method]
    end
  end
  return theirs
end

return M
