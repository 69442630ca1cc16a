"""The metrics export's cost to completions: none configured, against exporting to a healthy
collector, to one refusing every export (503), and to one that never answers.

The real server (``python -m crucible --stdio``), the loopback fake provider (Ollama format,
``--latency-ms`` before its first byte) and a loopback OTLP/HTTP collector
(``tests/fakes/otlp_collector.py``), all in the same run. Each round starts one server per
mode, in turn, and asks ``--requests`` inline completions one after the other (after 3 not
counted: a cold server), each in a new document (the cache is off: every one is a provider
call), while the server exports every ``--interval`` seconds. Printed per mode: completions,
p50/p95 in ms and the p50's ratio to the mode without export, provider calls, and the exports
the collector accepted and failed (from ``crucible/status``). Then, in this process, what one
collection costs the server's event loop (``App.status()`` plus every instrument's callback)
as a ratio to ``App.status()`` alone.

Run from the repository root (needs the ``otel`` extra)::

    python -m benchmarks.metrics_export [--quick] [--rounds 3] [--requests 40]

The exit status is non-zero only when the run itself breaks; poor figures are figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.fakes.otlp_collector import OtlpCollector
from tests.fakes.provider import FakeProvider, Fault

from benchmarks._figures import percentile
from benchmarks._lsp_client import crucible_session, end_position

MODES = ("off", "exporting", "refusing", "stuck")
WARM_UP = 3


def options(fake: FakeProvider, endpoint: str | None, interval: float) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        "providers": [
            {"name": "fake", "kind": "ollama", "base_url": fake.base_url, "model": "bench"}
        ],
        "completion": {"debounce_ms": 0},
        "cache": {"enabled": False, "prefetch": "off"},
    }
    if endpoint is not None:
        chosen["telemetry"] = {"otlp_endpoint": endpoint, "export_interval_s": interval}
    return chosen


async def one_server(
    workdir: Path, fake: FakeProvider, endpoint: str | None, interval: float, requests: int
) -> tuple[list[float], dict[str, Any]]:
    times: list[float] = []
    async with crucible_session(workdir, options(fake, endpoint, interval)) as session:
        for i in range(-WARM_UP, requests):  # the first few (a cold server) are not counted
            text = f"def f{i}(a, b):\n    "
            uri = (workdir / "workspace" / f"m{i}.py").as_uri()
            session.open(uri, "python", text)
            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.wrap_future(session.inline_completion(uri, end_position(text))), 30
            )
            if i >= 0:
                times.append((time.perf_counter() - started) * 1000)
        status = await session.status() or {}
    return times, status


async def rounds(rounds: int, requests: int, interval: float, latency_ms: int) -> list[str]:
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    exports: dict[str, list[int]] = {mode: [0, 0] for mode in MODES}
    calls_before = 0
    calls: dict[str, int] = dict.fromkeys(MODES, 0)
    with (
        FakeProvider(model="bench", reply="return a + b") as fake,
        OtlpCollector() as healthy,
        OtlpCollector() as refusing,
        OtlpCollector() as stuck,
    ):
        fake.inject(Fault(latency_ms=latency_ms))
        refusing.status = 503
        stuck.delay_s = 3600.0
        endpoints = {
            "off": None,
            "exporting": healthy.endpoint,
            "refusing": refusing.endpoint,
            "stuck": stuck.endpoint,
        }
        for n in range(rounds):
            order = MODES if n % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                with tempfile.TemporaryDirectory(prefix="crucible-otel-") as scratch:
                    found, status = await one_server(
                        Path(scratch), fake, endpoints[mode], interval, requests
                    )
                times[mode] += found
                export = status.get("telemetry_export", {})
                exports[mode][0] += export.get("exported", 0)
                exports[mode][1] += export.get("failures", 0)
                total = len(fake.generation_requests())
                calls[mode] += total - calls_before
                calls_before = total
    base = percentile(times["off"], 50)
    lines = [
        f"{'export':<10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p50/off':>8} {'calls':>6}"
        f" {'exported':>9} {'failed':>7}"
    ]
    for mode in MODES:
        p50, p95 = percentile(times[mode], 50), percentile(times[mode], 95)
        lines.append(
            f"{mode:<10} {len(times[mode]):>5} {p50:>8.2f} {p95:>8.2f} {p50 / base:>8.3f}"
            f" {calls[mode]:>6} {exports[mode][0]:>9} {exports[mode][1]:>7}"
        )
    return lines


async def collection_cost(samples: int) -> str:
    """One collection on the loop, against the status it reads (same process, same App)."""
    from crucible.app import App
    from crucible.runtime.metrics_export import MetricsExport
    from crucible.runtime.otlp_target import OtlpTarget

    with tempfile.TemporaryDirectory(prefix="crucible-otel-") as scratch:
        os.environ["XDG_CACHE_HOME"] = os.environ["XDG_CONFIG_HOME"] = scratch
        app = App(env={})
        providers = [
            {"name": f"p{i}", "kind": "ollama", "base_url": "http://127.0.0.1:9"} for i in range(3)
        ]
        app.initialize(None, {"providers": providers})
        await app.start()
        target = OtlpTarget("http://127.0.0.1:9/v1/metrics", 60.0, None, "benchmark")
        export = MetricsExport(target, app.status, version="bench", instance_id="bench")
        status, collect = [], []
        for _ in range(samples):
            started = time.perf_counter()
            app.status()
            status.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            export.collect()
            collect.append((time.perf_counter() - started) * 1000)
        export.shutdown()
        await app.aclose()
    s, c = statistics.median(status), statistics.median(collect)
    return (
        f"one collection on the loop: p50 {c:.2f} ms, {c / s:.2f}x a crucible/status"
        f" ({s:.2f} ms), {samples} samples, 3 providers"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 5 requests (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.1, help="export interval, seconds")
    parser.add_argument("--latency-ms", type=int, default=20, help="provider first byte")
    args = parser.parse_args(argv)
    count, requests = (1, 5) if args.quick else (args.rounds, args.requests)
    print(
        f"metrics export: {count} rounds x {requests} completions per mode, provider latency"
        f" {args.latency_ms} ms, export every {args.interval:g} s"
    )
    for line in asyncio.run(rounds(count, requests, args.interval, args.latency_ms)):
        print(line)
    print(asyncio.run(collection_cost(50 if args.quick else 300)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
