"""The server started again after it dies unexpectedly (a kill, a crash, the shared daemon's
end), within a bound, and never after :Crucible stop or Neovim quitting."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import psutil
from nvim_harness import DAEMON_MODULE, SERVER, Editor, settings_for, stop_daemon
from tests.fakes.provider import FakeProvider

SOURCE = "import os\n\n"
RESTARTING = "Crucible: server exited ({}); restarting ({} of 4)"
GAVE_UP = (
    "Crucible: server exited 5 times in 3 minutes (last: {}); stopped restarting it."
    " Restart it by hand: :Crucible restart"
)
# Neovim's own report of an exit that is not clean, which no option turns off: "Client 1 quit
# with exit code 0 and signal 9" (0.7.2), "Client crucible quit with exit code 0 and signal 9.
# Check log for errors: …" (0.12).
CORE_REPORT = re.compile(r"^Client \S+ quit with exit code \d+ and signal \d+")


def exit_lines(messages: str) -> list[str]:
    """The lines of ``:messages`` about the server's exits: core's and the plugin's."""
    return [
        line
        for line in messages.splitlines()
        if CORE_REPORT.match(line) or line.startswith("Crucible: server exited")
    ]


def client_id(editor: Editor) -> int | None:
    found: int | None = editor.lua(
        "local c = require('crucible.client').get(0) return c and c.initialized and c.id or nil"
    )
    return found


def server_processes(editor: Editor) -> list[psutil.Process]:
    """The servers Neovim runs: its children (a wrapper's children too), not a shared daemon
    one of them started (their child while they live)."""
    nvim = psutil.Process(editor.lua("return vim.fn.getpid()"))
    return [
        p
        for p in nvim.children(recursive=True)
        if "crucible" in (argv := " ".join(p.cmdline())) and DAEMON_MODULE not in argv
    ]


def counting_server(tmp_path: Path, exit_code: str = "$?") -> tuple[list[str], Path]:
    """A server command that appends a line to a file on each start (the file tells how many
    times the plugin started one) and exits with ``exit_code`` when the server ends."""
    starts = tmp_path / "starts"
    server = " ".join(shlex.quote(arg) for arg in SERVER)
    script = f"echo start >> {shlex.quote(str(starts))}; {server}; exit {exit_code}"
    return ["sh", "-c", script], starts


def daemon_pid(runtime: Path) -> int | None:
    try:
        return int((runtime / "crucible" / "daemon.pid").read_text())
    except (OSError, ValueError):
        return None


def count(starts: Path) -> int:
    return len(starts.read_text().splitlines()) if starts.exists() else 0


def test_a_killed_server_is_restarted_and_suggestions_come_back(
    editor: Editor, fake: FakeProvider, shared_option: bool
) -> None:
    editor.expect_errors = True  # core's own "quit with exit code 0 and signal 9 ... errors"
    editor.setup(settings=settings_for(fake), shared=shared_option)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    assert (editor.daemon_pid() is not None) == shared_option
    first = client_id(editor)
    (server,) = server_processes(editor)
    server.send_signal(signal.SIGKILL)
    editor.wait(
        lambda: client_id(editor) not in (None, first), 20, "a new server attached to the buffer"
    )
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"
    messages = editor.messages()
    # One line of the plugin's, after core's: the one left on the command line says what
    # happens (0.7.2 printed core's last, hiding the plugin's).
    lines = exit_lines(messages)
    assert len(lines) == 2 and CORE_REPORT.match(lines[0]), messages
    assert lines[1] == RESTARTING.format("signal 9, SIGKILL", 1), messages
    assert "Error" not in messages and "stack traceback" not in messages


def test_a_server_that_exits_on_every_start_is_given_up_after_four_restarts(
    editor: Editor, tmp_path: Path
) -> None:
    editor.expect_errors = True  # core warns of each exit; the plugin's give-up is an error
    starts = tmp_path / "starts"
    crash = f"open({str(starts)!r}, 'a').write('start\\n'); raise SystemExit(3)"
    editor.setup(cmd=[sys.executable, "-c", crash])
    editor.edit(editor.workspace / "demo.py", SOURCE)
    gave_up = GAVE_UP.format("exit code 3")
    editor.wait(lambda: gave_up in editor.messages(), 20, "the give-up message")
    time.sleep(1.5)  # longer than the delay before a restart: none comes
    assert count(starts) == 5  # the first start and four restarts
    messages = editor.messages()
    # Each exit: core's line, then the plugin's, counting; the last says it gave up and how
    # to restart by hand.
    lines = exit_lines(messages)
    assert len(lines) == 10, messages
    assert all(CORE_REPORT.match(line) for line in lines[0::2]), messages
    restarting = [RESTARTING.format("exit code 3", n) for n in (1, 2, 3, 4)]
    assert lines[1::2] == [*restarting, gave_up], messages
    # Given up: another buffer starts no server either, until :Crucible restart.
    editor.edit(editor.workspace / "other.py", SOURCE)
    time.sleep(0.5)
    assert count(starts) == 5
    editor.nvim.command("checkhealth crucible")
    assert "stopped restarting it" in "\n".join(editor.nvim.current.buffer[:])
    editor.nvim.command("bwipeout!")
    editor.nvim.command("Crucible restart")
    editor.wait(lambda: count(starts) >= 6, 10, ":Crucible restart to start it again")


