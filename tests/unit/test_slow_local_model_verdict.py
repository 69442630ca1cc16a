"""benchmarks/slow_local_model.py's served target: judged over the pauses the model server
could answer in the same run, so a loaded machine is not a Crucible regression and an idle
one still judges every pause."""

from __future__ import annotations

import math

from benchmarks.slow_local_model import DEBOUNCE_MAX_MS, Pause, Run, Speed, served_target


def pause(reach_ms: float, served: bool) -> Pause:
    return Pause(
        spot=0,
        burst=0,
        keys=6,
        pause_ms=1500,
        served=served,
        latency_ms=300 if served else None,
        suggestion="x" if served else "",
        error=None,
        reach_ms=reach_ms,
    )


# Reaches as the quick run's: the first pause at a spot ~2.5 s after its Enter, the second ~5.5 s.
def run(served: list[bool], *speeds: Speed) -> Run:
    reaches = [2500, 5500, 2700, 5700]
    return Run(
        "crucible",
        [pause(r, s) for r, s in zip(reaches, served, strict=True)],
        [],
        speeds=list(speeds),
    )


IDLE = Speed(cold_ms=800, answer_ms=150, answer_tokens=27)
MODERATE = Speed(cold_ms=3000, answer_ms=800, answer_tokens=27)
LOADED = Speed(cold_ms=8300, answer_ms=2000, answer_tokens=27)


def test_idle_every_pause_is_judged_and_a_crucible_serving_one_fails() -> None:
    assert IDLE.earliest_ms == 800 + 150 + DEBOUNCE_MAX_MS
    assert served_target(run([True] * 4, IDLE, IDLE)).passed is True
    verdict = served_target(run([True, False, False, False], IDLE, IDLE))
    assert verdict.passed is False
    assert verdict.figure.startswith("1/4 (25%)")


def test_loaded_no_pause_is_in_reach_and_the_target_is_not_judged() -> None:
    verdict = served_target(run([False] * 4, IDLE, LOADED))  # the slower of the two counts
    assert verdict.passed is None
    assert verdict.figure.startswith("not judged")
    assert served_target(run([False] * 4, Speed(math.inf, math.inf, 0))).passed is None


def test_moderate_only_the_pauses_in_reach_are_judged() -> None:
    # 3.0 + 0.8 + 0.6 s: the second pauses (5.5 s) are in reach, the first (2.5 s) are not.
    assert served_target(run([False, True, False, True], MODERATE, MODERATE)).passed is True
    assert served_target(run([True, False, True, False], MODERATE, MODERATE)).passed is False


def test_without_a_speed_measure_every_pause_is_judged() -> None:
    assert served_target(run([True, True, True, False])).passed is False  # 3/4 < 80 %
