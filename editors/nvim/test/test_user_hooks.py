"""A user's own client hooks (on_init, on_attach, on_exit, a crucible/* handler) run beside
the plugin's instead of replacing them: the server is still restarted after a kill, the status
line still gets crucible/didChangeStatus, the code-action rewrite is still installed; and the
user's hooks run too. Given three ways: the plugin's ``lsp`` option (every version),
``vim.lsp.config('crucible', ...)`` and ``vim.lsp.config('*', ...)`` (0.11+)."""

from __future__ import annotations

import signal

import psutil
import pytest
from nvim_harness import SERVER, Editor, settings_for
from tests.fakes.provider import FakeProvider

SOURCE = "import os\n\n"

# Defines the user's hooks named in `which` (each notes its call in _G.seen), configures them
# the way named by `way`, and calls setup().
SETUP_WITH_USER_HOOKS = r"""
local way, cmd, settings, which = ...
_G.seen = {}
local function note(what)
  return function(...)
    local args = { ... }
    if what == 'exit' then
      what = string.format('exit %s %s', args[1], args[2])
    end
    table.insert(_G.seen, what)
  end
end
local all = {
  on_init = note('init'),
  on_attach = note('attach'),
  on_exit = note('exit'),
  handlers = { ['crucible/didChangeStatus'] = note('status') },
}
local hooks = {}
for _, name in ipairs(which) do
  hooks[name] = all[name]
  if way == 'vim.lsp.config, lists' and name ~= 'handlers' then
    hooks[name] = { all[name], all[name] } -- 0.11+ takes a list of callbacks: each runs
  end
end
if way == 'setup' then
  require('crucible').setup({ cmd = cmd, settings = settings, lsp = hooks })
elseif way == 'vim.lsp.config' or way == 'vim.lsp.config, lists' then
  require('crucible').setup({ cmd = cmd, settings = settings })
  vim.lsp.config('crucible', hooks)
else -- vim.lsp.config('*'): the user's hooks for every server, Crucible's too
  vim.lsp.config('*', hooks)
  require('crucible').setup({ cmd = cmd, settings = settings })
end
"""

CLIENT_ID = "local c = require('crucible.client').get(0) return c and c.initialized and c.id or nil"

# Whether the plugin's on_init ran: it wraps client.request (compat.rewrite_requests) so that
# code-action requests carry the other servers' diagnostics.
REQUEST_IS_THE_PLUGINS = (
    "local c = require('crucible.client').get(0)"
    " return c ~= nil and debug.getinfo(c.request, 'S').source:find('crucible/compat.lua') ~= nil"
)


def seen(editor: Editor) -> list[str]:
    found: list[str] = editor.lua("return _G.seen")
    return found


WAYS = ["setup", "vim.lsp.config", "vim.lsp.config, lists", "vim.lsp.config('*')"]


def skip_without_lsp_config(editor: Editor, way: str) -> None:
    if way != "setup" and editor.major_minor < (0, 11):
        pytest.skip("vim.lsp.config is Neovim 0.11+")


def kill_server(editor: Editor) -> None:
    nvim = psutil.Process(editor.lua("return vim.fn.getpid()"))
    (server,) = [p for p in nvim.children() if "crucible" in " ".join(p.cmdline())]
    server.send_signal(signal.SIGKILL)


@pytest.mark.parametrize("way", WAYS)
def test_a_users_on_exit_runs_and_the_server_is_still_restarted(
    editor: Editor, fake: FakeProvider, way: str
) -> None:
    skip_without_lsp_config(editor, way)
    editor.expect_errors = True  # core's own "quit with exit code 0 and signal 9"
    editor.lua(SETUP_WITH_USER_HOOKS, way, SERVER, settings_for(fake), ["on_exit"])
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    first = editor.lua(CLIENT_ID)
    kill_server(editor)
    editor.wait(
        lambda: editor.lua(CLIENT_ID) not in (None, first),
        20,
        f"a new server attached to the buffer ({editor.messages()!r})",
    )
    calls = 2 if way.endswith("lists") else 1
    assert seen(editor) == ["exit 0 9"] * calls  # the user's on_exit (each of them), once
    assert editor.messages().count("Crucible: server exited (signal 9, SIGKILL)") == 1
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"


@pytest.mark.parametrize("way", WAYS)
def test_a_users_on_init_on_attach_and_status_handler_run_beside_the_plugins(
    editor: Editor, fake: FakeProvider, way: str
) -> None:
    skip_without_lsp_config(editor, way)
    editor.lua(
        SETUP_WITH_USER_HOOKS,
        way,
        SERVER,
        settings_for(fake),
        ["on_init", "on_attach", "handlers"],
    )
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    # The plugin's: its status handler (the status line) and its on_init.
    editor.wait(lambda: editor.lua("return require('crucible').status() ~= nil"), 10, "status")
    assert editor.lua(REQUEST_IS_THE_PLUGINS)
    # The user's, each once so far.
    editor.wait(lambda: "status" in seen(editor), 10, "the user's status handler")
    calls = 2 if way.endswith("lists") else 1
    assert seen(editor).count("init") == calls, seen(editor)
    assert seen(editor).count("attach") == calls, seen(editor)
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"
