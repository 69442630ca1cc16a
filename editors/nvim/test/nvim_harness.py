"""Driving a real Neovim with the plugin over msgpack-RPC (pynvim): the `Editor` of the
Neovim suite, and the settings that point the server at the fake provider. See conftest.py."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pynvim
from tests.fakes.provider import FakeProvider

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "editors" / "nvim"
SERVER = [sys.executable, "-m", "crucible", "--stdio"]
MODEL = "qwen2.5-coder:1.5b-base"

# Reads Crucible's ghost text back from its extmarks: the CrucibleSuggestion chunks of the
# first line, then each virtual line. Also the line and cursor, in the same main-loop tick,
# so that what is compared was on screen at the same time.
SNAPSHOT_LUA = r"""
local ns_name, hl = ...
local ns = vim.api.nvim_create_namespace(ns_name)
local buf = vim.api.nvim_get_current_buf()
local pos = vim.api.nvim_win_get_cursor(0)
local line = vim.api.nvim_buf_get_lines(buf, pos[1] - 1, pos[1], false)[1] or ''
local marks = vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })
local ghost = nil
local at = nil
for _, m in ipairs(marks) do
  local d = m[4]
  local text = ''
  for _, c in ipairs(d.virt_text or {}) do
    if c[2] == hl then text = text .. c[1] end
  end
  for _, l in ipairs(d.virt_lines or {}) do
    text = text .. '\n'
    for _, c in ipairs(l) do
      if c[2] == hl then text = text .. c[1] end
    end
  end
  ghost = (ghost or '') .. text
  at = { m[2], m[3] }
