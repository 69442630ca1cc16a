"""The shared daemon against separate servers: window start-up and the memory of N windows.

Two systems, each run in turn (rotating order, so the machine's noise falls on both):

- **separate**: ``python -m crucible --stdio`` per window, as editors start it today;
- **shared**: ``python -m crucible --stdio --shared`` per window (a thin client), the first of
  which starts the per-user daemon; the daemon is killed after each run, so that every run's
  first window starts it anew.

Measured (the loopback fake provider answers at once; each run's documents are new, so no
answer comes from the cache):

- ``first init`` / ``first ready``: the first window, spawn -> ``initialize`` answered, and
  spawn -> the answer to an ``inlineCompletion`` sent right after ``initialized`` and
  ``didOpen`` (for **shared**, this includes starting the daemon);
- ``second init`` / ``second ready``: the same for a second window while the first is open;
- ``client work`` (shared systems only): the CPU time (user + system: the machine's load
  moves it far less than wall time) of the thin client's own work before it can say hello to
  the daemon, in a fresh process after the interpreter's start (the same for all): its
  imports, the daemon's directory, the version it says (``shared/code_version.py``: a
  checkout's fingerprint) and the environment it passes; the median of 5 processes a run;
- ``PSS N`` (and ``RSS N``): with N windows open, each having served a completion, the sum
  over every process (the servers; or the thin clients plus the daemon) of the proportional
  set size (shared pages split between the processes sharing them; psutil on Linux), and of
  the resident set size, in MB.

Medians over ``--runs`` after ``--warmup`` discarded; ratios are shared / separate, measured in
the same run. ``--baseline-path CHECKOUT`` adds a third system, **baseline**: the shared
daemon run from another checkout's ``server/`` (say, main's before a change to the thin
client), with a column shared / baseline. Run from the repository root::

    python -m benchmarks.shared [--runs 5] [--windows 1 3 6] [--quick] [--baseline-path DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tests.fakes.provider import FakeProvider

from benchmarks._peer_lsp import PeerExited, RawLsp

MODEL = "qwen2.5-coder:1.5b-base"
_TIMEOUT_S = 60.0
SYSTEMS = ("separate", "shared")


@dataclass
class Samples:
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)


class Bench:
    """One system's environment: its directories and how a window starts."""

    def __init__(
        self, root: Path, system: str, fake: FakeProvider, code: Path | None = None
    ) -> None:
        here = Path(__file__).resolve().parents[1]
        code = code or here  # the checkout whose server/ runs
        self.system = system
        self.folder = root / system
        self.workspace = self.folder / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        # A short runtime directory: a Unix socket's path has ~100 bytes.
        self.runtime = Path(tempfile.mkdtemp(prefix="crb", dir="/tmp"))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join((str(code / "server"), str(here))),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "XDG_CACHE_HOME": str(self.folder / "cache"),
            "XDG_STATE_HOME": str(self.folder / "state"),
            "XDG_RUNTIME_DIR": str(self.runtime),
        }
        self.argv = [sys.executable, "-m", "crucible", "--stdio", "--log-level", "WARNING"]
        if system != "separate":
            self.argv.append("--shared")
        provider = {"name": "bench", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
        self.options = {"providers": [provider], "cache": {"prefetch": "off"}}

    def daemon(self) -> psutil.Process | None:
        try:
            pid = int((self.runtime / "crucible" / "daemon.pid").read_text())
            return psutil.Process(pid)
        except (OSError, ValueError, psutil.Error):
            return None

    def stop_daemon(self) -> None:
        daemon = self.daemon()
        if daemon is not None:
            with_suppressed(lambda: daemon.send_signal(signal.SIGKILL))
            with_suppressed(lambda: daemon.wait(10))

    def close(self) -> None:
        self.stop_daemon()
        shutil.rmtree(self.runtime, ignore_errors=True)


def with_suppressed(action: Any) -> None:
    try:
        action()
    except (psutil.Error, OSError):
        pass


async def _answer(answer: asyncio.Future[tuple[float, dict[str, Any]]]) -> float:
    arrived, message = await asyncio.wait_for(answer, _TIMEOUT_S)
    if "error" in message:
        raise PeerExited(f"error answer: {message['error']}")
    return arrived


async def open_window(bench: Bench, tag: str) -> tuple[RawLsp, float, float]:
    """A window: spawned, initialized, a completion served; (lsp, init ms, ready ms)."""
    lsp = await RawLsp.spawn(bench.argv, bench.env, bench.workspace)
    workspace = bench.workspace.as_uri()
    params = {
        "processId": None,
        "rootUri": workspace,
        "workspaceFolders": [{"uri": workspace, "name": "bench"}],
        "capabilities": {
            "general": {"positionEncodings": ["utf-16"]},
            "textDocument": {"inlineCompletion": {"dynamicRegistration": False}},
        },
        "initializationOptions": bench.options,
    }
    init = (await _answer(lsp.request("initialize", params)) - lsp.started) * 1000
    lsp.notify("initialized", {})
    # New text each time: the answer comes from the provider, never from the cache.
    text = f"# {tag}\ndef mul(a, b):\n    "
    uri = (bench.workspace / f"{tag}.py").as_uri()
    document = {"uri": uri, "languageId": "python", "version": 1, "text": text}
    lsp.notify("textDocument/didOpen", {"textDocument": document})
    inline = {
        "textDocument": {"uri": uri},
        "position": {"line": 2, "character": 4},
        "context": {"triggerKind": 1},
    }
    ready = await _answer(lsp.request("textDocument/inlineCompletion", inline)) - lsp.started
    return lsp, init, ready * 1000


# The thin client's work before its hello (shared/client.py run_client), timed in a fresh
# process; a checkout without shared/code_version.py (the baseline before it) says its release.
_CLIENT_WORK = """
import time
started = time.process_time()
import os, sys
import crucible
from crucible.shared.client import Relay
from crucible.shared.handshake import Hello, session_env, user_config_file
from crucible.shared.place import daemon_place
try:
    from crucible.shared.code_version import code_version
except ImportError:
    def code_version():
        return crucible.__version__
place = daemon_place(os.environ)
hello = Hello(code_version(), session_env(os.environ, [user_config_file(os.environ)]))
print((time.process_time() - started) * 1000)
"""


async def client_work_ms(bench: Bench, samples: int = 5) -> float:
    found = []
    for _ in range(samples):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT_WORK,
            env=bench.env,
            cwd=bench.workspace,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        found.append(float(out))
    return statistics.median(found)


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(PSS, RSS) summed over ``pids``, in MB; PSS falls back to USS, then RSS."""
    pss = rss = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", None) or getattr(info, "uss", None) or info.rss
    return pss / 2**20, rss / 2**20


async def run_system(bench: Bench, samples: Samples, windows: list[int], run: int) -> None:
    opened: list[RawLsp] = []
    if bench.system != "separate":
        samples.add("client work", await client_work_ms(bench))
    try:
        first, init, ready = await open_window(bench, f"r{run}w0")
        opened.append(first)
        samples.add("first init", init)
        samples.add("first ready", ready)
        second, init, ready = await open_window(bench, f"r{run}w1")
        opened.append(second)
        samples.add("second init", init)
        samples.add("second ready", ready)
        for count in sorted(windows):
            while len(opened) < count:
                lsp, _, _ = await open_window(bench, f"r{run}w{len(opened)}")
                opened.append(lsp)
            await asyncio.sleep(0.3)  # settle: start-up garbage collected, buffers freed
            pids = [lsp.pid for lsp in opened[:count]]
            daemon = bench.daemon()
            if daemon is not None:
                pids.append(daemon.pid)
            pss, rss = memory_mb(pids)
            samples.add(f"PSS {count}", pss)
            samples.add(f"RSS {count}", rss)
    finally:
        for lsp in opened:
            await lsp.stop()
        bench.stop_daemon()


async def run(settings: argparse.Namespace) -> dict[str, Samples]:
    fake = FakeProvider(model=MODEL, reply=lambda _: "a * b\n")
    baseline: Path | None = settings.baseline_path
    systems = (*SYSTEMS, "baseline") if baseline is not None else SYSTEMS
    found = {system: Samples() for system in systems}
    with fake, tempfile.TemporaryDirectory(prefix="crucible-shared-") as scratch:
        benches = [
            Bench(Path(scratch), system, fake, baseline if system == "baseline" else None)
            for system in systems
        ]
        try:
            for index in range(settings.warmup + settings.runs):
                turn = index % len(benches)  # each system first in turn
                order = benches[turn:] + benches[:turn]
                for bench in order:
                    kept = found[bench.system] if index >= settings.warmup else Samples()
                    await run_system(bench, kept, settings.windows, index)
        finally:
            for bench in benches:
                bench.close()
    return found


def table(found: dict[str, Samples]) -> str:
    base, shared = found["separate"].figures, found["shared"].figures
    baseline = found["baseline"].figures if "baseline" in found else None
    header = f"{'figure':<14}{'separate':>12}{'shared':>12}{'shared/separate':>18}"
    if baseline is not None:
        header += f"{'baseline':>12}{'shared/baseline':>18}"
    lines = [header]
    for name in [*base, *(name for name in shared if name not in base)]:
        unit = "MB" if name.startswith(("PSS", "RSS")) else "ms"
        one = statistics.median(base.get(name, [0.0]))
        two = statistics.median(shared.get(name, [0.0]))
        line = f"{name:<14}{one:>9.1f} {unit}{two:>9.1f} {unit}{_ratio(two, one):>18}"
        if baseline is not None:
            three = statistics.median(baseline.get(name, [0.0]))
            line += f"{three:>9.1f} {unit}{_ratio(two, three):>18}"
        lines.append(line)
    return "\n".join(lines)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--quick", action="store_true", help="one run, 1 and 3 windows (CI)")
    parser.add_argument(
        "--baseline-path",
        type=Path,
        default=None,
        help="another checkout: its server/ runs a third system, shared (baseline)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    if settings.quick:
        settings.runs, settings.warmup, settings.windows = 1, 0, [1, 3]
    started = time.perf_counter()
    found = asyncio.run(run(settings))
    print(
        f"shared daemon vs separate servers: medians of {settings.runs} runs"
        f" ({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f})"
    )
    print(table(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
