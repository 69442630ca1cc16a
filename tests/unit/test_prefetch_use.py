"""Prefetch earns its calls (issue 16): ``PrefetchUse`` decides from the user's measured use of
prefetches, per language, and the completion service tells it (on fake time) which prefetch
was used: served from the cache, joined in flight, or neither."""

from __future__ import annotations

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.unit.test_completion_flights import SOURCE, service_on, snapshot

from crucible.completion.prefetch_use import (
    EXPLORE_EVERY,
    MAX_LANGUAGES,
    THRESHOLD,
    PrefetchUse,
)
from crucible.completion.service import CompletionRequest
from crucible.context.snapshot import DocumentSnapshot


def prefetch_once(use: PrefetchUse, language: str, *, used: bool) -> bool:
    """One chance: whether it was taken; a prefetch taken is resolved ``used`` or not."""
    if not use.should_prefetch(language):
        return False
    use.started(language)
    use.resolved(language, used)
    return True


def test_a_fresh_session_prefetches_and_stops_after_three_wasted_in_a_row() -> None:
    use = PrefetchUse()
    taken = [prefetch_once(use, "python", used=False) for _ in range(5)]

    assert taken == [True, True, True, False, False]
    assert use.expected_use("python") == pytest.approx(2 / 6.3125)  # 2 / (1 + .75 + .5625 + 4)
    figures = use.snapshot()
    assert (figures["started"], figures["wasted"], figures["skipped"]) == (3, 3, 2)
    assert figures["hit_rate"] == 0.0 and figures["prefetching"] is False


def test_below_the_threshold_one_chance_in_ten_still_prefetches() -> None:
    use = PrefetchUse()
    for _ in range(3):
        prefetch_once(use, "python", used=False)
    taken = [prefetch_once(use, "python", used=False) for _ in range(30)]

    assert taken == ([False] * (EXPLORE_EVERY - 1) + [True]) * 3
    assert use.snapshot()["explored"] == 3
    # Waste without end settles at 2/8 (decayed weight 4 against the prior's 4).
    for _ in range(100):
        use.started("python")
        use.resolved("python", False)
    assert use.expected_use("python") == pytest.approx(2 / 8, abs=0.001)


def test_one_explored_prefetch_used_brings_it_back() -> None:
    use = PrefetchUse()
    for _ in range(400):
        prefetch_once(use, "python", used=False)
    explored_used = 0
    for _ in range(3 * EXPLORE_EVERY):
        if use.expected_use("python") > THRESHOLD:
            break
        explored_used += prefetch_once(use, "python", used=True)

    assert explored_used == 1
    assert use.should_prefetch("python")


def test_a_user_who_stops_accepting_gets_prefetches_stopped_within_a_few() -> None:
    use = PrefetchUse()
    for _ in range(30):
        assert prefetch_once(use, "python", used=True)
    wasted_before_stop = 0
    while prefetch_once(use, "python", used=False):
        wasted_before_stop += 1

    assert wasted_before_stop == 7  # the last ~4 weigh most: a habit is followed, not averaged
    assert use.snapshot()["hit_rate"] == pytest.approx(30 / 37, abs=0.001)


def test_each_language_has_its_own_rate_and_a_new_one_starts_from_the_others() -> None:
    use = PrefetchUse()
    for _ in range(20):
        prefetch_once(use, "markdown", used=False)
        prefetch_once(use, "python", used=True)

    assert use.should_prefetch("python")
    assert not use.should_prefetch("markdown")
    # A new language starts from the others' rate, here above even: at even.
    assert use.expected_use(None) > 0.5
    assert use.expected_use("go") == 0.5
    languages = use.snapshot()["languages"]
    assert languages["python"]["prefetching"] is True
    assert languages["markdown"]["prefetching"] is False
    assert languages["markdown"]["skipped"] > 0


def test_a_new_language_of_a_user_who_ignores_prefetches_is_not_prefetched() -> None:
    use = PrefetchUse()
    for _ in range(20):
        prefetch_once(use, "python", used=False)

    assert not use.should_prefetch("typescript")


def test_the_languages_kept_are_bounded() -> None:
    use = PrefetchUse()
    for n in range(MAX_LANGUAGES + 10):
        prefetch_once(use, f"lang{n}", used=True)

    figures = use.snapshot()
    assert len(figures["languages"]) == MAX_LANGUAGES
    assert figures["used"] == MAX_LANGUAGES + 10  # the totals keep every one


# -- through the completion service: which prefetch was used -------------------------------


async def test_a_prefetch_served_from_the_cache_is_counted_used() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",))]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)
    # The same spot asked again (an editor re-asking) decides nothing.
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    assert service.prefetch_snapshot()["pending"] == 1

    accepted = SOURCE + "return a + b"
    await time.run(service.complete(CompletionRequest(snapshot(accepted, 2), len(accepted))))

    figures = service.prefetch_snapshot()
    assert (figures["started"], figures["used"], figures["wasted"]) == (2, 1, 0)
    assert figures["languages"]["python"]["used"] == 1


async def test_a_prefetch_joined_in_flight_is_counted_used() -> None:
    time = FakeTime()
    replies = [
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # the sum",), first_byte=2.0),  # the prefetch, still running
    ]
    service, _, telemetry = service_on(
        time, ScriptedProvider("local", time, replies), prefetch=True
    )
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(0.5)

    accepted = SOURCE + "return a + b"
    joined = await time.run(
        service.complete(CompletionRequest(snapshot(accepted, 2), len(accepted), invoked=True))
    )

    assert joined is not None and joined.text == "  # the sum"
    assert telemetry.snapshot()["requests"]["coalesced"] == 1
    assert service.prefetch_snapshot()["used"] == 1


async def test_another_answer_or_closing_the_document_counts_the_prefetch_wasted() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",))]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)
    elsewhere = SOURCE + "x = 1"
    await time.run(service.complete(CompletionRequest(snapshot(elsewhere, 2), len(elsewhere))))
    await time.advance(1.0)
    assert service.prefetch_snapshot()["wasted"] == 1

    service.document_closed("file:///w/add.py")

    figures = service.prefetch_snapshot()
    assert (figures["started"], figures["wasted"], figures["pending"]) == (2, 2, 0)


async def test_an_answer_in_another_document_counts_the_prefetch_wasted() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",)), Reply()]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)

    other = DocumentSnapshot("file:///w/other.py", "/w/other.py", "python", 1, "x = ")
    await time.run(service.complete(CompletionRequest(other, len(other.text))))

    figures = service.prefetch_snapshot()
    assert (figures["started"], figures["wasted"]) == (2, 1)  # and other.py's own, pending
    assert figures["pending"] == 1
