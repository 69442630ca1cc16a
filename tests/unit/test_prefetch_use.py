"""Prefetch earns its calls (issue 16): ``PrefetchUse`` decides from the user's measured use of
prefetches, per language, and the completion service tells it (on fake time) which prefetch
was used: served from the cache, joined in flight, or neither."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.unit.test_completion_flights import (
    SOURCE,
    USE_MEASURED,
    measure_a_use,
    service_on,
    snapshot,
)

from crucible.completion.prefetch_use import (
    MAX_LANGUAGES,
    THRESHOLD,
    PrefetchUse,
)
from crucible.completion.service import CompletionRequest
from crucible.context.snapshot import DocumentSnapshot


def prefetch_once(use: PrefetchUse, language: str, *, used: bool) -> bool:
    """One chance: whether it was taken; a prefetch taken is resolved ``used`` or not, a
    chance declined is measured the same way (no call)."""
    if not use.should_prefetch(language):
        use.resolved(language, used, measured=True)
        return False
    use.started(language)
    use.resolved(language, used)
    return True


def test_a_fresh_session_prefetches_nothing_until_a_use_is_measured() -> None:
    use = PrefetchUse()
    taken = [prefetch_once(use, "python", used=False) for _ in range(30)]

    assert taken == [False] * 30  # no call spent on a user who never accepts, not even exploring
    figures = use.snapshot()
    assert (figures["started"], figures["wasted"], figures["explored"]) == (0, 0, 0)
    assert (figures["skipped"], figures["measured_wasted"]) == (30, 30)
    assert figures["prefetching"] is False and figures["hit_rate"] is None
    # Waste without end settles at 2/8 (decayed weight 4 against the prior's 4).
    assert use.expected_use("python") == pytest.approx(2 / 8, abs=0.001)


def test_one_measured_use_starts_prefetching_from_the_prior() -> None:
    use = PrefetchUse()

    assert not prefetch_once(use, "python", used=True)  # measured: the user accepted
    assert use.should_prefetch("python")  # (1 + 4 x 1/2) / (1 + 4) = 0.6
    figures = use.snapshot()
    assert figures["measured_used"] == 1 and figures["languages"]["python"]["prefetching"]


def test_after_one_use_four_wasted_prefetches_in_a_row_stop_it() -> None:
    use = PrefetchUse()
    prefetch_once(use, "python", used=True)
    taken = [prefetch_once(use, "python", used=False) for _ in range(6)]

    assert taken == [True] * 4 + [False] * 2  # 0.6, 0.48, 0.41, 0.36, then 0.33
    assert use.snapshot()["wasted"] == 4


def test_one_measured_use_after_a_long_run_of_waste_brings_it_back() -> None:
    use = PrefetchUse()
    prefetch_once(use, "python", used=True)
    for _ in range(400):
        prefetch_once(use, "python", used=False)
    assert not use.should_prefetch("python")

    assert not prefetch_once(use, "python", used=True)  # measured, no call
    assert use.expected_use("python") > THRESHOLD
    assert use.should_prefetch("python")
    assert use.snapshot()["explored"] == 0


def test_a_user_who_stops_accepting_gets_prefetches_stopped_within_a_few() -> None:
    use = PrefetchUse()
    prefetch_once(use, "python", used=True)
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
    # A new language starts from the others' rate, never above even, and with no use
    # measured there yet, it is measured first.
    assert use.expected_use("go") == pytest.approx(0.5)
    assert not use.should_prefetch("go")
    languages = use.snapshot()["languages"]
    assert languages["python"]["prefetching"] is True
    assert languages["markdown"]["prefetching"] is False
    assert languages["markdown"]["skipped"] > 0


def test_a_new_language_of_a_user_who_ignores_suggestions_starts_low() -> None:
    use = PrefetchUse()
    for _ in range(20):
        prefetch_once(use, "python", used=False)

    assert use.expected_use("typescript") == pytest.approx(2 / 8, abs=0.001)  # python's
    assert not use.should_prefetch("typescript")
    # One use measured there outweighs it: (1 + 4 x 2/8) / (1 + 4) = 0.4.
    use.resolved("typescript", True, measured=True)
    assert use.should_prefetch("typescript")


def test_the_languages_kept_are_bounded() -> None:
    use = PrefetchUse()
    for n in range(MAX_LANGUAGES + 10):
        prefetch_once(use, f"lang{n}", used=True)

    figures = use.snapshot()
    assert len(figures["languages"]) == MAX_LANGUAGES
    assert figures["measured_used"] == MAX_LANGUAGES + 10  # the totals keep every one


# -- through the completion service: which prefetch was used -------------------------------


async def test_a_prefetch_served_from_the_cache_is_counted_used() -> None:
    time = FakeTime()
    replies = [*USE_MEASURED, Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",))]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await measure_a_use(time, service)
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
        *USE_MEASURED,
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # the sum",), first_byte=2.0),  # the prefetch, still running
    ]
    service, _, telemetry = service_on(
        time, ScriptedProvider("local", time, replies), prefetch=True
    )
    await measure_a_use(time, service)
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
    replies = [*USE_MEASURED, Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",))]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await measure_a_use(time, service)
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
    replies = [
        *USE_MEASURED,
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # the sum",)),
        Reply(),
    ]
    service, _, _ = service_on(time, ScriptedProvider("local", time, replies), prefetch=True)
    await measure_a_use(time, service)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)

    other = DocumentSnapshot("file:///w/other.py", "/w/other.py", "python", 1, "x = ")
    await time.run(service.complete(CompletionRequest(other, len(other.text))))

    figures = service.prefetch_snapshot()
    assert (figures["started"], figures["wasted"]) == (2, 1)  # and other.py's own, pending
    assert figures["pending"] == 1


async def test_a_chance_not_taken_costs_no_call_and_is_measured_by_what_comes_next() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("return a + b",)), Reply(chunks=(" - c",)), Reply(chunks=("  # ok",))]
    provider = ScriptedProvider("local", time, replies)
    service, _, _ = service_on(time, provider, prefetch=True)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)
    assert len(provider.calls) == 1  # no use measured yet: no prefetch call

    elsewhere = SOURCE + "x = 1"  # something else than the suggestion: measured wasted
    await time.run(service.complete(CompletionRequest(snapshot(elsewhere, 2), len(elsewhere))))
    await time.advance(1.0)
    figures = service.prefetch_snapshot()
    assert (figures["measured_wasted"], figures["measured_used"], figures["started"]) == (1, 0, 0)

    accepted = elsewhere + " - c"  # the suggestion accepted: measured used, and now it pays
    await time.run(service.complete(CompletionRequest(snapshot(accepted, 3), len(accepted))))
    await time.advance(1.0)
    figures = service.prefetch_snapshot()
    assert (figures["measured_used"], figures["started"], figures["pending"]) == (1, 1, 1)
    assert len(provider.calls) == 3 + 1  # each request's call, and the first prefetch


async def test_a_suggestion_typed_on_past_before_its_answer_is_not_measured_used() -> None:
    time = FakeTime()
    replies = [
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # the sum",), first_byte=0.15),
        Reply(chunks=("    pass",), first_byte=0.15),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _, _ = service_on(time, provider, prefetch=True)
    await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)

    async def accept_and_type_on() -> Any:
        accepted = SOURCE + "return a + b"
        asked = asyncio.ensure_future(
            service.complete(CompletionRequest(snapshot(accepted, 2), len(accepted)))
        )
        await time.sleep(0.03)  # the next key, before that request got any answer
        typed = accepted + "\n"
        await service.complete(CompletionRequest(snapshot(typed, 3), len(typed)))
        return await asked

    assert await time.run(accept_and_type_on()) is None  # superseded: it got no answer
    # Typed on past its end before the request there was answered: not an acceptance, and
    # the next answer (another text) resolves it wasted.
    figures = service.prefetch_snapshot()
    assert (figures["measured_used"], figures["measured_wasted"]) == (0, 1)
