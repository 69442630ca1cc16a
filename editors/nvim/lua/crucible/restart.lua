-- Restarting the server after it dies unexpectedly. Neovim's LSP client never restarts a
-- server, so without this a crash (or, with `shared = true`, a crash of the shared daemon,
-- which ends every window's session at once) would leave suggestions silently off until
-- Neovim is restarted. The bound is VS Code's languageclient's: at most MAX_RESTARTS
-- restarts within WINDOW_MS; the next unexpected exit in that window gives up, with one
-- message, until :Crucible restart. One message per exit, after Neovim's own (after_core).
-- What counts as unexpected is client.lua's to say (not stopped by the plugin, Neovim not
-- quitting, not a clean exit after shutdown).
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

--- Why a process ended, in words: "exit code 3", "signal 9, SIGKILL".
function M.reason(code, signal)
  if signal and signal ~= 0 then
    local name = SIGNALS[signal]
    return 'signal ' .. signal .. (name and (', ' .. name) or '')
  end
  return 'exit code ' .. tostring(code)
end

-- Neovim reports every exit that is not clean itself ("Client crucible quit with exit code 0
-- and signal 9", a WARN through vim.notify, on 0.7.2 as on 0.12), and offers no way to keep
-- it quiet: no option, and the plugin's on_exit cannot veto it. So the plugin's message is
-- the line after it, which says what happens next. Core queues its line in the same
-- main-loop turn as the plugin's on_exit: before calling it on 0.12, after it on 0.7.2.
-- This is called from the callback on_exit scheduled; scheduling once more puts the
-- plugin's line after core's on both, so it is the one left on the command line (before,
-- 0.7.2 showed core's alone).
local function after_core(message, level)
  vim.schedule(function()
    vim.notify(message, level)
  end)
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
  local why = M.reason(code, signal)
  if #stops > M.MAX_RESTARTS then
    halt()
    gave_up = string.format(
      'server exited %d times in %d minutes (last: %s); stopped restarting it',
      #stops,
      M.WINDOW_MS / 60000,
      why
    )
    local how = '. Restart it by hand: :Crucible restart'
    after_core('Crucible: ' .. gave_up .. how, vim.log.levels.ERROR)
    return
  end
  local message = 'Crucible: server exited (%s); restarting (%d of %d)'
  after_core(string.format(message, why, #stops, M.MAX_RESTARTS), vim.log.levels.WARN)
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
