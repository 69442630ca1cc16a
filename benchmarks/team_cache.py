"""Team cache: what L3 (the team's Redis) saves a team of Crucibles, with it and without it in
one run.

A team of N developers (N Crucible processes, each with its own L1/L2 directories) writes the
same files: each process opens the same documents and types them line by line, asking for a
suggestion after each line and waiting for it, as an editor would, then pausing
(``--pause-ms``, default 200) before the next line. Developers start one after another
(``--stagger-s`` apart, default 1 s), so later ones type what earlier ones already asked
about (with no pause, a later developer served from L3 catches up with the first, and both
then ask the provider for the same lines: there is no single-flight across processes). The
provider is the loopback fake (Ollama wire format) with a first-token latency of
``--latency-ms`` (default 150 ms, a hosted model's), playing a model that knows the files
(``_cache_scenarios.TargetModel``). Two systems per team size, the same typing:

- **without L3**: each Crucible with its own L1 and L2 (the baseline);
- **with L3**: the same, plus ``[cache] shared_url`` on one real redis-server (Debian's
  package, started here on a Unix socket, flushed before each team).

Printed per team size and system: provider calls in all and per process (min-max), time from
request to suggestion (p50, p90, mean) over every request, and the ratios with L3 against
without. Most requests are answered on the machine either way (the model's suggestion covers
the next lines, which are then typed through), so the p50 is a local hit's; the p90 and the
mean carry the provider's waits that L3 saves.
Then the cost of an L3 lookup: as the servers saw it (``crucible/status``
``cache.levels.l3.latency_ms``: the median of the processes' p50s, the largest p99), and
measured directly here, ``TeamCache.get`` for a hit and a miss (p50, p99).

Run from the repository root::

    python -m benchmarks.team_cache [--quick] [--sizes 2,5,10] [--latency-ms 150]

The exit status is non-zero only when the run itself breaks (a server crashes, no
redis-server); poor figures are figures.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.provider import FakeProvider, Fault
from tests.redis_server import MISSING_REASON, REDIS_SERVER, RedisServer

from benchmarks import _cache_scenarios as sc
from benchmarks._figures import percentile
from benchmarks._lsp_client import CrucibleSession, crucible_session, end_position
from benchmarks._snippets import GO, PYTHON, TYPESCRIPT, Snippet

MODEL = "qwen2.5-coder:1.5b-base"
ANSWER_TIMEOUT_S = 10.0
SYSTEMS = ("without L3", "with L3")


@dataclass
class Outcome:
    """One team size and system: what the provider and the developers saw."""

    size: int
    system: str
    calls: int = 0
    per_process: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    empty: int = 0  # requests answered with no suggestion, or not before the timeout
    l3_p50_ms: list[float] = field(default_factory=list)
    l3_p99_ms: list[float] = field(default_factory=list)
    l3_hits: int = 0
    l3_timeouts: int = 0  # lookups past the budget (the provider was asked instead)
    l3_not_up: int = 0  # processes whose L3 was not up at the end (the breaker opened)


def _documents(quick: bool) -> list[tuple[sc.Document, list[str]]]:
    """The files the team writes, each as its lines (typed one by one)."""
    snippets: tuple[Snippet, ...] = (PYTHON,) if quick else (PYTHON, TYPESCRIPT, GO)
    found = []
    for snippet in snippets:
        document = sc.document("team", snippet)
        lines = document.target.splitlines(keepends=True)
        found.append((document, lines[:8] if quick else lines))
    return found


def _options(fake: FakeProvider, redis: RedisServer | None) -> dict[str, Any]:
    provider = {"name": "team-model", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
    cache: dict[str, Any] = {"prefetch": "off"}
    if redis is not None:
        cache |= {"shared_url": redis.url, "shared_namespace": "bench"}
    completion = {"debounce_mode": "fixed", "debounce_ms": 0}
    return {"providers": [provider], "completion": completion, "cache": cache}


async def _until_l3_up(session: CrucibleSession) -> None:
    for _ in range(500):
        status = await session.status()
        if status is not None and status["cache"]["levels"]["l3"].get("state") == "up":
            return
        await asyncio.sleep(0.02)
    raise RuntimeError("L3 never came up in a server")


async def _warm_up(session: CrucibleSession, n: int) -> None:
    uri, text = f"file:///bench/warm-up-{n}.py", f"# warm-up {n}\ndef f():\n    "
    session.open(uri, "python", text)
    await asyncio.wait_for(
        asyncio.wrap_future(session.inline_completion(uri, end_position(text))), ANSWER_TIMEOUT_S
    )
    session.close(uri)


async def _developer(
    session: CrucibleSession,
    documents: list[tuple[sc.Document, list[str]]],
    start_after_s: float,
    pause_s: float,
    outcome: Outcome,
) -> None:
    """Open every document with its first line, then type it line by line, asking after each."""
    await asyncio.sleep(start_after_s)
    for document, lines in documents:
        text, version = lines[0], 1
        session.open(document.uri, document.language_id, text)
        for line in lines[1:]:
            version += 1
            session.insert(document.uri, version, end_position(text), line)
            text += line
            sent = time.perf_counter()
            pending = asyncio.wrap_future(
                session.inline_completion(document.uri, end_position(text))
            )
            try:
                answer = await asyncio.wait_for(pending, ANSWER_TIMEOUT_S)
            except TimeoutError:
                outcome.empty += 1
                continue
            outcome.latencies_ms.append((time.perf_counter() - sent) * 1000)
            if answer is None or not getattr(answer, "items", None):
                outcome.empty += 1
            await asyncio.sleep(pause_s)  # reading the suggestion, typing the next line
        session.close(document.uri)


async def _team(
    root: Path,
    fake: FakeProvider,
    redis: RedisServer | None,
    size: int,
    system: str,
    settings: argparse.Namespace,
) -> Outcome:
    outcome = Outcome(size, system)
    documents = _documents(settings.quick)
    before = len(fake.generation_requests())
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                crucible_session(
                    root / f"{system.replace(' ', '-')}-{size}-{n}", _options(fake, redis)
                )
            )
            for n in range(size)
        ]
        if redis is not None:
            await asyncio.gather(*(_until_l3_up(s) for s in sessions))
        # One request each on a document of its own first: a process's first answer pays for
        # imports and connections, in both systems alike; not counted.
        await asyncio.gather(*(_warm_up(s, n) for n, s in enumerate(sessions)))
        before = len(fake.generation_requests())
        await asyncio.gather(
            *(
                _developer(s, documents, n * settings.stagger_s, settings.pause_ms / 1000, outcome)
                for n, s in enumerate(sessions)
            )
        )
        for session in sessions:
            status = await session.status() or {}
            calls = int(status.get("upstream", {}).get("calls", 0))
            outcome.per_process.append(calls - 1)  # the warm-up's call
            l3 = status.get("cache", {}).get("levels", {}).get("l3", {})
            latency = l3.get("latency_ms") or {}
            if latency.get("p50") is not None:
                outcome.l3_p50_ms.append(float(latency["p50"]))
                outcome.l3_p99_ms.append(float(latency["p99"]))
            outcome.l3_hits += int(l3.get("hits", 0))
            outcome.l3_timeouts += int(l3.get("timeouts", 0))
            outcome.l3_not_up += int(redis is not None and l3.get("state") != "up")
    outcome.calls = len(fake.generation_requests()) - before
    return outcome


async def _direct_lookup_cost(redis: RedisServer, count: int) -> dict[str, tuple[float, float]]:
    """``TeamCache.get`` timed here, for a hit and a miss: (p50, p99) in ms."""
    from crucible.cache.team import TeamCache
    from crucible.completion.suggestion import Suggestion
    from crucible.team.redis_link import RedisLink, TeamRedis

    link = RedisLink(TeamRedis(redis.url, "", "bench-direct"), {})
    await link.warm()
    team = TeamCache(link, timeout_s=0.05, ttl_s=3600, max_bytes=64 << 20)
    team.put("a" * 32, Suggestion("return total / len(values)"))
    await team.flush()
    found: dict[str, tuple[float, float]] = {}
    for name, key in (("hit", "a" * 32), ("miss", "b" * 32)):
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            await team.get(key)
            samples.append((time.perf_counter() - started) * 1000)
        found[name] = (percentile(samples, 50), percentile(samples, 99))
    await team.aclose()
    await link.aclose()
    return found


async def run(settings: argparse.Namespace) -> tuple[list[Outcome], dict[str, tuple[float, float]]]:
    model = sc.TargetModel()
    for document, _ in _documents(quick=False):
        model.register(document.target)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="crucible-team-") as scratch:
        root = Path(scratch)
        redis_dir = Path(tempfile.mkdtemp(prefix="crucible-redis-"))  # a short socket path
        redis = RedisServer(redis_dir)
        redis.start()
        try:
            with FakeProvider(model=MODEL, reply=model, chunk_size=8) as fake:
                fake.inject(Fault(latency_ms=settings.latency_ms))
                for size in settings.sizes:
                    for system in SYSTEMS:
                        redis.command("FLUSHALL")
                        shared = redis if system == "with L3" else None
                        outcomes.append(await _team(root, fake, shared, size, system, settings))
            direct = await _direct_lookup_cost(redis, 200 if settings.quick else 2000)
        finally:
            redis.stop()
            shutil.rmtree(redis_dir, ignore_errors=True)
    return outcomes, direct


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def report(outcomes: list[Outcome], direct: dict[str, tuple[float, float]], latency: int) -> str:
    lines = [
        f"Team cache: same typing per developer, provider first token {latency} ms",
        "",
        "team  system       calls  per process  p50 ms  p90 ms  mean ms   empty"
        "  calls ratio  p90 ratio  mean ratio",
    ]
    base: dict[int, Outcome] = {o.size: o for o in outcomes if o.system == "without L3"}
    for o in outcomes:
        p50 = percentile(o.latencies_ms, 50) if o.latencies_ms else float("nan")
        p90 = percentile(o.latencies_ms, 90) if o.latencies_ms else float("nan")
        mean = statistics.fmean(o.latencies_ms) if o.latencies_ms else float("nan")
        spread = f"{min(o.per_process)}-{max(o.per_process)}" if o.per_process else "-"
        b = base.get(o.size)
        ratios = ""
        if b is not None and o is not b and b.latencies_ms:
            ratios = (
                f"{_ratio(o.calls, b.calls):>13}"
                f"{_ratio(p90, percentile(b.latencies_ms, 90)):>11}"
                f"{_ratio(mean, statistics.fmean(b.latencies_ms)):>12}"
            )
        lines.append(
            f"{o.size:>4}  {o.system:<11} {o.calls:>6}  {spread:>11}  {p50:>6.1f}  {p90:>6.1f}"
            f"  {mean:>7.1f}  {o.empty:>6}{ratios}"
        )
    with_l3 = [o for o in outcomes if o.system == "with L3"]
    p50s = [v for o in with_l3 for v in o.l3_p50_ms]
    p99s = [v for o in with_l3 for v in o.l3_p99_ms]
    lines.append("")
    if p50s:
        lines.append(
            f"L3 lookup as the servers saw it (crucible/status): p50 {statistics.median(p50s):.2f}"
            f" ms (median of the processes' p50s), p99 {max(p99s):.2f} ms (largest)"
        )
    for name, (p50, p99) in direct.items():
        lines.append(f"L3 lookup measured directly, {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    lines.append(
        f"L3 hits in all: {sum(o.l3_hits for o in with_l3)}; lookups past the budget:"
        f" {sum(o.l3_timeouts for o in with_l3)}; processes with L3 not up at the end:"
        f" {sum(o.l3_not_up for o in with_l3)}"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a team of 2, one short file")
    parser.add_argument("--sizes", default=None, help="team sizes, comma-separated (2,5,10)")
    parser.add_argument("--latency-ms", type=int, default=150, help="provider first token")
    parser.add_argument("--stagger-s", type=float, default=1.0, help="between developers")
    parser.add_argument("--pause-ms", type=int, default=200, help="after each answer")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    if REDIS_SERVER is None:
        print(MISSING_REASON, file=sys.stderr)
        return 1
    sizes = settings.sizes or ("2" if settings.quick else "2,5,10")
    settings.sizes = [int(n) for n in sizes.split(",")]
    if settings.quick:
        settings.stagger_s = min(settings.stagger_s, 0.5)
    outcomes, direct = asyncio.run(run(settings))
    print(report(outcomes, direct, settings.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
