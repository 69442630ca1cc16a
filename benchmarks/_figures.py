"""The typing replay's figures: one sample per burst run, aggregated per burst, printed as a table.

Crucible is compared with two baselines measured in the same run (:data:`BASELINES`): the good
client (a plugin talking straight to the provider with a fixed debounce and cancel-previous: the
fair comparison, what a user could run instead) and the naive client (no debounce, no
cancellation: the worst case a provider can be given). Every ratio says which one it is against.

Percentiles are nearest-rank over the samples, with a *miss* (no fitting suggestion before the
deadline) counted as infinitely slow rather than left out: leaving misses out would make a server
that answers less often look faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

SYSTEMS = ("crucible", "good-client", "naive")
BASELINES = SYSTEMS[1:]  # what Crucible is compared with, the fair one first


@dataclass(frozen=True)
class Sample:
    """One run of one burst against one system."""

    sent: int  # requests for a suggestion (one per keystroke) the client did not withdraw itself
    answered: int  # of those, answered (result, empty result or error) before the deadline
    errors: int  # answers that were errors (a crash or RequestCancelled, say)
    latency_ms: float | None  # last keystroke -> first fitting suggestion; None: a miss
    own_ms: float | None  # last keystroke -> the last request's own answer, if it fits
    calls: int  # generation requests the provider received
    abandoned: int  # of those, closed by the client before the answer ended
    max_concurrent: int  # most generation requests the provider served at once
    stale: int = 0  # suggestions that arrived not fitting the text on screen by then
    withdrawn: int = 0  # requests the client cancelled itself (the good client's cancel-previous)
    # Last keystroke -> the first provider call received after it (None: no call after it, the
    # answer came from one started before); and the calls received before the last keystroke.
    start_ms: float | None = None
    before_last: int = 0


@dataclass(frozen=True)
class Figures:
    """A burst's samples (or all of them) for one system."""

    samples: int
    calls_mean: float
    calls_max: int
    sent: int
    answered: int
    errors: int
    misses: int
    p50_ms: float  # math.inf when the percentile falls on a miss
    p95_ms: float
    own_p50_ms: float  # p50 of Sample.own_ms, misses as math.inf
    stale: int  # Sample.stale, summed
    withdrawn: int


def percentile(values: Sequence[float], point: int) -> float:
    """Nearest-rank percentile; ``math.inf`` for an empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return math.inf
    rank = max(1, math.ceil(point * len(ordered) / 100))
    return ordered[rank - 1]


def summarize(samples: Sequence[Sample]) -> Figures:
    latencies = [_or_inf(s.latency_ms) for s in samples]
    calls = [s.calls for s in samples]
    return Figures(
        samples=len(samples),
        calls_mean=sum(calls) / len(calls) if calls else 0.0,
        calls_max=max(calls, default=0),
        sent=sum(s.sent for s in samples),
        answered=sum(s.answered for s in samples),
        errors=sum(s.errors for s in samples),
        misses=sum(s.latency_ms is None for s in samples),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        own_p50_ms=percentile([_or_inf(s.own_ms) for s in samples], 50),
        stale=sum(s.stale for s in samples),
        withdrawn=sum(s.withdrawn for s in samples),
    )


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _ms(value: float) -> str:
    return "miss" if math.isinf(value) else f"{value:.0f}"


def _cells(figures: Figures) -> str:
    answered = f"{figures.answered}/{figures.sent}"
    return (
        f"{figures.calls_mean:6.1f} {figures.calls_max:4d} {answered:>9} "
        f"{_ms(figures.p50_ms):>6} {_ms(figures.p95_ms):>6} {figures.misses:4d} "
        f"{_ms(figures.own_p50_ms):>6} {figures.stale:5d}"
    )


def table(rows: Sequence[tuple[str, dict[str, Figures]]]) -> str:
    """One line per burst and system: calls (mean, max), answered/sent, p50, p95, misses, the
    p50 of the last request's own answer, and stale suggestions."""
    width = max(len(name) for name, _ in rows)
    system_width = max(len(system) for system in SYSTEMS)
    head = "calls  max  answered    p50    p95 miss   last stale"
    lines = [f"{'burst':{width}}  {'system':{system_width}}  {head}"]
    lines.append("-" * len(lines[0]))
    for name, by_system in rows:
        for index, system in enumerate(SYSTEMS):
            label = name if index == 0 else ""
            lines.append(f"{label:{width}}  {system:{system_width}}  {_cells(by_system[system])}")
    return "\n".join(lines)


