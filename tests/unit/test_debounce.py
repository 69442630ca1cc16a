"""AdaptiveDebounce against simulated typists on a fake clock (nothing sleeps).

A request fires upstream when its wait ends before the next keystroke, so "the delay after
key i exceeds the gap to key i + 1" means "no call mid-burst".
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest

from crucible.config.settings import CompletionSettings, DebounceMode
from crucible.scheduling.debounce import AdaptiveDebounce, Start, Wait

DOC = "file:///a.py"
MID_WORD = ("    value = comp", "")  # the usual cursor while typing: right after a letter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += ms / 1000.0


def make(**overrides: Any) -> tuple[AdaptiveDebounce, FakeClock]:
    clock = FakeClock()
    return AdaptiveDebounce(CompletionSettings(**overrides), clock=clock), clock


def type_gaps(debounce: AdaptiveDebounce, clock: FakeClock, gaps: Sequence[float]) -> None:
    debounce.keystroke(DOC)
    for gap in gaps:
        clock.advance_ms(gap)
        debounce.keystroke(DOC)


def test_starts_at_debounce_ms_before_any_typing() -> None:
    debounce, _ = make(debounce_ms=150)
    assert debounce.describe(DOC) == {
        "rhythm_ms": 93.75,
        "rhythm_samples": 0.0,
        "latency_ms": 0.0,
        "last_delay_ms": 0.0,
    }
    assert debounce.delay_ms(DOC, "x = foo ", "") == 150
    assert debounce.describe(DOC)["rhythm_samples"] == 0


def test_fast_typist_waits_longer_than_their_gap_but_far_under_200_ms() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [30.0] * 40)
    delay = debounce.delay_ms(DOC, *MID_WORD)
    assert 45 < delay < 100


def test_slow_typist_waits_longer_than_a_fast_one() -> None:
    fast, fast_clock = make()
    slow, slow_clock = make()
    type_gaps(fast, fast_clock, [30.0] * 40)
    type_gaps(slow, slow_clock, [150.0] * 40)
    assert slow.delay_ms(DOC, *MID_WORD) > 1.4 * 150 > fast.delay_ms(DOC, *MID_WORD)


def test_pauses_are_thinking_not_typing() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [40.0] * 30)
    before = debounce.delay_ms(DOC, *MID_WORD)
    type_gaps(debounce, clock, [5000.0, 2500.0])
    assert debounce.delay_ms(DOC, *MID_WORD) == before
    assert debounce.describe(DOC)["rhythm_samples"] == 30  # the 1st keystroke gave no gap


def test_one_slow_key_barely_moves_the_wait() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [100.0] * 30)
    before = debounce.delay_ms(DOC, *MID_WORD)
    type_gaps(debounce, clock, [900.0])
    assert debounce.delay_ms(DOC, *MID_WORD) == pytest.approx(before, rel=0.05)


def test_wait_follows_a_change_of_pace_within_one_window() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [150.0] * 40)
    type_gaps(debounce, clock, [40.0] * 32)
    assert debounce.delay_ms(DOC, *MID_WORD) < 3 * 40


@pytest.mark.parametrize(
    ("shorter", "longer"),
    [
        (("print(", ""), ("print", "")),  # after an opener < mid-word
        (("    ", ""), ("    pri", "")),  # indented empty line < mid-word
        (("    return ", ""), ("    x = foo ", "")),  # after a keyword < after a name
        (("x = ", ""), ("x = foo ", "")),  # after an operator < after a name
        (("items.", ""), ("items.app", "")),
        (("print(", ")"), ("print(", "x, y)")),  # auto-closed pair = line end < mid-line
        (("x = foo ", ""), ("x = foo", "")),  # between words < mid-word
        (("x = foo", ""), ("x = foo", " + bar")),  # mid-word at line end < mid-word mid-line
    ],
)
def test_context_orders_the_wait(shorter: tuple[str, str], longer: tuple[str, str]) -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [80.0] * 20)
    assert debounce.delay_ms(DOC, *shorter) < debounce.delay_ms(DOC, *longer)


def test_a_slow_provider_lengthens_the_wait_a_little_and_one_timeout_does_not() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [60.0] * 30)
    alone = debounce.delay_ms(DOC, *MID_WORD)
    for _ in range(8):
        debounce.observe_latency(800.0)
    slow = debounce.delay_ms(DOC, *MID_WORD)
    assert slow == pytest.approx(alone + 0.2 * (800 - 250))
    debounce.observe_latency(4000.0)  # a timeout
    assert debounce.delay_ms(DOC, *MID_WORD) == pytest.approx(slow)
    assert debounce.describe(DOC)["latency_ms"] == 800


def test_latency_is_shared_across_documents_and_bad_samples_ignored() -> None:
    debounce, _ = make()
    debounce.observe_latency(300.0)
    debounce.observe_latency(float("nan"))
    debounce.observe_latency(-5.0)
    assert debounce.describe("file:///other.py")["latency_ms"] == 300


def test_wait_is_clamped_to_the_configured_bounds() -> None:
    debounce, clock = make(debounce_min_ms=100, debounce_max_ms=300)
    type_gaps(debounce, clock, [20.0] * 30)
    assert debounce.delay_ms(DOC, "f(", "") == 100
    type_gaps(debounce, clock, [450.0] * 40)
    assert debounce.delay_ms(DOC, "x = foo", " + bar") == 300


def test_min_above_max_is_taken_as_the_range_meant() -> None:
    debounce, clock = make(debounce_min_ms=500, debounce_max_ms=200)
    type_gaps(debounce, clock, [20.0] * 30)
    assert debounce.delay_ms(DOC, "f(", "") == 200
    type_gaps(debounce, clock, [450.0] * 40)
    assert debounce.delay_ms(DOC, "x = foo", " + bar") == 500


def test_fixed_mode_always_waits_debounce_ms() -> None:
    debounce, clock = make(debounce_mode=DebounceMode.FIXED, debounce_ms=250)
    type_gaps(debounce, clock, [30.0] * 40)
    debounce.observe_latency(900.0)
    assert debounce.delay_ms(DOC, "f(", "") == 250
    assert debounce.delay_ms(DOC, "x = foo", " + bar") == 250


@pytest.mark.parametrize("mode", list(DebounceMode))
def test_invoked_never_waits(mode: DebounceMode) -> None:
    debounce, _ = make(debounce_mode=mode)
    assert debounce.delay_ms(DOC, *MID_WORD, invoked=True) == 0
    assert debounce.describe(DOC)["last_delay_ms"] == 0


def test_reconfigure_keeps_what_was_learned() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [30.0] * 40)
    learned = debounce.delay_ms(DOC, *MID_WORD)
    debounce.reconfigure(CompletionSettings(debounce_mode=DebounceMode.FIXED))
    assert debounce.delay_ms(DOC, *MID_WORD) == 150
    debounce.reconfigure(CompletionSettings())
    assert debounce.delay_ms(DOC, *MID_WORD) == learned


def test_forget_drops_the_document_rhythm_only() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [30.0] * 40)
    debounce.observe_latency(100.0)
    fresh = debounce.delay_ms("file:///b.py", "x = foo ", "")
    debounce.forget(DOC)
    assert debounce.describe(DOC)["rhythm_samples"] == 0
    assert debounce.describe(DOC)["latency_ms"] == 100
    # What remains is what any new document starts from: the user's rhythm and the latency.
    assert debounce.delay_ms(DOC, "x = foo ", "") == pytest.approx(fresh)


def test_a_new_document_starts_from_the_users_rhythm_not_the_configured_guess() -> None:
    debounce, clock = make()
    assert debounce.delay_ms("file:///b.py", "x = foo ", "") == 150
    type_gaps(debounce, clock, [30.0] * 40)
    # 1.6 x (32 x 30 + 4 x 93.75) / 36 = 59.3 ms: a fast typist is fast everywhere.
    assert debounce.pause_ms("file:///b.py", "x = foo ", "") == pytest.approx(59.3, abs=0.1)


def test_rhythm_is_still_per_document() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [30.0] * 40)
    fast = debounce.delay_ms(DOC, "x = foo ", "")
    other = "file:///b.py"
    debounce.keystroke(other)
    for _ in range(40):
        clock.advance_ms(200.0)
        debounce.keystroke(other)
    # B's slow typing moves B's wait a lot and A's own, well-sampled wait only a little.
    assert debounce.delay_ms(other, "x = foo ", "") > 2 * fast
    assert debounce.delay_ms(DOC, "x = foo ", "") < 1.6 * fast


LINE = "    result = compute(alpha, beta_value)"  # 39 keys after the first: 40 in all


def simulate_burst(debounce: AdaptiveDebounce, clock: FakeClock, gaps: Sequence[float]) -> int:
    """Type LINE one key at a time; returns how many requests would reach the provider."""
    calls = 0
    for index in range(len(LINE)):
        debounce.keystroke(DOC)
        delay = debounce.delay_ms(DOC, LINE[: index + 1], ")" if "(" in LINE[: index + 1] else "")
        if index < len(gaps):
            calls += delay <= gaps[index]
            clock.advance_ms(gaps[index])
    return calls + 1  # the request after the last key always goes


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("latency", [None, 50.0, 800.0])
def test_a_40_key_burst_costs_one_call(seed: int, latency: float | None) -> None:
    rng = random.Random(seed)
    gaps = [30.0 + rng.uniform(-10.0, 10.0) for _ in range(len(LINE) - 1)]
    debounce, clock = make()
    if latency is not None:
        debounce.observe_latency(latency)
    assert simulate_burst(debounce, clock, gaps) == 1
    if latency != 800.0:
        assert debounce.describe(DOC)["last_delay_ms"] < 150


def tabby_delay(history: list[float], score: float, latency: float) -> float:
    """tabby-agent's debouncer.ts, for comparison (its window and clamps, same inputs)."""
    kept = [gap for gap in history if gap <= 400][-100:]
    base = min(max(sum(kept) / len(kept), 100.0), 400.0) if len(kept) > 20 else 200.0
    return min(max((3.0 - 1.5 * score) * base - latency, 100.0), 1000.0)


