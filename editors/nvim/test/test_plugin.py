"""The rest of what a user meets: which buffers get the server, settings, the status line,
:Crucible, :checkhealth crucible and diagnostics forwarding."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from nvim_harness import SERVER, Editor, settings_for, stop_daemon
from tests.fakes.provider import FakeProvider, Fault

SOURCE = "import os\n\n"


def start(editor: Editor, fake: FakeProvider) -> None:
    editor.setup(settings=settings_for(fake))
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()


def attached(editor: Editor) -> bool:
    return bool(editor.lua("return require('crucible.client').get(0) ~= nil"))


def checkhealth(editor: Editor) -> str:
    editor.nvim.command("checkhealth crucible")
    text = "\n".join(editor.nvim.current.buffer[:])
    editor.nvim.command("bwipeout!")
    return text


def test_every_file_buffer_by_default_and_the_filetype_lists(
    editor: Editor, fake: FakeProvider
) -> None:
    editor.setup(settings=settings_for(fake), filetypes={"exclude": ["markdown"]})
    editor.edit(editor.workspace / "notes.md", "# notes\n")
    time.sleep(0.3)
    assert not attached(editor)
    editor.edit(editor.workspace / "data.unknownext", "x\n")  # no filetype at all: attached
    editor.wait_attached()
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    # One server for the workspace, whatever the number of buffers.
    assert editor.lua("return #require('crucible.client').all()") == 1
    root = editor.lua("return require('crucible.client').get(0).config.root_dir")
    assert Path(root) == editor.workspace

    editor.setup(settings=settings_for(fake), filetypes={"include": ["lua"]})
    editor.edit(editor.workspace / "other.py", SOURCE)
    time.sleep(0.3)
    assert not attached(editor)


def test_status_line_follows_the_server_and_settings_apply_on_change(
    editor: Editor, fake: FakeProvider
) -> None:
    start(editor, fake)
    editor.wait(
        lambda: editor.lua("return require('crucible').status()") == "Crucible: ready",
        what="status ready",
    )
    # initializationOptions carried the provider; a change of settings goes out at once.
    settings = settings_for(fake)
    settings["completion"]["enabled"] = False
    editor.lua("require('crucible').update_settings(...)", settings)
    editor.wait(
        lambda: editor.lua("return require('crucible').status()") == "Crucible: disabled",
        what="status disabled after the settings change",
    )
    assert editor.lua("return require('crucible').status_data().state") == "disabled"
    editor.input("Godef add(a, b):<CR>")
    editor.settle()
    time.sleep(0.3)
    assert editor.snapshot()["ghost"] is None
    assert fake.generation_requests() == []
    # setup() called again (a re-sourced config) is a change of settings too.
    editor.input("<Esc>")
    editor.setup(settings=settings_for(fake))
    editor.wait(
        lambda: editor.lua("return require('crucible').status()") == "Crucible: ready",
        what="status ready after setup() again",
    )


def own_runtime(editor: Editor, tmp_path: Path) -> Path:
    """An XDG_RUNTIME_DIR of the test's own for the servers Neovim starts from now on: what
    daemon there is (or none) is this test's alone."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    editor.lua("vim.env.XDG_RUNTIME_DIR = ...", str(runtime))
    return runtime


def stop_servers(editor: Editor) -> None:
    """Every Crucible server stopped and gone (a thin client's session ends cleanly)."""
    editor.lua(
        "local compat = require('crucible.compat')"
        " for _, c in ipairs(require('crucible.client').all()) do compat.stop(c) end"
        " vim.wait(5000, function() return #require('crucible.client').all() == 0 end, 20)"
    )


