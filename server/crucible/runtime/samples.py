"""Samples: the one rolling window of recent measurements, and the one percentile definition.

Every "p50/p95 of the recent calls" in Crucible is read here: the debounce's typing rhythm and
provider latency (``scheduling/debounce.py``), each provider's latencies in the pool
(``resilience/pool.py``), and the per-stage timings of ``crucible/status``
(``runtime/telemetry.py``). One definition, so the p95 a status page shows is the p95 the pool
hedged on.

The percentile is the nearest rank: the smallest sample with at least ``q`` of the samples at
or below it (Hyndman & Fan's type 1; numpy's ``inverted_cdf``). It is always a value that was
measured, never one interpolated between two calls, and for the small windows kept here
(tens of samples) it is what a person counting the sorted samples would say.

:class:`RecentSamples` keeps the last ``size`` samples both in arrival order (to know which one
leaves) and sorted (to read any percentile without sorting): adding costs one bisect and a shift
of at most ``size`` slots. Memory is bounded by ``size`` whatever the number of samples added.

Raises ``ValueError`` only for a nonsensical ``q`` or ``size``; an empty window has no
percentile (``None``), never an exception.
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ``ordered`` (sorted ascending); None if
    there are no samples."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"a quantile is in (0, 1], not {q!r}")
    if not ordered:
        return None
    # round() first: 0.07 * 100 is 7.000000000000001 in binary, and its rank must be 7, not 8.
    rank = max(1, math.ceil(round(q * len(ordered), 9)))
    return ordered[rank - 1]


class RecentSamples:
    """The last ``size`` samples and their percentiles. Not thread-safe; lives on the loop."""

    __slots__ = ("_order", "_sorted")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a window holds at least one sample, not {size!r}")
        self._order: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: float) -> None:
        if len(self._order) == self._order.maxlen:
            del self._sorted[bisect_left(self._sorted, self._order[0])]
        self._order.append(value)
        insort(self._sorted, value)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q``-quantile of the samples held; None when there are none."""
        return percentile(self._sorted, q)

    def memory_bytes(self) -> int:
        """The bytes held (O(1)): this object, the deque (its 64-slot blocks), the sorted list
        (its allocated slots) and one float per sample: the deque and the list share each
        sample's float (24 bytes), so it is counted once. At most ~40 bytes a sample."""
        containers = sys.getsizeof(self) + sys.getsizeof(self._order) + sys.getsizeof(self._sorted)
        return containers + _FLOAT * len(self._order)


_FLOAT = sys.getsizeof(0.0)  # 24 bytes on CPython 3.11 (64-bit)
