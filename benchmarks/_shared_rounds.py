"""``python -m benchmarks.endurance --shared``: the shared daemon over rounds of windows.

The daemon outlives its windows, so what a window leaves in it adds up over a day. Each round
opens ``--windows`` thin clients (``crucible-lsp --stdio --shared``) a moment apart, working
at once: each opens a document, types in bursts with an inline completion after each, asks
for code actions on a diagnostic and a hover there, closes the document and ends with
``shutdown``/``exit``; in every other round the last window is killed instead (SIGKILL: no
``shutdown``, no ``didClose``). Between rounds, one window asks ``crucible/status`` (the
daemon's loop tasks and ``shared.ended_in_memory``: sessions that have left whose App is
still held) and closes; then, with no window open, the daemon's RSS, USS, open descriptors
and threads are read from outside (psutil).

The benchmark starts the daemon itself (as a thin client does: its own session, the log as
stderr), so no window is its parent. Baseline: the readings after round 1 (the first windows
served: the server imported, the shared cache and provider built); each later round is
printed as a ratio to it. ``--baseline-path CHECKOUT`` runs the same rounds, after this
checkout's, on another checkout's ``server/`` (say, main before a fix), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from tests.fakes.provider import FakeProvider

from benchmarks._peer_lsp import PeerExited, RawLsp

MODEL = "qwen2.5-coder:1.5b-base"
_TIMEOUT_S = 30.0
_SETTLE_S = 0.5  # after a round: the last sessions end in the daemon, buffers are freed
TEXT = "import math\n\n\ndef area(radius):\n    return math.pi * radus ** 2\n"
DIAGNOSTIC = {
    "range": {"start": {"line": 4, "character": 21}, "end": {"line": 4, "character": 26}},
    "severity": 1,
    "source": "Pyflakes",
    "code": "F821",
    "message": "undefined name 'radus'",
}
BURSTS = ("def ", "perimeter(r", "):\n    ", "return 2 * math.pi * r\n")


@dataclass(frozen=True)
class Reading:
    round: int
    rss_mb: float
    uss_mb: float
    fds: int
    threads: int
    tasks: int | None  # the daemon's loop tasks, the status window's own included
    ended_in_memory: int | None  # None: a daemon that does not report it (an older checkout)


class DaemonRounds:
    """One checkout's daemon in its own directories, and the windows that talk to it."""

    def __init__(self, root: Path, fake: FakeProvider, code: Path) -> None:
        here = Path(__file__).resolve().parents[1]
        self.workspace = root / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        # A short runtime directory: a Unix socket's path has ~100 bytes.
        self.runtime = Path(tempfile.mkdtemp(prefix="crr", dir="/tmp"))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join((str(code / "server"), str(here))),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "XDG_STATE_HOME": str(root / "state"),
            "XDG_RUNTIME_DIR": str(self.runtime),
        }
        self.argv = [sys.executable, "-m", "crucible", "--stdio", "--shared"]
        self.argv += ["--log-level", "WARNING"]
        provider = {"name": "bench", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
        self.options = {
            "providers": [provider],
            "completion": {"debounce_ms": 0},
            "cache": {"prefetch": "off"},
            "hover": {"prefetch": "off"},
        }
        self.daemon: psutil.Process | None = None
        self.process: asyncio.subprocess.Process | None = None

    async def start_daemon(self) -> None:
        directory = self.runtime / "crucible"
        with _log_file(self.runtime / "daemon.log") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "crucible.shared.daemon",
                str(directory),
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.process = process
        self.daemon = psutil.Process(process.pid)
        deadline = time.monotonic() + _TIMEOUT_S
        while not (directory / "daemon.sock").exists():
            if time.monotonic() > deadline:
                raise PeerExited("the daemon did not bind its socket")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)

    async def window(self) -> RawLsp:
        lsp = await RawLsp.spawn(self.argv, self.env, self.workspace)
        uri = self.workspace.as_uri()
        params = {
            "processId": os.getpid(),  # as editors send it: the session watches it
            "rootUri": uri,
            "workspaceFolders": [{"uri": uri, "name": "bench"}],
            "capabilities": {
                "general": {"positionEncodings": ["utf-16"]},
                "textDocument": {"inlineCompletion": {"dynamicRegistration": False}},
            },
            "initializationOptions": self.options,
        }
        await _answer(lsp.request("initialize", params))
        lsp.notify("initialized", {})
        return lsp

    async def a_window_at_work(self, tag: str, *, kill: bool) -> None:
        lsp = await self.window()
        try:
            await _work(lsp, (self.workspace / f"{tag}.py").as_uri())
            if kill:
                lsp.process.send_signal(signal.SIGKILL)
                await lsp.process.wait()
            else:
                # {} where pygls would send null: a null params is an invalid request here.
                await _answer(lsp.request("shutdown", {}))
                lsp.notify("exit", {})
                await asyncio.wait_for(lsp.process.wait(), _TIMEOUT_S)
        finally:
            await lsp.stop()

    async def reading(self, round_: int) -> Reading:
        lsp = await self.window()
        try:
            _, message = await _answer(lsp.request("crucible/status", {}))
        finally:
            await lsp.stop()
        await asyncio.sleep(_SETTLE_S)
        status: dict[str, Any] = message["result"]
        assert self.daemon is not None
        info = self.daemon.memory_full_info()
        return Reading(
            round=round_,
            rss_mb=info.rss / 2**20,
            uss_mb=info.uss / 2**20,
            fds=self.daemon.num_fds(),
            threads=self.daemon.num_threads(),
            tasks=status.get("memory", {}).get("tasks"),
            ended_in_memory=status.get("shared", {}).get("ended_in_memory"),
        )