def test_the_default_runs_a_thin_client_of_a_daemon(
    editor: Editor, fake: FakeProvider, tmp_path: Path
) -> None:
    """By default (no ``shared`` given, whatever the suite's choice) the server Neovim starts
    is a thin client of a per-user daemon, which it starts in XDG_RUNTIME_DIR, and the session
    runs in that daemon. A cmd of the user's own (here ``python -m crucible --stdio``) gets
    ``--shared`` too, and the server's environment says it (CRUCIBLE_SHARED=1)."""
    runtime = own_runtime(editor, tmp_path)
    try:
        editor.lua(
            "require('crucible').setup(...)", {"cmd": SERVER, "settings": settings_for(fake)}
        )
        assert editor.lua("return require('crucible').options().shared") is True
        editor.edit(editor.workspace / "demo.py", SOURCE)
        editor.wait_attached()
        config = editor.lua(
            "local c = require('crucible.client').get(0).config"
            " return { cmd = c.cmd, cmd_env = c.cmd_env }"
        )
        assert config["cmd"] == [*SERVER, "--shared"]
        assert config["cmd_env"] == {"CRUCIBLE_SHARED": "1"}
        # The thin client answers initialize itself: the session's crucible/status, once
        # it is connected, says which daemon serves it: the one started in XDG_RUNTIME_DIR.
        pid = editor.daemon_pid()
        assert pid == int((runtime / "crucible" / "daemon.pid").read_text())
        assert (runtime / "crucible" / "daemon.sock").is_socket()
        editor.input("Godef add(a, b):<CR>")
        assert editor.wait_ghost()["ghost"] == "return a + b"
    finally:
        stop_servers(editor)  # then the daemon this test started
        stop_daemon(runtime)


def test_shared_false_starts_a_plain_server(
    editor: Editor, fake: FakeProvider, tmp_path: Path
) -> None:
    """``shared = false``: no ``--shared``, CRUCIBLE_SHARED=0 for the server even when Neovim's
    environment has CRUCIBLE_SHARED=1 (exported for another editor), no daemon started, and
    the session is the server's own."""
    runtime = own_runtime(editor, tmp_path)
    editor.lua("vim.env.CRUCIBLE_SHARED = '1'")
    try:
        editor.setup(settings=settings_for(fake), shared=False)
        editor.edit(editor.workspace / "demo.py", SOURCE)
        editor.wait_attached()
        config = editor.lua(
            "local c = require('crucible.client').get(0).config"
            " return { cmd = c.cmd, cmd_env = c.cmd_env }"
        )
        assert config["cmd"] == SERVER
        assert config["cmd_env"] == {"CRUCIBLE_SHARED": "0"}
        assert editor.daemon_pid() is None
        editor.input("Godef add(a, b):<CR>")
        assert editor.wait_ghost()["ghost"] == "return a + b"
        assert not (runtime / "crucible").exists()  # no socket, no pid: no daemon
        editor.input("<Esc>")
        report = checkhealth(editor)
        assert "shared = false: each workspace root gets a server of its own" in report, report
    finally:
        stop_servers(editor)
        stop_daemon(runtime)


def test_a_cmd_set_with_vim_lsp_config_runs_shared_through_the_environment(
    editor: Editor, fake: FakeProvider, tmp_path: Path
) -> None:
    """0.11+: a cmd from ``vim.lsp.config('crucible', {...})`` is used as it is (no
    ``--shared``), and the option still reaches the server through CRUCIBLE_SHARED=1, as it
    does a wrapper that drops its arguments."""
    if editor.major_minor < (0, 11):
        pytest.skip("vim.lsp.config is 0.11+")
    runtime = own_runtime(editor, tmp_path)
    try:
        editor.setup(settings=settings_for(fake), shared=True)
        editor.lua("vim.lsp.config('crucible', { cmd = ... })", SERVER)
        editor.edit(editor.workspace / "demo.py", SOURCE)
        editor.wait_attached()
        config = editor.lua(
            "local c = require('crucible.client').get(0).config"
            " return { cmd = c.cmd, cmd_env = c.cmd_env }"
        )
        assert config == {"cmd": SERVER, "cmd_env": {"CRUCIBLE_SHARED": "1"}}
        assert editor.daemon_pid() == int((runtime / "crucible" / "daemon.pid").read_text())
        # Suggestions come (and the session's workspace/configuration pull is answered before
        # the stop below: a pull still pending at shutdown gets its answer logged as a warning
        # of an unknown message id).
        editor.input("Godef add(a, b):<CR>")
        assert editor.wait_ghost()["ghost"] == "return a + b"
    finally:
        stop_servers(editor)
        stop_daemon(runtime)


