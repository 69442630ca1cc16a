"""The one percentile definition (nearest rank) and the one rolling window of recent samples."""

from __future__ import annotations

import random

import pytest

from crucible.runtime.samples import RecentSamples, percentile


def test_the_percentile_is_the_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 21)]  # 1..20
    assert percentile(ordered, 0.5) == 10.0  # 10 of 20 at or below it
    assert percentile(ordered, 0.95) == 19.0
    assert percentile(ordered, 0.99) == 20.0
    assert percentile(ordered, 1.0) == 20.0
    assert percentile(ordered, 0.01) == 1.0
    assert percentile([7.0], 0.5) == 7.0


def test_the_percentile_is_always_a_measured_value() -> None:
    assert percentile([1.0, 100.0], 0.5) == 1.0  # never 50.5, a call nobody made
    assert percentile([1.0, 100.0], 0.51) == 100.0


def test_binary_rounding_does_not_move_the_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert percentile(ordered, 0.07) == 7.0  # 0.07 * 100 is 7.000000000000001 in binary


def test_an_empty_window_has_no_percentile_and_nonsense_is_refused() -> None:
    assert percentile([], 0.5) is None
    assert RecentSamples(4).percentile(0.95) is None
    with pytest.raises(ValueError):
        percentile([1.0], 0.0)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)
    with pytest.raises(ValueError):
        RecentSamples(0)


def test_the_window_keeps_the_last_samples_only() -> None:
    window = RecentSamples(3)
    for value in (100.0, 1.0, 2.0, 3.0):
        window.add(value)
    assert len(window) == 3
    assert window.percentile(1.0) == 3.0  # 100 left when the fourth arrived


def test_the_window_agrees_with_sorting_the_last_samples_over_many_adds() -> None:
    rng = random.Random(7)
    window = RecentSamples(50)
    added: list[float] = []
    for _ in range(5000):
        value = round(rng.expovariate(1.0), 3)  # ties included
        window.add(value)
        added.append(value)
        if len(added) % 97 == 0:
            recent = sorted(added[-50:])
            for q in (0.5, 0.85, 0.95, 0.99):
                assert window.percentile(q) == percentile(recent, q)
    assert len(window) == 50  # bounded, whatever the number of samples added
