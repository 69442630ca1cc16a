"""What a team-budget decision costs a request: p50/p99 of ``TeamBudget.admit`` on a local
redis-server, against a plain PING through the same link in the same run (the floor any
Redis call pays: the event loop, redis-py, the socket), and the local decision Crucible falls
back to when Redis cannot be asked.

    python -m benchmarks.team_budget            # 5,000 decisions of each kind
    python -m benchmarks.team_budget --quick    # 300 of each (CI: proves it still works)

The decision is the one the pool makes before each attempt at a provider with team limits:
one EVALSHA of the budget script (calls and tokens per minute, the month's counter), every
limit set high enough that all are admitted and charged (the most writing a decision does).
Rounds alternate PING and decision so machine load falls on both alike. A Unix socket, as
the tests use; a team's Redis across a network adds its round trip to both.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.redis_server import MISSING_REASON, REDIS_SERVER, RedisServer

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.resilience.call_budget import CallCost
from crucible.runtime.samples import RecentSamples
from crucible.team.budget import TeamBudget
from crucible.team.redis_link import RedisLink, TeamRedis

_PROVIDER = ProviderSettings(
    name="hosted",
    kind=ProviderKind.OPENAI,
    base_url="https://api.example.com/v1",
    model="coder-1",
    team_calls_per_minute=1_000_000,
    team_tokens_per_minute=1_000_000_000,
    team_tokens_per_month=1_000_000_000_000,
)
_COST = CallCost(prompt_chars=6_000, max_tokens=128)


def _us(samples: list[float], q: float) -> float:
    window = RecentSamples(len(samples))
    for value in samples:
        window.add(value)
    return (window.percentile(q) or 0.0) * 1e6


async def _measure(server: RedisServer, count: int) -> dict[str, list[float]]:
    link = RedisLink(TeamRedis(server.url, "", "bench"), {})
    await link.warm()
    budget = TeamBudget([_PROVIDER], link, budget_s=1.0, notify=lambda message: None)
    await budget.prepare()
    local = TeamBudget([_PROVIDER], None, budget_s=1.0, notify=lambda message: None)
    clock = time.perf_counter
    found: dict[str, list[float]] = {"ping": [], "decision": [], "local": []}

    async def ping(client: Any) -> Any:
        return await client.ping()

    for _ in range(20):  # connections made, script cached, code paths warm
        await link.run(ping, budget_s=1.0, what="ping")
        await budget.admit("hosted", _COST, background=False)
    for _ in range(count):
        started = clock()
        await link.run(ping, budget_s=1.0, what="ping")
        found["ping"].append(clock() - started)
        started = clock()
        verdict = await budget.admit("hosted", _COST, background=False)
        found["decision"].append(clock() - started)
        assert verdict.allowed, verdict.reason
        started = clock()
        await local.admit("hosted", _COST, background=False)
        found["local"].append(clock() - started)
    assert budget.status("hosted")["state"] == "shared"
    await link.aclose()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 of each (CI)")
    parser.add_argument("--count", type=int, default=None)
    args = parser.parse_args()
    count = args.count or (300 if args.quick else 5_000)
    if REDIS_SERVER is None:
        print(f"skipped: {MISSING_REASON}")
        return 0
    directory = Path(tempfile.mkdtemp(prefix="crucible-bench-redis-"))
    server = RedisServer(directory)
    server.start()
    try:
        found = asyncio.run(_measure(server, count))
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    base = statistics.median(found["ping"])
    print(f"team budget decision cost, {count} of each (µs; ratio: p50 against PING's p50)")
    print(f"{'':28} {'p50':>8} {'p99':>8} {'ratio':>7}")
    rows = (
        ("PING through the link", "ping"),
        ("budget decision (Redis)", "decision"),
        ("local decision (no Redis)", "local"),
    )
    for label, name in rows:
        samples = found[name]
        ratio = statistics.median(samples) / base
        print(f"{label:28} {_us(samples, 0.5):8.1f} {_us(samples, 0.99):8.1f} {ratio:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
