"""The provider-fault run's figures: one record per request, aggregated per phase and system.

A request is *served* when its answer carries a suggestion; ``via`` says which provider wrote it
(the two fakes sign their replies). ``attempts`` are the provider calls made for it: the
server's ``upstream.calls`` delta for Crucible (a failover is two), one per request for the
naive client. ``primary`` is how many of them went to the primary. Times are milliseconds;
``sent_ms`` counts from the phase's first request. Percentiles are nearest-rank
(:func:`benchmarks._figures.percentile`); an unanswered request counts as infinitely slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks._figures import Target, percentile


@dataclass(frozen=True)
class Request:
    """One measured request of one phase against one system."""

    sent_ms: float
    latency_ms: float  # request sent -> answer read (math.inf: no answer at all)
    served: bool
    via: str  # "primary", "secondary" or "" (nothing shown)
    attempts: int
    primary: int
    error: str | None = None


@dataclass
class PhaseRun:
    """What one phase measured against one system (see the module docstring)."""

    phase: str
    system: str
    requests: list[Request]
    generations: dict[str, int]  # generation requests each fake received during the requests
    trips: int = 0  # times the primary's circuit opened during the requests (status ``trips``)
    open_ms: float | None = None  # first request sent -> status shows the primary's circuit open
    state_at_clear: str | None = None  # the primary's circuit when the fault was cleared
    half_open_ms: float | None = None  # fault cleared -> half_open (the health probe)
    closed_ms: float | None = None  # fault cleared -> closed again (None: it never opened)
    back_ms: float | None = None  # fault cleared -> an answer written by the primary again
    recovery: list[dict[str, Any]] = field(default_factory=list)  # requests sent meanwhile
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (ms, primary state)
    status: Any = None  # crucible/status at the end of the phase


@dataclass(frozen=True)
class Figures:
    requests: int
    served: int
    via_secondary: int
    p50_ms: float
    p99_ms: float
    served_p50_ms: float  # over answers with a suggestion only (math.inf: none)
    served_p99_ms: float
    calls_per_request: float
    generations_per_request: float
    primary: int
    primary_per_cooldown: int  # the most primary calls in any window of one cooldown
    trips: int
    open_ms: float | None
    closed_ms: float | None
    back_ms: float | None
    worst_overrun_ms: float  # the slowest answer minus the deadline (negative: within it)


def per_window(requests: Sequence[Request], window_ms: float) -> int:
    """The most primary calls made by requests sent within ``window_ms`` of each other (a call
    is dated by its request's send time: the pool calls the primary first, if at all)."""
    calls = sorted((r.sent_ms, r.primary) for r in requests if r.primary)
    best = 0
    for index, (start, _) in enumerate(calls):
        best = max(best, sum(n for at, n in calls[index:] if at < start + window_ms))
    return best


def within_threshold(figures: Figures, threshold: int) -> bool:
    """Whether the primary took no more than the breaker allows: ``threshold`` failing calls
    before its circuit opens, then one trial call per re-open (each failed trial is one more
    trip), and never more than ``threshold`` within one cooldown."""
    budget = threshold + max(0, figures.trips - 1)
    return figures.primary <= budget and figures.primary_per_cooldown <= threshold


def summarize(run: PhaseRun, *, cooldown_ms: float, deadline_ms: float) -> Figures:
    requests = run.requests
    count = len(requests)
    latencies = [r.latency_ms for r in requests]
    served = [r.latency_ms for r in requests if r.served]
    return Figures(
        requests=count,
        served=sum(r.served for r in requests),
        via_secondary=sum(r.via == "secondary" for r in requests),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        served_p50_ms=percentile(served, 50),
        served_p99_ms=percentile(served, 99),
        calls_per_request=sum(r.attempts for r in requests) / count if count else 0.0,
        generations_per_request=sum(run.generations.values()) / count if count else 0.0,
        primary=sum(r.primary for r in requests),
        primary_per_cooldown=per_window(requests, cooldown_ms),
        trips=run.trips,
        open_ms=run.open_ms,
        closed_ms=run.closed_ms,
        back_ms=run.back_ms,
        worst_overrun_ms=max(latencies, default=0.0) - deadline_ms,
    )


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "miss"
    return f"{value:.0f}"


def ratio(numerator: float, denominator: float) -> str:
    if math.isinf(numerator) or math.isinf(denominator) or denominator <= 0:
        return "n/a"
    value = numerator / denominator
    return f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"


_HEADER = (
    f"{'phase':<10} {'system':<8} {'served':>7} {'2nd':>3} {'p50':>6} {'p99':>6} {'p99/h':>6}"
    f" {'calls':>5} {'gens':>5} {'1st':>4} {'1st/cd':>6} {'trips':>5} {'open':>6} {'closed':>6}"
    f" {'back':>6} {'over':>6}"
)


def table(rows: Sequence[tuple[str, str, Figures]], healthy_p99: dict[str, float]) -> str:
    """One line per phase and system; the phase is named on its first line only.
    ``healthy_p99`` is each system's p99 in the healthy phase (the p99/h column)."""
    lines = [_HEADER, "-" * len(_HEADER)]
    previous = None
    for phase, system, f in rows:
        name = phase if phase != previous else ""
        previous = phase
        served = f"{f.served}/{f.requests}"
        over = "miss" if math.isinf(f.worst_overrun_ms) else f"{f.worst_overrun_ms:+.0f}"
        lines.append(
            f"{name:<10} {system:<8} {served:>7} {f.via_secondary:>3} {ms(f.p50_ms):>6}"
            f" {ms(f.p99_ms):>6} {ratio(f.p99_ms, healthy_p99.get(system, math.inf)):>6}"
            f" {f.calls_per_request:>5.2f} {f.generations_per_request:>5.2f} {f.primary:>4}"
            f" {f.primary_per_cooldown:>6} {f.trips:>5} {ms(f.open_ms):>6} {ms(f.closed_ms):>6}"
            f" {ms(f.back_ms):>6} {over:>6}"
        )
    return "\n".join(lines)


def targets(
    figures: dict[tuple[str, str], Figures],
    *,
    system: str,
    healthy: str,
    down: str,
    faults: Sequence[str],
    threshold: int,
    cooldown_ms: float,
    slack_ms: float = 100.0,
) -> list[Target]:
    """The issue's targets for ``system``, judged from its figures (printed, never asserted)."""
    dead, base = figures[down, system], figures[healthy, system]
    load = [(phase, figures[phase, system]) for phase in faults]
    over = [phase for phase, f in load if not within_threshold(f, threshold)]
    mine = [phase for phase, name in figures if name == system]
    worst_phase = max(mine, key=lambda phase: figures[phase, system].worst_overrun_ms)
    worst = figures[worst_phase, system].worst_overrun_ms
    limit = 1.5 * base.p99_ms
    return [
        Target(
            f"{system}: primary hard down, every completion still served",
            dead.served == dead.requests,
            f"{dead.served}/{dead.requests} served, {dead.via_secondary} by the secondary",
        ),
        Target(
            f"{system}: primary sees <= {threshold} requests (the breaker threshold) per"
            f" cooldown, every fault phase: {threshold} failures, then one trial per re-open"
            f" (calls <= {threshold} + trips - 1), and <= {threshold} in any {cooldown_ms:g} ms",
            not over,
            "calls/trips/most in a cooldown: "
            + ", ".join(
                f"{phase} {f.primary}/{f.trips}/{f.primary_per_cooldown}" for phase, f in load
            )
            + (f"; over in {', '.join(over)}" if over else ""),
        ),
        Target(
            f"{system}: p99 with the primary hard down <= 1.5x the healthy p99",
            dead.p99_ms <= limit,
            f"{ms(dead.p99_ms)} ms vs healthy {ms(base.p99_ms)} ms"
            f" ({ratio(dead.p99_ms, base.p99_ms)}; limit {ms(limit)} ms)",
        ),
        Target(
            f"{system}: no request outlives its deadline by more than {slack_ms:g} ms",
            worst <= slack_ms,
            "worst "
            + ("no answer" if math.isinf(worst) else f"{worst:+.0f} ms")
            + f" past the deadline (in {worst_phase})",
        ),
    ]


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def figures_json(figures: Figures) -> dict[str, Any]:
    data = asdict(figures)
    for key in ("p50_ms", "p99_ms", "served_p50_ms", "served_p99_ms", "worst_overrun_ms"):
        data[key] = _finite(data[key])
    return data


def run_json(run: PhaseRun) -> dict[str, Any]:
    data = asdict(run)
    data["requests"] = [{**asdict(r), "latency_ms": _finite(r.latency_ms)} for r in run.requests]
    return data