def test_beats_tabby_on_time_to_suggestion_and_on_calls_to_a_slow_provider() -> None:
    # A fast typist with 120 ms hesitations between words, against an 800 ms hosted model.
    gaps = ([30.0] * 6 + [120.0]) * 6
    debounce, clock = make()
    debounce.observe_latency(800.0)
    ours = 0
    tabby = 0
    debounce.keystroke(DOC)
    for index, gap in enumerate(gaps):
        ours += debounce.delay_ms(DOC, *MID_WORD) <= gap
        tabby += tabby_delay(gaps[:index], 0.4, 800.0) <= gap  # mid-word at line end
        clock.advance_ms(gap)
        debounce.keystroke(DOC)
    assert ours == 0 < tabby == 6
    # With a fast local model, the wait after the last key is well under Tabby's.
    fast, fast_clock = make()
    fast.observe_latency(50.0)
    type_gaps(fast, fast_clock, [30.0] * 40)
    assert fast.delay_ms(DOC, *MID_WORD) < 0.5 * tabby_delay([30.0] * 40, 0.4, 50.0)


# -- the pause that ends a burst (issue 16) ------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_pause_is_about_two_gaps_of_the_users_rhythm(seed: int) -> None:
    # A typist's gaps vary by ~30 % around their median (log-normal), here 50 ms.
    rng = random.Random(seed)
    debounce, clock = make()
    type_gaps(debounce, clock, [rng.lognormvariate(math.log(50.0), 0.3) for _ in range(40)])
    # Neutral context, no provider latency: about two median gaps.
    assert 1.7 * 50 <= debounce.pause_ms(DOC, "x = foo ", "") <= 2.4 * 50