def _log_file(path: Path) -> Any:
    """The daemon's stderr (a thin client gives it its log file)."""
    return path.open("ab")


async def _answer(answer: asyncio.Future[tuple[float, dict[str, Any]]]) -> tuple[float, Any]:
    arrived, message = await asyncio.wait_for(answer, _TIMEOUT_S)
    if "error" in message:
        raise PeerExited(f"error answer: {message['error']}")
    return arrived, message


async def _work(lsp: RawLsp, uri: str) -> None:
    """Open, type in bursts with a completion after each, code actions, hover, close."""
    text, version = TEXT, 1
    lsp.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
    )
    for burst in BURSTS:
        for char in burst:
            end = _end(text)
            text += char
            version += 1
            change = {"range": {"start": end, "end": end}, "text": char}
            lsp.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
            )
        context = {"triggerKind": 2}
        params = {"textDocument": {"uri": uri}, "position": _end(text), "context": context}
        await _answer(lsp.request("textDocument/inlineCompletion", params))
    where = {"textDocument": {"uri": uri}, "range": DIAGNOSTIC["range"]}
    _, actions = await _answer(
        lsp.request("textDocument/codeAction", {**where, "context": {"diagnostics": [DIAGNOSTIC]}})
    )
    if actions.get("result"):
        await _answer(lsp.request("codeAction/resolve", actions["result"][0]))
    position = {"line": 4, "character": 23}
    await _answer(
        lsp.request("textDocument/hover", {"textDocument": {"uri": uri}, "position": position})
    )
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


def _end(text: str) -> dict[str, int]:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}


async def rounds(bench: DaemonRounds, count: int, windows: int) -> list[Reading]:
    await bench.start_daemon()
    found = []
    for round_ in range(1, count + 1):
        working = []
        for index in range(windows):
            kill = index == windows - 1 and round_ % 2 == 0
            tag = f"r{round_}w{index}"
            working.append(asyncio.create_task(bench.a_window_at_work(tag, kill=kill)))
            await asyncio.sleep(0.1)  # a moment apart, then all at work together
        await asyncio.gather(*working)
        found.append(await bench.reading(round_))
    return found


def table(name: str, found: list[Reading], windows: int) -> str:
    base = found[0]
    lines = [
        f"{name}: {windows} windows a round (the last killed every other round); after each"
        f" round, no window open; ratio = against round 1",
        f"{'round':>5}{'RSS MB':>9}{'ratio':>7}{'USS MB':>9}{'fds':>5}{'ratio':>7}"
        f"{'threads':>8}{'tasks':>6}{'ended sessions held':>21}",
    ]
    for r in found:
        tasks = "-" if r.tasks is None else str(r.tasks)
        held = "- (not reported)" if r.ended_in_memory is None else str(r.ended_in_memory)
        lines.append(
            f"{r.round:>5}{r.rss_mb:>9.1f}{r.rss_mb / base.rss_mb:>6.2f}x{r.uss_mb:>9.1f}"
            f"{r.fds:>5}{r.fds / base.fds:>6.2f}x{r.threads:>8}{tasks:>6}{held:>21}"
        )
    return "\n".join(lines)


async def run(here: Path, count: int, windows: int, baseline: Path | None) -> None:
    systems = [("this checkout", here)]
    if baseline is not None:
        systems.append((f"baseline {baseline}", baseline))
    with FakeProvider(model=MODEL, reply="return a + b") as fake:
        for name, code in systems:
            with tempfile.TemporaryDirectory(prefix="crucible-rounds-") as scratch:
                bench = DaemonRounds(Path(scratch), fake, code)
                try:
                    found = await rounds(bench, count, windows)
                finally:
                    await bench.stop()
            print(table(name, found, windows), flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.endurance --shared")
    parser.add_argument("--shared", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 rounds (CI)")
    parser.add_argument("--baseline-path", type=Path, default=None)
    settings = parser.parse_args(argv)
    count = 3 if settings.quick else settings.rounds
    started = time.perf_counter()
    here = Path(__file__).resolve().parents[1]
    asyncio.run(run(here, count, settings.windows, settings.baseline_path))
    print(f"({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f})")
    return 0
