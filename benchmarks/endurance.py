"""Endurance: a compressed day of editing through the real server; does anything grow?

The real server (``python -m crucible --stdio``, isolated in a temporary directory as in
``typing_replay``) and the loopback fake provider (Ollama wire format, in-process) take a day of
editing as fast as the server reads it (:mod:`benchmarks._day_of_editing`): by default 200k
``didChange`` in bursts of typing and deleting, 20k inline completions (misses, type-through,
repeats served from cache), 500 documents opened and closed with at most 40 open, three of them
1 MB, and a provider fault every 100 requests (500, hang past the deadline, slow, cut stream,
503 with Retry-After). Every few seconds the server's RSS, USS, threads and open files are read
from outside with psutil, and tasks, memory pressure and the L1 cache's bytes from
``crucible/status`` when it reports them (:mod:`benchmarks._vitals`). Quiet readings (every
request answered, a settle pause) are taken at the end of the warm-up (the first 10 % of
events) and at checkpoints after it. Printed: the table, a plot (PNG with matplotlib, the
``bench`` extra; ASCII sparklines always), and the verdicts against the issue's targets
(:mod:`benchmarks._endurance_figures`).

A second phase (**pressure**; in the full run, or with ``--pressure``) starts a fresh server with
``[memory] soft_limit_mb`` below the first phase's warm RSS and ``hard_limit_mb`` a tenth above it
plus the open documents' largest text (which no level may drop), plays a quarter of the day, and
reports the pressure levels over time, the shrinks and the highest RSS against the hard limit. The
**baseline**: RSS after ``initialize`` of Crucible against a bare pygls 2 server
(:mod:`benchmarks._bare_pygls`), both measured in the same run.

Run from the repository root::

    python -m benchmarks.endurance [--quick] [--scale X] [--pressure | --no-pressure]
                                   [--interval S] [--json PATH] [--plot PATH]
    python -m benchmarks.endurance --shared [--rounds 10] [--windows 3] [--quick]
                                   [--baseline-path CHECKOUT]

``--shared`` runs another benchmark: the shared daemon, which outlives its windows, over
rounds of windows opened, worked in and closed (or killed); its RSS, descriptors, threads
and the sessions it still holds after each round (:mod:`benchmarks._shared_rounds`).

The exit status is non-zero only when the run itself breaks; verdicts are printed, not asserted
(``tests/e2e/test_endurance.py`` asserts the resource ones on a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import zlib
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from tests.fakes.provider import FakeProvider, RecordedRequest

from benchmarks import _endurance_figures as figures
from benchmarks._day_of_editing import _CODE_LINES, QUICK, Day, Plan, Tally
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session
from benchmarks._vitals import Monitor, Vitals, outside

MODEL = "qwen2.5-coder:1.5b-base"
WARM_UP = 0.10  # share of the events before the baseline reading
# The editing day the default plan stands for, and the seconds this machine (2 cores) takes to
# play it (docs/memory.md's run): the compression that ``compressed_ttl_s`` applies to L1's TTL.
DAY_HOURS = 8.0
PLAY_S = 214.0
CHECKPOINTS = 4  # quiet readings after the warm-up's, evenly spaced, the last at the end
_ROOT = Path(__file__).resolve().parent.parent


def _reply(record: RecordedRequest) -> str:
    """A line of real code, chosen by the prompt's last characters (deterministic)."""
    body = record.body if isinstance(record.body, dict) else {}
    prompt = body.get("prompt")
    tail = prompt[-64:] if isinstance(prompt, str) else ""
    return _CODE_LINES[zlib.crc32(tail.encode()) % len(_CODE_LINES)]


def compressed_ttl_s(plan: Plan) -> int:
    """The L1 TTL that keeps the share of the played day the default keeps of a real one.

    The default ``cache.ttl_s`` (3600 s) keeps an hour of an ``DAY_HOURS``-hour day's answers
    in memory; a plan played in ``PLAY_S`` seconds per default day of events keeps the same
    share in this many seconds.
    Without it the compressed day keeps every answer it ever made (the TTL never passes) and
    L1 fills towards its 32 MB budget, which no real day does (``--real-ttl`` shows that)."""
    return max(1, round(PLAY_S * plan.events / Plan().events / DAY_HOURS))