end
return {
  ghost = ghost, at = at, marks = #marks, line = line, row = pos[1] - 1, col = pos[2],
  before = line:sub(1, pos[2]), mode = vim.api.nvim_get_mode().mode,
  lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false),
}
"""


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    match = re.search(r"NVIM v(\d+\.\d+\.\d+)", out.stdout)
    assert match, f"{binary} --version said {out.stdout!r}"
    return match.group(1)


def _binaries() -> list[tuple[str, str]]:
    named = os.environ.get("CRUCIBLE_NVIM")
    paths = named.split(":") if named else [shutil.which("nvim") or "nvim"]
    return [(path, _version(path)) for path in paths if path]


NEOVIMS = _binaries()

# The suite's ``shared`` option: the plugin's default (shared) unless the suite runs with
# ``CRUCIBLE_SHARED=0``, which gives every test ``shared = false`` (a test that names the
# option keeps its own). Neovim itself never sees the variable (conftest.py): the plugin
# puts CRUCIBLE_SHARED in the server's environment from the option.
SUITE_SHARED: bool | None = False if os.environ.get("CRUCIBLE_SHARED") == "0" else None

# The daemon's command line: ``python -c "...crucible.shared.daemon..." <its directory>``.
DAEMON_MODULE = "crucible.shared.daemon"


def daemons() -> list[tuple[psutil.Process, Path]]:
    """Every shared daemon on the machine (this user's), with its directory."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if any(DAEMON_MODULE in arg for arg in argv) and argv[-1].startswith("/"):
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append((process, Path(argv[-1])))
    return found


def end_daemons(under: Path, timeout: float = 10.0) -> list[int]:
    """End (SIGTERM, then SIGKILL) every daemon whose directory is under ``under`` and wait
    for them to be gone; their pids. A daemon runs in a session of its own, outside the
    editor's process group, and would otherwise wait ``CRUCIBLE_DAEMON_IDLE_S`` for another
    window."""
    ours = [process for process, place in daemons() if place.is_relative_to(under)]
    for process in ours:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(ours, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [process.pid for process in ours]


def stop_daemon(runtime: Path) -> list[int]:
    """End the shared daemon started under ``runtime`` (an XDG_RUNTIME_DIR), if any, and wait
    for it to be gone (a retired one too); their pids."""
    return end_daemons(runtime)


def settings_for(fake: FakeProvider, **completion: Any) -> dict[str, Any]:
    """Server settings with the fake as the one provider, no debounce, no prefetch, no disk."""
    return {
        "providers": [
            {"name": "fake", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
        ],
        "completion": {"debounce_ms": 0, **completion},
        "cache": {"prefetch": "off", "disk": False},
    }


def line_length_answer(line: str) -> str:
    """What the fake answers in the stale-suggestion checks: the length of the line before the
    cursor it was asked about, so that a suggestion tells which text it was computed for."""
    return f"  # {len(line)}"


def fits(before: str, ghost: str) -> bool:
    """Whether ``ghost``, shown after ``before`` (the line up to the cursor), is the rest of a
    ``line_length_answer`` computed for this line: for the line as it is, or for an earlier
    state of it that the user has since typed the start of the answer over (type-through)."""
    shown = before + ghost
    return any(before[:k] + line_length_answer(before[:k]) == shown for k in range(len(before) + 1))


def prompt_line(body: Any) -> str:
    """The line before the cursor as the provider saw it (Ollama's ``prompt``)."""
    prompt = body.get("prompt", "") if isinstance(body, dict) else ""
    return str(prompt).rsplit("\n", 1)[-1]


class Editor:
    """One real Neovim with the plugin on its runtimepath."""

    def __init__(self, binary: str, version: str, home: Path, workspace: Path) -> None:
        self.version = version
        self.home = home
        self.workspace = workspace
        self.expect_errors = False
        init = home / "init.lua"
        init.write_text(
            f"vim.opt.rtp:prepend({str(PLUGIN)!r})\n"
            "vim.o.swapfile = false\n"
            "vim.o.expandtab = true\n"
            "vim.o.shiftwidth = 4\n"
        )
        self.nvim = pynvim.attach(
            "child", argv=[binary, "--embed", "--headless", "-u", str(init), "-i", "NONE", "-n"]
        )

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor, _ = self.version.split(".")
        return int(major), int(minor)

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def setup(self, **opts: Any) -> None:
        """``require('crucible').setup(opts)``, with this checkout's server as ``cmd`` and the
        suite's ``shared`` (SUITE_SHARED) unless ``opts`` name them."""
        opts.setdefault("cmd", SERVER)
        if SUITE_SHARED is not None:
            opts.setdefault("shared", SUITE_SHARED)
        self.lua("require('crucible').setup(...)", opts)

    def daemon_pid(self, timeout: float = 20.0) -> int | None:
        """The pid of the shared daemon whose session serves this buffer (crucible/status's
        ``shared``), or None when a server of its own does."""
        status = self.wait(
            lambda: self.lua(
                "local c = require('crucible.client').get(0)"
                " local r = c and require('crucible.compat')"
                ".request_sync(c, 'crucible/status', {}, 10000, 0)"
                " return r and r.result"
            ),
            timeout,
            "crucible/status",
        )
        shared = status.get("shared")
        return int(shared["pid"]) if isinstance(shared, dict) else None

    def edit(self, path: Path, text: str | None = None) -> None:
        if text is not None:
            path.write_text(text)
        self.nvim.command(f"edit {path}")

    def wait_attached(self, timeout: float = 20.0) -> None:
        self.wait(
            lambda: self.lua(
                "local c = require('crucible.client').get(0)"
                " return c ~= nil and c.initialized == true"
            ),
            timeout,
            "the server to be attached and initialized",
        )

    def input(self, keys: str) -> None:
        self.nvim.input(keys)

    def snapshot(
        self, namespace: str = "crucible", highlight: str = "CrucibleSuggestion"
    ) -> dict[str, Any]:
        """The ghost text drawn in ``namespace`` (its chunks in ``highlight``), with the line and
        cursor at that moment."""
        found: dict[str, Any] = self.lua(SNAPSHOT_LUA, namespace, highlight)
        found.setdefault("ghost", None)  # a nil in a Lua table is no key at all
        found.setdefault("at", None)
        return found

    def wait(
        self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    def wait_ghost(self, timeout: float = 10.0) -> dict[str, Any]:
        found: dict[str, Any] = self.wait(
            lambda: (s := self.snapshot())["ghost"] and s, timeout, "ghost text"
        )
        return found

    def settle(self) -> None:
        """Until Neovim has handled every key sent so far (an RPC round trip after them)."""
        self.wait(lambda: not self.nvim.api.get_mode()["blocking"], 5, "input to be handled")
        self.lua("return 1")

    def messages(self) -> str:
        text: str = self.nvim.exec_lua("return vim.api.nvim_exec('messages', true)")
        return text

    def lsp_log(self) -> str:
        path = Path(self.lua("return require('vim.lsp.log').get_filename()"))
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        try:
            self.nvim.command("qall!", async_=True)
        except Exception:
            pass
        try:
            self.nvim.close()
        except Exception:
            pass


ERROR_IN_MESSAGES = re.compile(r"E\d+:|Error|error|stack traceback|deprecated")