def _ratio(numerator: float, denominator: float) -> str:
    if math.isinf(numerator) or math.isinf(denominator) or denominator == 0:
        return "n/a"
    ratio = numerator / denominator
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"  # 0.04x, not 0.0x


def summary(total: dict[str, Figures]) -> list[str]:
    """Crucible against each baseline in turn, the ratio named by who it is against."""
    crucible = total["crucible"]
    lines = []
    for name in BASELINES:
        base = total[name]
        lines += [
            f"crucible vs {name}:",
            f"  upstream calls per burst: crucible {crucible.calls_mean:.1f}, {name} "
            f"{base.calls_mean:.1f} -> {name}/crucible "
            f"{_ratio(base.calls_mean, crucible.calls_mean)}",
            f"  last keystroke -> fitting suggestion p50: crucible {_ms(crucible.p50_ms)} ms, "
            f"{name} {_ms(base.p50_ms)} ms -> {name}/crucible "
            f"{_ratio(base.p50_ms, crucible.p50_ms)}",
            f"  p95: crucible {_ms(crucible.p95_ms)} ms, {name} {_ms(base.p95_ms)} ms -> "
            f"{name}/crucible {_ratio(base.p95_ms, crucible.p95_ms)}",
            f"  last keystroke -> its own request's answer p50: crucible "
            f"{_ms(crucible.own_p50_ms)} ms, {name} {_ms(base.own_p50_ms)} ms -> {name}/crucible "
            f"{_ratio(base.own_p50_ms, crucible.own_p50_ms)}",
            f"  stale suggestions (arrived not fitting the text on screen): crucible "
            f"{crucible.stale}, {name} {base.stale}",
        ]
    return lines


@dataclass(frozen=True)
class Target:
    description: str
    passed: bool
    figure: str


def targets(
    total: Figures,
    yardstick: Figures | None,
    per_burst: Sequence[Figures],
    *,
    budget_ms: float,
    budget_text: str,
) -> list[Target]:
    """The issue's targets for Crucible, judged from the figures (printed, never asserted).
    The latency target holds for every burst's p50, not only for all bursts pooled."""
    found = [
        Target(
            "every request answered",
            total.answered == total.sent and total.errors == 0,
            f"{total.answered}/{total.sent} answered, {total.errors} errors",
        )
    ]
    if yardstick is not None:
        found.append(
            Target(
                "40 keys @ 30 ms costs <= 2 upstream calls",
                yardstick.calls_max <= 2,
                f"max {yardstick.calls_max}, mean {yardstick.calls_mean:.1f}",
            )
        )
    worst = max((figures.p50_ms for figures in per_burst), default=total.p50_ms)
    found.append(
        Target(
            f"p50 last keystroke -> fitting suggestion <= {budget_text}, every burst",
            max(worst, total.p50_ms) <= budget_ms,
            f"p50 {_ms(total.p50_ms)} ms pooled, {_ms(worst)} ms in the slowest burst",
        )
    )
    return found


def target_lines(found: Sequence[Target]) -> list[str]:
    return [f"  [{'PASS' if t.passed else 'FAIL'}] {t.description}: {t.figure}" for t in found]


def as_json(figures: Figures) -> dict[str, Any]:
    """Figures as JSON-safe values (a miss percentile becomes null)."""
    data = asdict(figures)
    for key in ("p50_ms", "p95_ms", "own_p50_ms"):
        if math.isinf(data[key]):
            data[key] = None
    return data