def initialization_options(
    fake: FakeProvider, memory: dict[str, Any] | None, ttl_s: int | None = None
) -> dict[str, Any]:
    provider = {"name": "endurance", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
    options: dict[str, Any] = {
        "providers": [provider],
        # No debounce: every request reaches the completion service at once (the most work a
        # request can cause); a short deadline so hung provider calls end within the run.
        "completion": {"debounce_mode": "fixed", "debounce_ms": 0, "timeout_ms": 1500},
    }
    if memory is not None:
        options["memory"] = memory
    if ttl_s is not None:
        options["cache"] = {"ttl_s": ttl_s}
    return options


@dataclass
class Phase:
    """One server's run: its plan, what was sent and answered, the readings and verdicts."""

    label: str
    plan: Plan
    warm_events: int
    tally: Tally = field(default_factory=Tally)
    readings: list[Vitals] = field(default_factory=list)
    verdicts: list[figures.Verdict] = field(default_factory=list)
    init: tuple[float, float | None, int, int] | None = None  # outside() after initialize
    wall_s: float = 0.0
    calls: int = 0  # generation requests the provider received
    status: dict[str, Any] | None = None  # crucible/status at the end
    messages: list[str] = field(default_factory=list)

    def verdict(self, name: str) -> figures.Verdict:
        return next(v for v in self.verdicts if v.name.startswith(name))


async def endure(
    plan: Plan,
    *,
    label: str = "endurance",
    seed: int = 7,
    interval_s: float = 3.0,
    settle_s: float = 1.0,
    memory: dict[str, Any] | None = None,
    ttl_s: int | None = None,
) -> Phase:
    """Play ``plan`` into a fresh server and take its vitals; see the module docstring."""
    phase = Phase(label, plan, warm_events=round(plan.events * WARM_UP))
    later = plan.events - phase.warm_events
    marks = [phase.warm_events + later * k // CHECKPOINTS for k in range(CHECKPOINTS)]
    async with AsyncExitStack() as stack:
        fake = stack.enter_context(FakeProvider(model=MODEL, reply=_reply, chunk_size=16, slots=4))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crucible-endure-")))
        session = await stack.enter_async_context(
            crucible_session(workdir, initialization_options(fake, memory, ttl_s))
        )
        started = time.perf_counter()
        await asyncio.sleep(settle_s / 2)
        phase.init = outside(session.pid)
        day = Day(session, fake, plan, seed=seed)
        monitor = Monitor(session.pid, session.status, lambda: day.tally.events, started)
        phase.readings = monitor.readings
        await monitor.read()

        async def quiet_reading() -> None:
            await day.drain()
            await session.status()  # answered after every notification sent before it
            await _warming_over(session)
            await asyncio.sleep(settle_s)
            await monitor.read(quiet=True)

        def forget_requests() -> None:
            # The fake records every request with its body; count them, then let them go.
            phase.calls += len(fake.generation_requests())
            fake.requests.clear()

        async def between_steps(tally: Tally) -> None:
            if marks and tally.events >= marks[0]:
                marks.pop(0)
                forget_requests()
                session.check_alive()
                await quiet_reading()

        sampler = asyncio.create_task(monitor.every(interval_s))
        try:
            phase.tally = await day.run(between_steps)
            await quiet_reading()
        finally:
            sampler.cancel()
        phase.wall_s = time.perf_counter() - started
        forget_requests()
        phase.status = await session.status()
        phase.messages = list(session.messages)
    phase.verdicts = figures.verdicts(phase.readings, phase.warm_events, phase.tally)
    return phase


async def _warming_over(session: CrucibleSession, limit_s: float = 20.0) -> None:
    """Wait (at most ``limit_s``) until no provider attempt is left warming: one the client
    stopped waiting for runs on to its first byte, up to 15 s after it started (the pool's
    ``warm_limit``; after a hang fault, all of it), with its tasks. Nothing is in flight at a
    quiet reading, so those are waited for too, as the requests are."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = await session.status()
        providers = status.get("providers") if isinstance(status, dict) else None
        if not isinstance(providers, list) or not any(
            isinstance(p, dict) and p.get("warming") for p in providers
        ):
            return
        await asyncio.sleep(0.25)


async def bare_pygls_rss(settle_s: float = 0.5) -> tuple[float, float | None, int, int]:
    """RSS, USS, threads and fds of a bare pygls server after ``initialize``."""
    client = LanguageClient("endurance-baseline", "1")
    path = os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    await client.start_io(sys.executable, "-m", "benchmarks._bare_pygls", env=env, cwd=_ROOT)
    try:
        capabilities = types.ClientCapabilities()
        params = types.InitializeParams(process_id=os.getpid(), capabilities=capabilities)
        await asyncio.wait_for(client.initialize_async(params), 30)
        client.initialized(types.InitializedParams())
        await asyncio.sleep(settle_s)
        assert client._server is not None
        found = outside(client._server.pid)
        await asyncio.wait_for(client.shutdown_async(None), 5)
        client.exit(None)
        await asyncio.wait_for(client._server.wait(), 5)
    finally:
        await client.stop()  # type: ignore[no-untyped-call]
    return found


def _timeline(readings: list[Vitals]) -> str:
    """The pressure levels as they changed: ``normal@0s -> elevated@12s -> ...``."""
    steps: list[str] = []
    last = None
    for reading in readings:
        if reading.pressure != last:
            steps.append(f"{reading.pressure}@{reading.at_s:.0f}s")
            last = reading.pressure
    return " -> ".join(steps) or "-"


def _report(phase: Phase, plot: Path | None) -> dict[str, Any]:
    tally, plan = phase.tally, phase.plan
    rate = tally.events / phase.wall_s if phase.wall_s else 0.0
    print(
        f"\n== {phase.label}: {tally.changes} didChange, {tally.requests} inline completions "
        f"({tally.steps['burst']} bursts, {tally.steps['type']} type-through runs, "
        f"{tally.steps['repeat']} repeats), {tally.opened} documents opened / {tally.closed} "
        f"closed (at most {plan.max_open} open, {plan.large_files} of "
        f"{plan.large_bytes // 1000} KB), {tally.faults} provider faults"
    )
    print(
        f"wall {phase.wall_s:.1f} s ({rate:.0f} events/s), {phase.calls} provider calls, "
        f"{tally.suggestions} answers with a suggestion; warm-up: the first "
        f"{phase.warm_events} events\n"
    )
    print(figures.table(phase.readings))
    print()
    print(figures.ascii_plot(phase.readings))
    base = figures.warm(phase.readings, phase.warm_events)
    if plot is not None and figures.png_plot(
        phase.readings, base.at_s if base else None, plot, f"Crucible {phase.label}"
    ):
        print(f"plot: {plot}")
    requests = (phase.status or {}).get("requests")
    if isinstance(requests, dict):
        counted = ("served", "superseded", "type_through", "cache_hit", "timeout", "error")
        print("server's requests: " + ", ".join(f"{k} {requests.get(k, '-')}" for k in counted))
    print("Verdicts (after the warm-up):")
    print("\n".join(figures.verdict_lines(phase.verdicts)))
    for message in dict.fromkeys(phase.messages):
        print(f"server said: {message}")
    return {
        "label": phase.label,
        "plan": asdict(plan),
        "tally": asdict(tally),
        "wall_s": round(phase.wall_s, 1),
        "warm_events": phase.warm_events,
        "calls": phase.calls,
        "readings": [asdict(r) for r in phase.readings],
        "verdicts": [asdict(v) for v in phase.verdicts],
        "status": phase.status,
        "messages": phase.messages,
    }


def _pressure_report(phase: Phase, memory: dict[str, Any]) -> dict[str, Any]:
    peak = max(phase.readings, key=lambda r: r.rss_mb)
    hard = memory["hard_limit_mb"]
    status_memory = (phase.status or {}).get("memory", {})
    shrinks = status_memory.get("shrinks") if isinstance(status_memory, dict) else None
    print(
        f"pressure phase: soft {memory['soft_limit_mb']} MB, hard {hard} MB; levels "
        f"{_timeline(phase.readings)}\n"
        f"  shrinks: {shrinks if shrinks is not None else 'not reported by the server'}\n"
        f"  [{'PASS' if peak.rss_mb < hard else 'FAIL'}] RSS held under the hard limit: "
        f"max {peak.rss_mb:.1f} MB at {peak.at_s:.0f} s vs {hard} MB"
    )
    return {"memory": memory, "timeline": _timeline(phase.readings), "shrinks": shrinks}


async def run(settings: argparse.Namespace) -> dict[str, Any]:
    plan = (QUICK if settings.quick else Plan()).scaled(settings.scale)
    interval = settings.interval or (1.0 if settings.quick else 3.0)
    bare = await bare_pygls_rss()
    ttl_s = None if settings.real_ttl else compressed_ttl_s(plan)
    print(
        "L1 TTL: the default 3600 s (--real-ttl)"
        if ttl_s is None
        else f"L1 TTL: {ttl_s} s, the default 3600 s compressed as the {DAY_HOURS:.0f}-hour day is"
        f" (played in ~{PLAY_S * plan.events / Plan().events:.0f} s; --real-ttl keeps 3600 s)"
    )
    main = await endure(plan, interval_s=interval, seed=settings.seed, ttl_s=ttl_s)
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(settings).items()}}
    report["endurance"] = _report(main, settings.plot)
    assert main.init is not None
    print(
        f"\nRSS after initialize: crucible {main.init[0]:.1f} MB (USS {main.init[1]}), bare pygls "
        f"{bare[0]:.1f} MB (USS {bare[1]}): +{main.init[0] - bare[0]:.1f} MB; threads "
        f"{main.init[2]} vs {bare[2]}, open files {main.init[3]} vs {bare[3]}"
    )
    report["after_initialize"] = {"crucible": main.init, "bare_pygls": bare}
    if settings.pressure if settings.pressure is not None else not settings.quick:
        warm = figures.warm(main.readings, main.warm_events)
        warm_rss = warm.rss_mb if warm else main.readings[-1].rss_mb
        # The hard limit leaves room for the open documents' text at its largest in the main
        # phase: the editor's files are the one thing no level may drop, so a limit below
        # warm RSS plus them is one no server could hold.
        documents_mb = max((r.documents_bytes or 0) for r in main.readings) / (1 << 20)
        memory = {
            "soft_limit_mb": max(1, int(warm_rss * 0.8)),
            "hard_limit_mb": int((warm_rss + documents_mb) * 1.1) + 1,
            "check_interval_s": 1,
        }
        pressured = await endure(
            plan.scaled(settings.pressure_scale),
            label="pressure",
            interval_s=interval,
            seed=settings.seed + 1,
            memory=memory,
            ttl_s=ttl_s,
        )
        plot = settings.plot
        plot = plot.with_name(f"{plot.stem}-pressure{plot.suffix}") if plot else None
        report["pressure"] = _report(pressured, plot)
        report["pressure"].update(_pressure_report(pressured, memory))
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.endurance", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="3000 didChange, 300 requests, 24 documents (CI)")
    add("--scale", type=float, default=1.0, help="multiply every count of the plan")
    add("--pressure", action="store_true", default=None, help="run the pressure phase too")
    add("--no-pressure", dest="pressure", action="store_false", help="skip the pressure phase")
    add("--real-ttl", action="store_true", help="keep L1's 3600 s TTL (the day is compressed)")
    add("--pressure-scale", type=float, default=0.25, help="the pressure phase's share (0.25)")
    add("--interval", type=float, help="seconds between readings (3; --quick 1)")
    add("--seed", type=int, default=7)
    add("--json", type=Path, help="also write the figures here")
    add("--plot", type=Path, help="write the plot here as a PNG (needs the bench extra)")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if "--shared" in arguments:  # the shared daemon over rounds of windows
        from benchmarks import _shared_rounds

        return _shared_rounds.main(arguments)
    settings = _parser().parse_args(argv)
    try:
        report = asyncio.run(run(settings))
    except (ServerExited, OSError, TimeoutError) as exc:
        print(f"endurance run broke: {exc}", file=sys.stderr)
        return 2
    if settings.json:
        settings.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
