"""Start-up: how soon Crucible answers ``initialize``, and serves its first completion.

Each run spawns every system once, in a rotating order, so that the machine's noise falls on
all of them alike (the same stdlib client and launches as :mod:`benchmarks.peers`):

- **crucible**: ``python -m crucible --stdio`` from this checkout (``initialize`` answered by
  ``lsp/early_start.py`` while the server loads);
- **crucible, plain**: the same with ``CRUCIBLE_EARLY_START=0`` (the server loaded first);
- **crucible, no bytecode cache**: the same with ``CRUCIBLE_BYTECODE_CACHE=0`` (attrs compiles
  lsprotocol's generated methods at every start; ``runtime/bytecode_cache.py``). The other
  Crucible systems keep their cache directory across runs: the warm-up run fills it;
- **crucible, baseline** (``--baseline DIR``): another checkout's ``server/`` on PYTHONPATH,
  e.g. a worktree of the commit before a change;
- **tabby-agent** (npm, pinned; installed by ``benchmarks.peers``), a **bare pygls** server and
  the **stdlib floor**: ``initialize`` only.

Measured, per Crucible system (the loopback fake provider answers at once):

- ``init``: spawn -> ``initialize`` answered;
- ``ready``: spawn -> the answer to an ``inlineCompletion`` sent right after ``initialized`` and
  ``didOpen`` (what a client that asks at once waits for: the server's load);
- ``first``: an ``inlineCompletion`` sent ``--idle-s`` after ``initialize`` (a user's first
  keystroke), request -> answer; ``second``: the next one, at another position (also a
  provider call), for the cost that is the first request's own.

Medians over ``--runs`` after ``--warmup`` discarded; ratios are to **crucible** in the same
run. Run from the repository root::

    python -m benchmarks.startup [--runs 15] [--baseline ../main] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.provider import FakeProvider

from benchmarks import _peer_servers
from benchmarks._peer_lsp import Message, PeerExited, RawLsp
from benchmarks._peer_servers import TABBY_AGENT, Launch

MODEL = "qwen2.5-coder:1.5b-base"
_TIMEOUT_S = 30.0
_TEXT = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    "


@dataclass
class Samples:
    init: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    second: list[float] = field(default_factory=list)
    skipped: str | None = None


def _capabilities() -> dict[str, Any]:
    return {
        "general": {"positionEncodings": ["utf-16"]},
        "textDocument": {
            "synchronization": {"dynamicRegistration": False},
            "inlineCompletion": {"dynamicRegistration": False},
        },
    }


def _initialize_params(launch: Launch) -> dict[str, Any]:
    workspace = launch.cwd.as_uri()
    return {
        "processId": None,
        "clientInfo": {"name": "crucible-startup", "version": "1"},
        "rootUri": workspace,
        "workspaceFolders": [{"uri": workspace, "name": "bench"}],
        "capabilities": _capabilities(),
        "initializationOptions": launch.initialization_options,
    }


def _inline(uri: str, line: int, character: int) -> dict[str, Any]:
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 1},  # invoked: no debounce, the server's own time
    }


async def _answer(answer: asyncio.Future[tuple[float, Message]]) -> float:
    arrived, message = await asyncio.wait_for(answer, _TIMEOUT_S)
    if "error" in message:
        raise PeerExited(f"error answer: {message['error']}")
    return arrived


async def _run_once(launch: Launch, samples: Samples, completes: bool, idle_s: float) -> None:
    lsp = await RawLsp.spawn(launch.argv, launch.env, launch.cwd)
    try:
        arrived = await _answer(lsp.request("initialize", _initialize_params(launch)))
        init_ms = (arrived - lsp.started) * 1000
        ready_ms = first_ms = second_ms = None
        lsp.notify("initialized", {})
        if completes:
            uri = (launch.cwd / "a.py").as_uri()
            document = {"uri": uri, "languageId": "python", "version": 1, "text": _TEXT}
            lsp.notify("textDocument/didOpen", {"textDocument": document})
            arrived = await _answer(
                lsp.request("textDocument/inlineCompletion", _inline(uri, 5, 4))
            )
            ready_ms = (arrived - lsp.started) * 1000
            # A fresh document for the "first keystroke", so that nothing is cached for it.
            uri = (launch.cwd / "b.py").as_uri()
            document = {**document, "uri": uri, "text": _TEXT + "x"}
            await asyncio.sleep(max(0.0, idle_s - (time.perf_counter() - lsp.started)))
            lsp.notify("textDocument/didOpen", {"textDocument": document})
            sent = time.perf_counter()
            first_ms = (
                await _answer(lsp.request("textDocument/inlineCompletion", _inline(uri, 5, 5)))
                - sent
            ) * 1000
            sent = time.perf_counter()
            second_ms = (
                await _answer(lsp.request("textDocument/inlineCompletion", _inline(uri, 1, 4)))
                - sent
            ) * 1000
    finally:
        await lsp.stop()
    samples.init.append(init_ms)
    for values, value in (
        (samples.ready, ready_ms),
        (samples.first, first_ms),
        (samples.second, second_ms),
    ):
        if value is not None:
            values.append(value)


def _crucible(root: Path, name: str, fake: FakeProvider, extra_env: dict[str, str]) -> Launch:
    launch = _peer_servers.crucible(root / name, fake.base_url, MODEL, log_level="WARNING")
    return Launch(
        name, launch.argv, {**launch.env, **extra_env}, launch.cwd, launch.initialization_options
    )


def _launches(root: Path, fake: FakeProvider, settings: argparse.Namespace) -> list[Launch]:
    here = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([f"{here}/server", here])
    launches = [
        _crucible(root, "crucible", fake, {"PYTHONPATH": path}),
        _crucible(root, "crucible, plain", fake, {"PYTHONPATH": path, "CRUCIBLE_EARLY_START": "0"}),
        _crucible(
            root,
            "crucible, no bytecode cache",
            fake,
            {"PYTHONPATH": path, "CRUCIBLE_BYTECODE_CACHE": "0"},
        ),
    ]
    if settings.baseline is not None:
        base = settings.baseline.resolve()
        launches.append(
            _crucible(
                root, "crucible, baseline", fake, {"PYTHONPATH": f"{base}/server{os.pathsep}{here}"}
            )
        )
    if settings.peers:
        cache = _peer_servers.cache_root()
        if _peer_servers.node_version() and TABBY_AGENT.installed(cache):
            launches.append(_peer_servers.tabby_agent(root, cache, fake.base_url))
        else:
            print(f"tabby-agent skipped: not in {cache} (python -m benchmarks.peers installs it)")
        launches += [_peer_servers.bare_pygls(root), _peer_servers.stdlib_floor(root)]
    return launches


async def run(settings: argparse.Namespace) -> dict[str, Samples]:
    fake = FakeProvider(model=MODEL, reply=lambda _: "a * b\n")
    with fake, tempfile.TemporaryDirectory(prefix="crucible-startup-") as scratch:
        launches = _launches(Path(scratch), fake, settings)
        found = {launch.name: Samples() for launch in launches}
        for run_index in range(settings.warmup + settings.runs):
            shift = run_index % len(launches)
            for launch in [*launches[shift:], *launches[:shift]]:
                samples = found[launch.name]
                if samples.skipped:
                    continue
                kept = samples if run_index >= settings.warmup else Samples()
                try:
                    await _run_once(
                        launch, kept, launch.name.startswith("crucible"), settings.idle_s
                    )
                except (PeerExited, TimeoutError, OSError) as exc:
                    if launch.name.startswith("crucible"):
                        raise
                    samples.skipped = str(exc).splitlines()[0][:200]
    return found


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(found: dict[str, Samples]) -> str:
    reference = found["crucible"]
    lines = [
        f"{'system':<30}{'init ms':>10}{'x':>7}{'ready ms':>10}{'first ms':>10}{'second ms':>10}"
    ]
    for name, samples in found.items():
        if samples.skipped:
            lines.append(f"{name:<30}skipped: {samples.skipped}")
            continue
        init, ref = _median(samples.init), _median(reference.init)
        ratio = f"{init / ref:.2f}" if init and ref else "-"
        cells = [_median(values) for values in (samples.ready, samples.first, samples.second)]
        shown = "".join(f"{value:>10.0f}" if value is not None else f"{'-':>10}" for value in cells)
        lines.append(f"{name:<30}{init or 0:>10.0f}{ratio:>7}{shown}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    add = parser.add_argument
    add("--runs", type=int, default=15, help="measured runs per system (default 15)")
    add("--warmup", type=int, default=1, help="runs discarded first (default 1)")
    add("--idle-s", type=float, default=2.0, help="spawn -> the 'first keystroke' (default 2)")
    add("--baseline", type=Path, help="another checkout to compare (its server/ on PYTHONPATH)")
    add("--no-peers", dest="peers", action="store_false", help="Crucible only")
    add("--quick", action="store_true", help="3 runs, no warm-up: proves it runs (CI)")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    if settings.quick:
        settings.runs, settings.warmup = min(settings.runs, 3), 0
    try:
        found = asyncio.run(run(settings))
    except (PeerExited, OSError, TimeoutError) as exc:
        print(f"start-up benchmark broke (Crucible): {exc}", file=sys.stderr)
        return 2
    print(
        f"medians of {settings.runs} runs (after {settings.warmup} discarded); x: init / crucible's"
    )
    print(table(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