def test_crucible_stop_does_not_restart_and_restart_starts_again(
    editor: Editor, fake: FakeProvider, tmp_path: Path, shared_option: bool
) -> None:
    # The server's wrapper exits 1 however the server ends: to the plugin, every exit looks
    # like a crash, and only its knowing that it asked for this one keeps it from restarting.
    cmd, starts = counting_server(tmp_path, exit_code="1")
    editor.expect_errors = True  # core warns of the exit code 1
    editor.setup(cmd=cmd, settings=settings_for(fake), shared=shared_option)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    # The wrapper drops its arguments (--shared): the option reaches it through CRUCIBLE_SHARED.
    assert (editor.daemon_pid() is not None) == shared_option
    editor.nvim.command("Crucible stop")
    editor.wait(lambda: editor.lua("return #require('crucible.client').all()") == 0, 10, "stop")
    time.sleep(1.5)
    editor.edit(editor.workspace / "other.py", SOURCE)  # BufEnter starts none either
    time.sleep(0.5)
    assert count(starts) == 1
    assert editor.lua("return #require('crucible.client').all()") == 0
    assert "restarting" not in editor.messages()

    editor.nvim.command("Crucible restart")
    editor.wait_attached()
    assert count(starts) == 2
    editor.nvim.command("buffer demo.py")
    editor.wait_attached()  # both buffers it served are attached again
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"


def test_quitting_neovim_does_not_restart(
    editor: Editor, fake: FakeProvider, tmp_path: Path, shared_option: bool
) -> None:
    editor.expect_errors = True  # Neovim is gone when the test ends: no :messages to read
    cmd, starts = counting_server(tmp_path, exit_code="1")
    editor.setup(cmd=cmd, settings=settings_for(fake), shared=shared_option)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    assert (editor.daemon_pid() is not None) == shared_option
    # A slow quit (another plugin's work at exit, after core stopped the servers): long
    # enough for a restart's delay to pass before Neovim is gone.
    editor.lua(
        "vim.api.nvim_create_autocmd('VimLeavePre', { callback = function() vim.wait(2000) end })"
    )
    nvim = psutil.Process(editor.lua("return vim.fn.getpid()"))
    editor.nvim.command("qall!", async_=True)
    nvim.wait(15)
    time.sleep(0.5)
    assert count(starts) == 1


def test_the_shared_daemons_end_restarts_every_windows_session(
    editor: Editor, fake: FakeProvider, tmp_path: Path
) -> None:
    """With ``shared = true`` the daemon's death ends the session of every buffer at once
    (its thin client exits 1): one restart, one message, a new daemon, suggestions again."""
    editor.expect_errors = True  # core warns of the thin client's exit code 1
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    editor.lua("vim.env.XDG_RUNTIME_DIR = ...", str(runtime))
    try:
        editor.setup(settings=settings_for(fake), shared=True)
        other = tmp_path / "other-ws"
        (other / ".git").mkdir(parents=True)
        editor.edit(other / "lib.py", SOURCE)  # a second root: a second session
        editor.wait_attached()
        editor.edit(editor.workspace / "demo.py", SOURCE)
        editor.wait_attached()
        assert editor.lua("return #require('crucible.client').all()") == 2
        first = client_id(editor)
        # Both sessions served by one daemon (the thin client answers initialize itself,
        # before it has connected): killing it then ends them, rather than their start.
        served_by = """
            local compat = require('crucible.compat') local pids = {}
            for _, c in ipairs(require('crucible.client').all()) do
              local r = compat.request_sync(c, 'crucible/status', {}, 10000)
              local shared = r and type(r.result) == 'table' and r.result.shared
              pids[#pids + 1] = type(shared) == 'table' and shared.pid or nil
            end
            return pids"""
        pids = editor.wait(
            lambda: (p := editor.lua(served_by)) and len(p) == 2 and p[0] == p[1] and p,
            20,
            "both sessions served by the daemon",
        )
        pid = pids[0]
        assert pid == daemon_pid(runtime)
        os.kill(pid, signal.SIGKILL)
        editor.wait(
            lambda: client_id(editor) not in (None, first),
            30,
            f"a new session for the buffer ({editor.messages()!r})",
        )
        editor.input("Godef add(a, b):<CR>")
        assert editor.wait_ghost()["ghost"] == "return a + b"
        editor.wait(lambda: daemon_pid(runtime) not in (None, pid), 10, "a new daemon")
        assert editor.messages().count("; restarting (1 of 4)") == 1, editor.messages()
        editor.input("<Esc>")
        editor.nvim.command(f"buffer {other / 'lib.py'}")
        editor.wait_attached()
    finally:
        editor.lua(
            "require('crucible.client').stop_all()"
            " vim.wait(5000, function() return #require('crucible.client').all() == 0 end, 20)"
        )
        stop_daemon(runtime)


def test_restart_false_leaves_a_killed_server_stopped(
    editor: Editor, fake: FakeProvider, tmp_path: Path, shared_option: bool
) -> None:
    editor.expect_errors = True  # core's own "quit with exit code 0 and signal 9 ... errors"
    cmd, starts = counting_server(tmp_path)
    editor.setup(cmd=cmd, settings=settings_for(fake), restart=False, shared=shared_option)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    assert (editor.daemon_pid() is not None) == shared_option
    for server in server_processes(editor):
        server.send_signal(signal.SIGKILL)
    editor.wait(lambda: client_id(editor) is None, 10, "the client to end")
    time.sleep(1.5)  # longer than the delay before a restart
    assert count(starts) == 1
    assert "restarting" not in editor.messages()