def test_a_steady_rhythm_gets_a_shorter_pause_than_a_ragged_one() -> None:
    steady, steady_clock = make()
    type_gaps(steady, steady_clock, [50.0] * 40)
    ragged, ragged_clock = make()
    type_gaps(ragged, ragged_clock, [30.0, 70.0] * 20)  # the same mean, more spread
    assert 1.6 * 50 <= steady.pause_ms(DOC, "x = foo ", "") < ragged.pause_ms(DOC, "x = foo ", "")


def test_the_deadline_counts_from_the_last_edit_not_from_the_request() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [60.0] * 30)
    pause = debounce.pause_ms(DOC, *MID_WORD)
    clock.advance_ms(50.0)  # the request comes 50 ms after the key
    assert debounce.delay_ms(DOC, *MID_WORD) == pytest.approx(pause - 50.0)
    clock.advance_ms(800.0)  # the user already paused: sent at once
    assert debounce.delay_ms(DOC, *MID_WORD) == 0
    assert debounce.describe(DOC)["last_delay_ms"] == 0


def test_a_request_after_a_pause_is_sent_at_once_even_for_a_slow_typist() -> None:
    # The case: a request 800 ms after the last edit waited ~600 ms more.
    debounce, clock = make()
    type_gaps(debounce, clock, [400.0] * 40)
    assert debounce.pause_ms(DOC, *MID_WORD) == 600  # the ceiling
    clock.advance_ms(800.0)
    assert debounce.delay_ms(DOC, *MID_WORD) == 0