def test_crucible_commands(editor: Editor, fake: FakeProvider) -> None:
    start(editor, fake)
    editor.nvim.command("Crucible status")
    editor.wait(
        lambda: editor.lua("return vim.b.crucible_title") == "crucible/status",
        what="the status window",
    )
    shown = editor.nvim.current.buffer[:]
    assert re.match(r"Crucible \S+: ready$", shown[0]), shown[:3]
    assert any("fake (ollama" in line and "ready" in line for line in shown), shown[:6]
    # Shared (the default): the daemon's block (pid, sessions) is there too.
    assert ("shared:" in shown) == editor.lua("return require('crucible').options().shared")
    assert editor.lua("return vim.api.nvim_win_get_config(0).relative") == "editor"  # floating
    editor.nvim.command("close")

    editor.nvim.command("Crucible clearCache")
    editor.wait(lambda: "cache cleared" in editor.messages(), what="clearCache's answer")

    editor.nvim.command("Crucible toggle")
    assert editor.lua("return require('crucible').status()") == "Crucible: off"
    editor.input("Godef add(a, b):<CR>")
    editor.settle()
    time.sleep(0.3)
    assert editor.snapshot()["ghost"] is None
    editor.input("<Esc>")
    editor.nvim.command("Crucible toggle")
    assert editor.lua("return require('crucible').status()") != "Crucible: off"

    editor.nvim.command("Crucible log")
    log = editor.lua("return require('vim.lsp.log').get_filename()")
    assert editor.nvim.current.buffer.name == log
    editor.nvim.command("close")

    editor.nvim.command("Crucible doctor")  # with the editor's settings as its --config
    editor.wait(
        lambda: any("(exit status 0)" in line for line in editor.nvim.current.buffer[:]),
        timeout=30,
        what="doctor's report",
    )
    assert any("Ready: 1 of 1" in line for line in editor.nvim.current.buffer[:])

    editor.nvim.command("help crucible-keys")  # doc/tags ships with the plugin
    assert editor.nvim.current.buffer.name.endswith("editors/nvim/doc/crucible.txt")


def test_checkhealth_ok_with_the_fake_provider(editor: Editor, fake: FakeProvider) -> None:
    # Before any buffer: the report comes from `crucible-lsp doctor --json`, given the
    # editor's settings as its --config file.
    editor.setup(settings=settings_for(fake))
    report = checkhealth(editor)
    assert "ERROR" not in report, report
    assert re.search(r"OK.*version: crucible-lsp", report), report
    assert re.search(r"OK.*doctor: ready", report), report
    assert re.search(r"OK.*Neovim " + re.escape(editor.version), report), report

    shared = editor.lua("return require('crucible').options().shared")
    log = editor.home / "xdg_state_home" / "crucible" / "daemon.log"
    if shared:  # whether the server is shared, and where the shared server's log is
        assert re.search(r"OK.*shared = true \(the default\)", report), report
        assert f"the shared server's log: {log}" in report, report
    else:
        assert "shared = false: each workspace root gets a server of its own" in report, report

    # With a running server: its crucible/status.
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    report = checkhealth(editor)
    assert "ERROR" not in report, report
    assert re.search(r"OK.*server state: ready", report), report
    assert re.search(r"OK.*provider fake \(ollama .*\): ready", report), report
    if shared:  # the session's own daemon, as crucible/status says
        pid = editor.daemon_pid()
        assert re.search(rf"OK.*this session runs in the shared server \(pid {pid}, ", report)


def test_checkhealth_warns_when_no_shared_server_could_be_used(
    editor: Editor, fake: FakeProvider, tmp_path: Path
) -> None:
    """Shared, but the daemon's directory cannot be used (here a file is in its place): the
    thin client serves the window alone, suggestions still come, and :checkhealth says so."""
    editor.expect_errors = True  # the thin client's stderr line: why it serves alone
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (runtime / "crucible").write_text("not a directory\n")
    editor.lua("vim.env.XDG_RUNTIME_DIR = ...", str(runtime))
    editor.setup(settings=settings_for(fake), shared=True)
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.wait_attached()
    assert editor.daemon_pid() is None
    editor.input("Godef add(a, b):<CR>")
    assert editor.wait_ghost()["ghost"] == "return a + b"
    editor.input("<Esc>")
    report = checkhealth(editor)
    assert re.search(r"WARNING.*this session runs in a server of its own", report), report
    assert "serving this window alone" in editor.lsp_log()


