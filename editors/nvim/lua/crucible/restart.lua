-- Restarting the server after it dies unexpectedly. Neovim's LSP client never restarts a
-- server, so without this a crash (or, with `shared = true`, a crash of the shared daemon,
-- which ends every window's session at once) would leave suggestions silently off until
-- Neovim is restarted. The bound is VS Code's languageclient's: at most MAX_RESTARTS
-- restarts within WINDOW_MS; the next unexpected exit in that window gives up, with one
-- message, until :Crucible restart. What counts as unexpected is client.lua's to say
-- (not stopped by the plugin, Neovim not quitting, not a clean exit after shutdown).
local compat = require('crucible.compat')

local M = {}

M.MAX_RESTARTS = 4
M.WINDOW_MS = 3 * 60 * 1000
-- Long enough for a shared daemon's sessions to all end (they end together: one restart for
-- all of them) and for a dying process's socket and pid file to go; short enough to go
-- unnoticed between two keystrokes' worth of suggestions.
M.DELAY_MS = 500

local SIGNALS = {
  [1] = 'SIGHUP',
  [2] = 'SIGINT',
  [6] = 'SIGABRT',
  [9] = 'SIGKILL',
  [11] = 'SIGSEGV',
  [15] = 'SIGTERM',
}

local stops = {} -- monotonic ms of each unexpected exit that was answered, oldest first
local waiting -- buffers to re-attach when the pending restart's delay ends, or nil
local gave_up -- the message of the last give-up, for :checkhealth crucible, or nil

local function now_ms()
  return compat.uv.hrtime() / 1e6
end

--- Why a process ended, in words: "exit code 3", "signal 9 (SIGKILL)".
function M.reason(code, signal)
  if signal and signal ~= 0 then
    local name = SIGNALS[signal]
    return 'signal ' .. signal .. (name and (' (' .. name .. ')') or '')
  end
  return 'exit code ' .. tostring(code)
end

--- An unexpected exit of a server that served `buffers`. `restart(buffers)` starts the server
--- again for them; `halt()` keeps the plugin from starting one until :Crucible restart.
--- Called on the main loop.
function M.on_unexpected_exit(code, signal, buffers, restart, halt)
  if waiting then
    -- Another session of the same event (a shared daemon's windows end together): one
    -- restart, one message, one count.
    vim.list_extend(waiting, buffers)
    return
  end
  local now = now_ms()
  while stops[1] and now - stops[1] > M.WINDOW_MS do
    table.remove(stops, 1)
  end
  stops[#stops + 1] = now
  if #stops > M.MAX_RESTARTS then
    halt()
    gave_up = string.format(
      'the server stopped %d times in %d minutes; not restarting'
        .. ' (:Crucible restart, :checkhealth crucible)',
      #stops,
      M.WINDOW_MS / 60000
    )
    vim.notify('Crucible: ' .. gave_up, vim.log.levels.ERROR)
    return
  end
  vim.notify(
    string.format('Crucible: the server stopped (%s); restarting it', M.reason(code, signal)),
    vim.log.levels.WARN
  )
  waiting = vim.list_extend({}, buffers)
  vim.defer_fn(function()
    local pending = waiting
    waiting = nil
    if pending and vim.v.exiting == vim.NIL then
      restart(pending)
    end
  end, M.DELAY_MS)
end

--- :Crucible stop / restart: a pending restart is dropped; restart also forgets past exits.
function M.cancel()
  waiting = nil
end

function M.reset()
  waiting = nil
  stops = {}
  gave_up = nil
end

--- The give-up message while restarts are given up, else nil.
function M.given_up()
  return gave_up
end

return M
