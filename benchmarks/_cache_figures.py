"""The cache replay's figures: one record per request, aggregated per scenario and system.

A request's *service* says how it was answered, from the server's own counters
(``crucible/status``) read after each answer: ``type-through``, ``l1`` or ``l2`` (the cache by
key, at that level), ``joined`` (an identical or reusable stream already running, a prefetch
say), ``provider`` (a new provider call), ``none`` (answered empty without either).
A prefetch the server starts after answering is counted apart (``prefetch_calls``): it is
background work for the next request. With prefetch on, the level of a hit is read from the
counters, which a background prefetch's own lookup may move in the same moment: a hit then
counts as ``l2`` if any L2 hit happened meanwhile.
Percentiles are nearest-rank (:func:`benchmarks._figures.percentile`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks._cache_scenarios import CACHED_KINDS
from benchmarks._figures import Target, percentile

HIT_SERVICES = ("type-through", "l1", "l2")


@dataclass(frozen=True)
class Record:
    """One request of one scenario against one system."""

    scenario: str
    system: str
    kind: str  # a step kind of benchmarks._cache_scenarios
    note: str
    latency_ms: float  # request sent -> answer read (math.inf: no answer in time)
    floor_ms: float  # the same for an empty answer (a document never opened), right after
    calls: int  # generation requests the provider received from this step to the next one
    prefetch_calls: int  # of those, prefetches the server started in the background
    service: str  # see the module docstring
    shown: bool  # a non-empty suggestion came back
    wrong: bool  # it does not fit the target (the model's text at the cursor)
    error: str | None = None


@dataclass(frozen=True)
class Figures:
    requests: int
    calls: int
    prefetch_calls: int
    p50_ms: float
    p95_ms: float
    type_through: int
    l1: int
    l2: int
    joined: int
    shown: int
    wrong: int
    errors: int

    @property
    def hits(self) -> int:
        return self.type_through + self.l1 + self.l2

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


def summarize(records: Sequence[Record]) -> Figures:
    latencies = [r.latency_ms for r in records]
    return Figures(
        requests=len(records),
        calls=sum(r.calls for r in records),
        prefetch_calls=sum(r.prefetch_calls for r in records),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        type_through=sum(r.service == "type-through" for r in records),
        l1=sum(r.service == "l1" for r in records),
        l2=sum(r.service == "l2" for r in records),
        joined=sum(r.service == "joined" for r in records),
        shown=sum(r.shown for r in records),
        wrong=sum(r.wrong for r in records),
        errors=sum(r.error is not None for r in records),
    )


def ms(value: float) -> str:
    if math.isinf(value):
        return "n/a"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def ratio(numerator: float, denominator: float) -> str:
    if denominator == 0 and numerator > 0 and not math.isinf(numerator):
        return "inf"  # all of it saved
    if math.isinf(numerator) or math.isinf(denominator) or denominator == 0:
        return "n/a"
    value = numerator / denominator
    return f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"


_HEADER = (
    f"{'scenario':<16} {'system':<15} {'reqs':>4} {'calls':>5} {'pref':>4} {'p50 ms':>7} "
    f"{'p95 ms':>7} "
    f"{'tt':>3} {'l1':>3} {'l2':>3} {'join':>4} {'hit%':>5} {'shown':>5} {'wrong':>5}"
)


def table(rows: Sequence[tuple[str, str, Figures]]) -> str:
    """One line per scenario and system; the scenario is named on its first line only."""
    lines = [_HEADER, "-" * len(_HEADER)]
    previous = None
    for scenario, system, f in rows:
        name = scenario if scenario != previous else ""
        previous = scenario
        lines.append(
            f"{name:<16} {system:<15} {f.requests:>4} {f.calls:>5} {f.prefetch_calls:>4} "
            f"{ms(f.p50_ms):>7} {ms(f.p95_ms):>7} {f.type_through:>3} {f.l1:>3} {f.l2:>3} "
            f"{f.joined:>4} {f.hit_rate:>5.0%} {f.shown:>5} {f.wrong:>5}"
        )
    return "\n".join(lines)


def targets(
    records: Sequence[Record], system: str, *, context: str = "", hit_budget_ms: float = 3.0
) -> list[Target]:
    """The issue's targets for one cache system, judged from its records (never asserted);
    ``context`` is added to the round-trip figure (what an empty answer costs, say)."""
    mine = [r for r in records if r.system == system]
    found = []
    for kind, label in CACHED_KINDS.items():
        steps = [r for r in mine if r.kind == kind]
        if not steps:
            continue
        # The requests' own calls; a prefetch the server starts afterwards is background
        # work for the next request, and shown beside them.
        own = sum(r.calls - r.prefetch_calls for r in steps)
        background = sum(r.prefetch_calls for r in steps)
        cached = sum(r.service in HIT_SERVICES for r in steps)
        by_service = ", ".join(
            f"{s} {n}" for s in HIT_SERVICES if (n := sum(r.service == s for r in steps))
        )
        found.append(
            Target(
                f"{system}: {label} served with zero provider calls",
                own == 0 and cached == len(steps),
                f"{len(steps)} requests, {own} calls, {cached} from cache"
                + (f" ({by_service})" if by_service else "")
                + (f"; {background} background prefetch calls" if background else ""),
            )
        )
    hit_records = [r for r in mine if r.service in HIT_SERVICES]
    hits = [r.latency_ms for r in hit_records]
    if hits:
        p50 = percentile(hits, 50)
        floor = percentile([r.floor_ms for r in hit_records], 50)
        excess = percentile([r.latency_ms - r.floor_ms for r in hit_records], 50)
        per_level = {
            s: percentile(xs, 50)
            for s in HIT_SERVICES
            if (xs := [r.latency_ms for r in mine if r.service == s])
        }
        levels = ", ".join(f"{s} {ms(v)}" for s, v in per_level.items())
        found.append(
            Target(
                f"{system}: cache-hit LSP round trip p50 < {hit_budget_ms:g} ms, every level",
                max(p50, *per_level.values()) < hit_budget_ms,
                f"p50 {ms(p50)} ms over {len(hits)} hits; per level {levels} ms; the floor"
                f" beside them p50 {ms(floor)} ms, excess p50 {excess:+.1f} ms{context}",
            )
        )
    return found