def test_checkhealth_warns_of_a_provider_waiting_for_its_rate_limit(
    editor: Editor, fake: FakeProvider
) -> None:
    spent = (("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "60s"))
    fake.inject(Fault(headers=spent), times=1)  # the answer comes, and spends the quota
    start(editor, fake)
    editor.input("Godef add(a, b):<CR>")
    editor.wait_ghost()
    status = editor.wait(
        lambda: editor.lua(
            "local s = require('crucible.client').status(0)"
            " return s and s.state == 'offline' and s or nil"
        ),
        what="the status to say the provider waits",
    )
    assert status["message"].startswith("Crucible: waiting for fake's rate limit (resets at")
    report = checkhealth(editor)
    # Waiting is not an error of the provider's: a warning, with why.
    assert re.search(
        r"WARNING.*provider fake \(ollama .*\): rate_limited \(waiting for its rate limit", report
    ), report


def test_checkhealth_error_without_a_server(editor: Editor, tmp_path: Path) -> None:
    editor.setup(cmd=[str(tmp_path / "no-such-crucible-lsp"), "--stdio"])
    report = checkhealth(editor)
    assert re.search(
        r"ERROR.*no-such-crucible-lsp \(from the cmd option\) is not executable", report
    )
    # What the user is told (vim.notify, recorded here rather than shown).
    editor.lua("_G.told = {} vim.notify = function(m, l) table.insert(_G.told, {m, l}) end")
    editor.edit(editor.workspace / "demo.py", SOURCE)
    editor.edit(editor.workspace / "other.py", SOURCE)
    told = editor.lua("return _G.told")
    assert len(told) == 1 and told[0][1] == 4, told  # vim.log.levels.ERROR, once
    assert "is not executable. See :checkhealth crucible" in told[0][0]
    assert not attached(editor)


def test_checkhealth_error_when_the_server_fails(editor: Editor, tmp_path: Path) -> None:
    editor.setup(cmd=[sys.executable, "-c", "raise SystemExit(3)"])
    report = checkhealth(editor)
    assert "ERROR" in report and "failed" in report, report


def test_diagnostics_are_forwarded_debounced_without_crucibles_own(
    editor: Editor, fake: FakeProvider
) -> None:
    editor.lua("require('vim.lsp.log').set_level('debug')")  # the log then shows every message sent
    start(editor, fake)
    editor.lua(
        """
        local buf = vim.api.nvim_get_current_buf()
        local other = vim.api.nvim_create_namespace('some_linter')
        local own = vim.lsp.diagnostic.get_namespace(require('crucible.client').get(0).id)
        for i = 1, 3 do
          vim.diagnostic.set(other, buf, {
            { lnum = 0, col = 7, end_lnum = 0, end_col = 9, severity = 1,
              message = 'unused import ' .. i, source = 'linter' },
          })
        end
        vim.diagnostic.set(own, buf, {
          { lnum = 1, col = 0, severity = 3, message = 'crucible own note' },
        })
        """
    )

    def sent() -> list[str]:
        return [
            line
            for line in editor.lsp_log().splitlines()
            if "rpc.send" in line and "crucible/didChangeDiagnostics" in line
        ]

    editor.wait(sent, timeout=5, what="a crucible/didChangeDiagnostics notification")
    time.sleep(0.7)  # longer than the debounce: nothing more comes
    lines = sent()
    assert len(lines) == 1, lines
    assert "unused import 3" in lines[0] and "unused import 1" not in lines[0]
    assert "crucible own note" not in lines[0]
    # The server takes it silently: no stderr line, no error (checked after every test).
    assert "didChangeDiagnostics" not in "".join(
        line for line in editor.lsp_log().splitlines() if '"stderr"' in line
    )