def test_fixed_mode_also_counts_from_the_last_edit() -> None:
    debounce, clock = make(debounce_mode=DebounceMode.FIXED, debounce_ms=250)
    debounce.keystroke(DOC)
    clock.advance_ms(100.0)
    assert debounce.delay_ms(DOC, *MID_WORD) == pytest.approx(150.0)


def test_a_document_never_edited_waits_the_whole_pause() -> None:
    debounce, clock = make()
    clock.advance_ms(5000.0)
    assert debounce.delay_ms(DOC, "x = foo ", "") == 150


def test_hesitations_between_words_do_not_lengthen_the_pause() -> None:
    steady, steady_clock = make()
    type_gaps(steady, steady_clock, [40.0] * 32)
    hesitant, hesitant_clock = make()
    # A hesitation of 300-450 ms after every fifth key (between words): under the cap.
    type_gaps(hesitant, hesitant_clock, [40.0, 40.0, 40.0, 40.0, 300.0] * 4 + [40.0] * 4 + [450.0])
    assert hesitant.pause_ms(DOC, *MID_WORD) == pytest.approx(
        steady.pause_ms(DOC, *MID_WORD), rel=0.05
    )


def test_thinking_over_half_a_second_is_not_rhythm() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [40.0] * 10)
    type_gaps(debounce, clock, [600.0, 900.0] * 10)
    assert debounce.describe(DOC)["rhythm_samples"] == 10  # the ten 40 ms gaps alone


def test_requests_for_moved_cursors_wait_for_the_moves_to_stop() -> None:
    # Arrow keys move the cursor without editing; an editor may ask at every stop.
    debounce, clock = make()
    type_gaps(debounce, clock, [50.0] * 30)
    pause = debounce.pause_ms(DOC, "x = foo ", "")
    clock.advance_ms(2000.0)
    assert debounce.delay_ms(DOC, "x = foo ", "") == 0  # the first, after a pause: at once
    clock.advance_ms(30.0)
    # The next, 30 ms later: counted from the previous request, it waits (and supersedes).
    assert debounce.delay_ms(DOC, "x = foo ", "") == pytest.approx(pause - 30.0)


def test_a_provider_that_answers_within_a_quarter_second_adds_no_wait() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [60.0] * 30)
    alone = debounce.pause_ms(DOC, *MID_WORD)
    for _ in range(8):
        debounce.observe_latency(170.0)
    assert debounce.pause_ms(DOC, *MID_WORD) == alone


# -- where the rhythm's tail says a burst is over: the STOP start (issue 16) ----------------------


def stop_calls(debounce: AdaptiveDebounce, clock: FakeClock, gaps: Sequence[float]) -> int:
    """As ``simulate_burst``, each request allowed to start at the STOP: how many go upstream
    (the one after the last key included)."""
    calls = 0
    for index in range(len(gaps) + 1):
        debounce.keystroke(DOC)
        prefix = LINE[: index % len(LINE) + 1]
        wait = debounce.wait(DOC, prefix, "", early=Start.STOP)
        if index < len(gaps):
            calls += wait.ms <= gaps[index]
            clock.advance_ms(gaps[index])
    return calls + 1


@pytest.mark.parametrize(
    ("low", "most"), [(20.0, 70.0), (30.0, 80.0), (60.0, 108.0), (90.0, 138.0)]
)
def test_a_regular_typists_burst_is_over_about_one_longest_gap_after_the_last_key(
    low: float, most: float
) -> None:
    # Gaps uniform in low .. low + 30 ms (the peers benchmark's speeds and the 30 +- 10 ms
    # burst): the longest gap is known, and the stop comes just after it, where the pause
    # waits 1.6 p75 gaps, x 1.3 right after a letter.
    for seed in range(10):
        rng = random.Random(seed)
        gaps = [rng.uniform(low, low + 30.0) for _ in range(39)]
        at_pause, pause_clock = make()
        debounce, clock = make()
        # No call mid-burst that the pause alone would not make (at 20-50 ms, 1 in 10 bursts
        # makes one after "(", where the pause is shortest).
        assert stop_calls(debounce, clock, gaps) == simulate_burst(at_pause, pause_clock, gaps)
        stop = debounce.stop_ms(DOC)
        assert stop is not None
        assert low + 30.0 < stop <= most
        assert stop < 0.85 * debounce.pause_ms(DOC, *MID_WORD)
        wait = debounce.wait(DOC, *MID_WORD, early=Start.STOP)
        assert wait.speculative and wait.ms == pytest.approx(stop)


