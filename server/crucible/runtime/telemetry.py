"""Telemetry: counters and latency samples for ``crucible/status``. Records, never decides.

Latencies are kept as a bounded window of recent samples per series (not an unbounded list),
so a day-long session costs the same memory as a minute-long one, and percentiles describe
recent behaviour, which is what a user looking at a slow editor wants to know.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from crucible.runtime.samples import RecentSamples

_WINDOW = 512  # recent samples kept per latency series
OUTCOMES = ("served", "empty", "superseded", "cancelled", "error", "timeout")
MARKS = ("coalesced", "reused", "batched", "cache_hit", "type_through", "prefetched")


def percentiles(samples: RecentSamples, points: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """The samples' percentiles (``runtime/samples.py``), rounded to 0.1 ms; empty when none."""
    found = {f"p{p}": samples.percentile(p / 100) for p in points}
    return {name: round(value, 1) for name, value in found.items() if value is not None}


class Telemetry:
    """Counters by outcome and per-stage timings. Provider calls are the provider pool's to
    count (``resilience/member.py``): it sees every attempt, failovers included."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._requests: Counter[str] = Counter()
        self._marks: Counter[str] = Counter()
        self._stages: dict[str, RecentSamples] = {}

    def uptime_s(self) -> float:
        return self._clock() - self._started

    def request(self, outcome: str) -> None:
        """Count one answered request by how it ended (served, empty, cancelled, …)."""
        self._requests[outcome] += 1

    def requests_total(self) -> int:
        """Requests answered so far: the memory supervisor's measure of activity."""
        return self._requests.total()

    def mark(self, name: str, count: int = 1) -> None:
        """Count how requests were served (coalesced, reused, batched, cache_hit,
        type_through) or what was done for them (prefetched); not an outcome."""
        self._marks[name] += count

    def stage(self, name: str, ms: float) -> None:
        """One timing sample for a stage of the completion path (debounce, first_byte, total…)."""
        series = self._stages.get(name)
        if series is None:
            series = self._stages[name] = RecentSamples(_WINDOW)
        series.add(ms)

    def memory_bytes(self) -> int:
        """The bytes held (O(series), a few dozen at most): each latency series
        (``RecentSamples.memory_bytes``, at most ~20 KB with ``_WINDOW`` samples), its name and
        dict slot, and the counters' dicts (their names are the code's literals, shared)."""
        held = sys.getsizeof(self._stages) + sys.getsizeof(self._requests)
        held += sys.getsizeof(self._marks)
        for name, series in self._stages.items():
            held += sys.getsizeof(name) + series.memory_bytes()
        return held

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime_s": round(self.uptime_s(), 3),
            # Outcomes add up to total; the marks after them say how some were served.
            "requests": {
                "total": sum(self._requests.values()),
                **{name: 0 for name in OUTCOMES},
                **self._requests,
                **{name: 0 for name in MARKS},
                **self._marks,
            },
            "stages_ms": {name: percentiles(series) for name, series in self._stages.items()},
        }