def test_no_stop_before_the_document_has_sixteen_gaps_of_its_own() -> None:
    # The user typed elsewhere at 40 ms; a new document typed at 100 ms: its first gaps say
    # little of its longest one, and the user's would cut it.
    debounce, clock = make()
    type_gaps(debounce, clock, [40.0] * 32)
    other = "file:///b.py"
    debounce.keystroke(other)
    for _ in range(15):
        clock.advance_ms(100.0)
        debounce.keystroke(other)
    assert debounce.stop_ms(other) is None
    assert debounce.wait(other, *MID_WORD, early=Start.STOP) == debounce.wait(other, *MID_WORD)
    clock.advance_ms(100.0)
    debounce.keystroke(other)
    stop = debounce.stop_ms(other)
    assert stop is not None and 100.0 < stop < 110.0


def test_fixed_mode_has_no_stop() -> None:
    debounce, clock = make(debounce_mode=DebounceMode.FIXED, debounce_ms=250)
    type_gaps(debounce, clock, [60.0] * 32)
    assert debounce.stop_ms(DOC) is None
    assert debounce.wait(DOC, *MID_WORD, early=Start.STOP) == Wait(250.0)


@pytest.mark.parametrize("sigma", [0.5, 0.7])
def test_a_heavy_tail_puts_the_stop_past_the_pause(sigma: float) -> None:
    # Gaps that spread widely (log-normal): their p99 is well past 1.6 p75 gaps, and the pause
    # stands; a STOP start is never earlier than it.
    rng = random.Random(7)
    debounce, clock = make()
    type_gaps(debounce, clock, [rng.lognormvariate(math.log(60.0), sigma) for _ in range(40)])
    stop = debounce.stop_ms(DOC)
    assert stop is not None and stop > debounce.pause_ms(DOC, "x = foo ", "")
    wait = debounce.wait(DOC, "x = foo ", "", early=Start.STOP)
    assert not wait.speculative and wait.ms == debounce.delay_ms(DOC, "x = foo ", "")


def test_hesitations_a_twentieth_of_the_gaps_move_the_stop_past_them() -> None:
    # 350 ms hesitations between words, 1 gap in 16: the p95 of 32 gaps sees them.
    debounce, clock = make()
    type_gaps(debounce, clock, ([40.0] * 15 + [350.0]) * 2 + [40.0] * 8)
    stop = debounce.stop_ms(DOC)
    assert stop is not None and stop > 350.0


def test_a_heavy_tailed_typists_hesitations_cost_few_more_calls_at_the_stop() -> None:
    # Log-normal gaps (median 60 ms, 30 % spread) and a 350 ms hesitation in 1 gap of 30, 80
    # keys, 20 typists: hesitations this rare stay out of the p95, so they fire a call as they
    # fire one at the pause (ending a word is a fair place to suggest); the STOP adds about one
    # call in two such bursts of its own (the p99 (x 1.7) added 13 over the 20, none (x 1.0) 31).
    extra = []
    for seed in range(20):
        rng = random.Random(seed)
        gaps = [
            350.0 if rng.random() < 1 / 30 else rng.lognormvariate(math.log(60.0), 0.3)
            for _ in range(79)
        ]
        at_pause, clock = make()
        paused = simulate_burst(at_pause, clock, gaps[: len(LINE) - 1])
        paused += simulate_burst(at_pause, clock, gaps[len(LINE) - 1 :]) - 1  # one last key
        at_stop, clock = make()
        extra.append(stop_calls(at_stop, clock, gaps) - paused)
    assert max(extra) <= 3
    assert sum(extra) <= 12


def test_a_request_held_behind_the_start_up_load_counts_its_wait() -> None:
    """``waited_ms`` (``Frame.waited_s``): the client asked that long ago, so its last edit or
    request was at least that long ago, though this clock saw them all just now."""
    debounce, _ = make(debounce_ms=150)
    assert debounce.wait("held.py", "x = foo ", "", waited_ms=100.0).ms == 50
    debounce.keystroke(DOC)  # replayed just now, typed before the request was held
    wait = debounce.wait(DOC, "x = foo ", "", early=True, waited_ms=700.0)
    assert wait.ms == 0
    assert not wait.speculative  # the pause is over: going now is no guess
    assert debounce.wait("fresh.py", "x = foo ", "").ms == 150  # as before without it
