"""Speculative starts (issue 16): a request goes upstream when a pause begins (one normal gap
after the last key) instead of when the pause that ends a burst is over, its stream is kept
only if the next key fits it, and speculation stops where it does not pay.

The rule on an injected clock (``AdaptiveDebounce.wait``, ``SpeculativeStarts``), then the
completion service on fake time with a scripted provider: nothing sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.unit.test_completion_flights import service_on, snapshot
from tests.unit.test_debounce import DOC, MID_WORD, make, type_gaps

from crucible.completion.service import CompletionRequest, CompletionResult, CompletionService
from crucible.config.settings import DebounceMode
from crucible.scheduling.debounce import Start, Wait
from crucible.scheduling.eager import started
from crucible.scheduling.speculation import SpeculativeStarts

# -- the rule ------------------------------------------------------------------------------------


def test_a_pause_begins_one_normal_gap_after_the_last_key() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [100.0] * 32)
    clock.advance_ms(10.0)  # the request arrives 10 ms after the key
    pause = debounce.pause_ms(DOC, *MID_WORD)
    early = debounce.wait(DOC, *MID_WORD, early=True)
    # One gap (100 ms; the prior takes ~0.1 ms off), less the 10 ms already gone: over 100 ms
    # before the pause that ends the burst (1.6 gaps x 1.3 mid-word, 208 ms).
    assert early.speculative
    assert early.ms == pytest.approx(90.0, abs=0.5)
    assert pause - 10.0 - early.ms > 100.0
    # Without early: the pause that ends a burst, not speculative.
    late = debounce.wait(DOC, *MID_WORD)
    assert not late.speculative and late.ms == debounce.delay_ms(DOC, *MID_WORD)


def test_after_the_pause_ended_a_request_is_not_speculative() -> None:
    debounce, clock = make()
    type_gaps(debounce, clock, [100.0] * 32)
    clock.advance_ms(900.0)
    assert debounce.wait(DOC, *MID_WORD, early=True) == Wait(0.0, speculative=False)


def test_fixed_mode_and_invoked_requests_never_start_early() -> None:
    debounce, clock = make(debounce_mode=DebounceMode.FIXED, debounce_ms=150)
    type_gaps(debounce, clock, [100.0] * 32)
    fixed = debounce.wait(DOC, *MID_WORD, early=True)
    assert fixed.ms == 150.0 and not fixed.speculative
    invoked = debounce.wait(DOC, *MID_WORD, early=True, invoked=True)
    assert invoked.ms == 0.0 and not invoked.speculative


def wasted(starts: SpeculativeStarts, document: str = DOC) -> None:
    """A speculative start whose next key did not fit (no seat on its stream)."""
    starts.sent(document, object(), speculative=True, until=10.0)
    starts.arrived(document, 1.0, typed_through=False)


def kept(starts: SpeculativeStarts, document: str = DOC) -> None:
    """A speculative start whose next key sat on its stream, which served it."""
    stream = object()
    starts.sent(document, stream, speculative=True, until=10.0)
    starts.arrived(document, 1.0, typed_through=False, seated_on=stream)
    starts.stream_ended(document, stream, served=True)


def totals(snapshot: dict[str, int]) -> dict[str, int]:
    """Starts at any point, and how many were kept and wasted."""
    return {key: snapshot[key] for key in ("started", "kept", "wasted")}


def test_the_next_request_judges_a_speculative_start() -> None:
    starts = SpeculativeStarts()
    stream = object()
    starts.sent(DOC, stream, speculative=True, until=10.0)
    starts.arrived(DOC, 1.0, typed_through=False, seated_on=stream)  # the verdict waits
    starts.arrived(DOC, 11.0, typed_through=False, seated_on=stream)  # even past the pause
    assert totals(starts.snapshot()) == {"started": 1, "kept": 0, "wasted": 0}
    starts.stream_ended(DOC, object(), served=True)  # another stream: not this one's verdict
    starts.stream_ended(DOC, stream, served=False)  # its text did not fit
    assert totals(starts.snapshot()) == {"started": 1, "kept": 0, "wasted": 1}
    starts.sent(DOC, speculative=False)
    # After the pause (the user had stopped) or typed through: kept.
    starts.sent(DOC, object(), speculative=True, until=10.0)
    starts.arrived(DOC, 10.0, typed_through=False)
    starts.sent(DOC, object(), speculative=True, until=10.0)
    starts.arrived(DOC, 2.0, typed_through=True)
    assert totals(starts.snapshot()) == {"started": 3, "kept": 2, "wasted": 1}
    starts.arrived(DOC, 3.0, typed_through=False)  # nothing pending: no verdict
    assert starts.snapshot()["wasted"] == 1


def stop_start(starts: SpeculativeStarts, document: str, until: float) -> object:
    """A speculative start at the STOP (GAP starts no longer pay)."""
    stream = object()
    assert starts.allowed(document) is Start.STOP
    starts.sent(document, stream, speculative=True, until=until)
    return stream


def test_a_stop_start_the_user_stopped_after_is_kept_whatever_its_stream_said() -> None:
    # The user stopped: no request for the document before its pause would have ended. Any
    # request (of another document) after that judges it; so does closing the document.
    starts = SpeculativeStarts()
    wasted(starts, "file:///x.py")
    wasted(starts, "file:///y.py")  # GAP starts do not pay
    stop_start(starts, DOC, 10.0)
    starts.arrived("file:///other.py", 9.0, typed_through=False)  # within the pause: open
    assert starts.snapshot()["stop_kept"] == 0
    starts.arrived("file:///other.py", 10.5, typed_through=False)
    assert starts.snapshot()["stop_kept"] == 1
    stop_start(starts, DOC, 20.0)
    starts.forget(DOC)  # closed with no key after it
    assert starts.snapshot()["stop_kept"] == 2
    # One a request sat on leaves with its document, unjudged: its stream had the verdict.
    stream = stop_start(starts, DOC, 30.0)
    starts.arrived(DOC, 25.0, typed_through=False, seated_on=stream)
    starts.forget(DOC)
    starts.arrived("file:///other.py", 40.0, typed_through=False)
    assert {k: v for k, v in starts.snapshot().items() if k.startswith("stop_")} == {
        "stop_started": 3,
        "stop_kept": 2,
        "stop_wasted": 0,
    }


def test_a_gap_start_nobody_followed_goes_unjudged() -> None:
    starts = SpeculativeStarts()
    starts.sent(DOC, object(), speculative=True, until=10.0)
    starts.arrived("file:///other.py", 11.0, typed_through=False)
    starts.forget(DOC)
    assert totals(starts.snapshot()) == {"started": 1, "kept": 0, "wasted": 0}


def test_a_wasted_speculation_stops_it_in_that_burst_only() -> None:
    starts = SpeculativeStarts()
    assert starts.allowed(DOC) is Start.GAP
    kept(starts)
    kept(starts)
    wasted(starts)  # the next key did not fit; 3 kept of 4 with the prior: it still pays
    # The rest of the burst starts no earlier than where the burst is surely over.
    assert starts.allowed(DOC) is Start.STOP
    assert starts.allowed("file:///other.py") is Start.GAP
    starts.sent(DOC, speculative=False)  # the burst ended at the full pause
    assert starts.allowed(DOC) is Start.GAP


def test_a_wasted_stop_start_leaves_the_burst_to_the_full_pause() -> None:
    starts = SpeculativeStarts()
    wasted(starts)
    wasted(starts, "file:///other.py")  # GAP starts do not pay: 1 kept of 3
    assert starts.allowed(DOC) is Start.STOP
    starts.sent(DOC, object(), speculative=True, until=10.0)
    starts.forget(DOC)  # the user stopped there: kept
    assert starts.allowed(DOC) is Start.STOP
    starts.sent(DOC, object(), speculative=True, until=10.0)
    starts.arrived(DOC, 1.0, typed_through=False)  # a key came after the longest gap
    assert starts.snapshot()["stop_wasted"] == 1
    assert starts.allowed(DOC) is Start.PAUSE  # the rest of this burst
    assert starts.allowed("file:///third.py") is Start.STOP  # 2 kept of 3 with the prior
    starts.sent(DOC, speculative=False)
    assert starts.allowed(DOC) is Start.STOP


def test_speculation_stops_where_it_does_not_pay_and_explores_to_come_back() -> None:
    starts = SpeculativeStarts()
    kept(starts)
    wasted(starts, "file:///other.py")
    assert starts.allowed("file:///third.py") is Start.GAP  # 2 of 3 (with the prior)
    wasted(starts, "file:///other.py")
    # 2 of 4 < 2 / 3: GAP starts stop; the STOP, judged apart, has not wasted any.
    assert starts.allowed("file:///third.py") is Start.STOP
    allowed = []
    for _ in range(4):
        starts.sent(DOC, speculative=False)  # bursts end at the full pause
        allowed.append(starts.allowed(DOC))
    assert allowed == [Start.STOP, Start.STOP, Start.STOP, Start.GAP]  # one in four explores
    for _ in range(3):
        kept(starts)
    assert starts.allowed(DOC) is Start.GAP  # kept again: 5 of 7
    assert totals(starts.snapshot()) == {"started": 6, "kept": 4, "wasted": 2}


def test_bursts_ended_at_the_stop_count_towards_exploring_gap_starts() -> None:
    starts = SpeculativeStarts()
    wasted(starts)
    wasted(starts)
    offered = []
    for number in range(4):
        document = f"file:///{number}.py"
        offered.append(starts.allowed(document))
        starts.sent(document, object(), speculative=True, until=10.0)
        starts.forget(document)  # the user stopped there: kept, at the STOP
    assert offered == [Start.STOP] * 4
    assert starts.allowed("file:///next.py") is Start.GAP
    assert starts.snapshot()["stop_kept"] == 4


# -- in the completion service -------------------------------------------------------------------

GAP_S = 0.09  # the burst's gaps: a little under the user's learned 100 ms (``learned``)


async def type_burst(
    time: FakeTime, service: CompletionService, keys: str, *, start: str = "def add(a, b):\n    "
) -> tuple[list[CompletionResult | None], float]:
    """Type ``keys`` at ``GAP_S`` after ``start``, a request per key, as the editor does;
    returns every answer and when the last key was typed."""
    text = start
    asked: list[asyncio.Future[CompletionResult | None]] = []
    last_key = time.now
    for index, key in enumerate(keys):
        if index:
            await time.sleep(GAP_S)
        text += key
        service.document_changed("file:///w/add.py")
        last_key = time.now
        request = CompletionRequest(snapshot(text, index + 2), len(text))
        asked.append(asyncio.ensure_future(service.complete(request)))
    return list(await asyncio.gather(*asked)), last_key


def learned(time: FakeTime, service: CompletionService) -> Any:
    """Teach the service a 100 ms rhythm on another document (the user's rhythm is shared)."""
    for _ in range(32):
        service.document_changed("file:///w/warm.py")
        time.now += 0.1


async def test_the_request_after_the_last_key_starts_one_gap_later_not_a_pause_later() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("+ b",), first_byte=0.15))
    service, _, _ = service_on(time, provider)
    learned(time, service)

    answers, last_key = await time.run(type_burst(time, service, "return a"))

    assert answers[-1] is not None and answers[-1].text == "+ b"
    # One call, for the last key (no gap in the burst outlasted the normal one) ...
    assert len(provider.calls) == 1
    # ... started one normal gap after it (the document's 90 ms weighed with the user's
    # 100 ms: ~94 ms), where the pause that ends a burst (1.6 gaps, x 1.3 right after a
    # letter) would have waited ~195 ms.
    assert 0.09 <= provider.calls[0].started - last_key <= 0.1
    assert service.speculation_snapshot()["started"] == 1


async def test_a_key_that_fits_the_speculative_stream_is_served_from_it() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("eturn a + b",), first_byte=0.15))
    service, _, telemetry = service_on(time, provider)
    learned(time, service)

    # "r", a hesitation of 120 ms (the stream started at 100 ms), then "e": it fits.
    async def typing() -> tuple[Any, Any]:
        service.document_changed("file:///w/add.py")
        text = "def add(a, b):\n    r"
        asked = asyncio.ensure_future(
            service.complete(CompletionRequest(snapshot(text), len(text)))
        )
        await time.sleep(0.12)
        service.document_changed("file:///w/add.py")
        text += "e"
        continued = await service.complete(CompletionRequest(snapshot(text, 2), len(text)))
        return await asked, continued

    superseded, continued = await time.run(typing())

    assert superseded is None
    assert continued is not None and continued.text == "turn a + b"
    assert len(provider.calls) == 1 and provider.calls[0].ended == "completed"
    assert telemetry.snapshot()["requests"]["reused"] == 1
    assert totals(service.speculation_snapshot()) == {"started": 1, "kept": 1, "wasted": 0}


async def test_a_key_that_does_not_fit_cancels_the_speculative_stream_at_its_first_chunk() -> None:
    time = FakeTime()
    replies = [
        Reply(chunks=("eturn", " a + b"), first_byte=0.15, gap=1.0),  # slow after its start
        Reply(chunks=("ise ValueError",), first_byte=0.15),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _, _ = service_on(time, provider)
    learned(time, service)

    async def typing() -> tuple[Any, Any, float]:
        service.document_changed("file:///w/add.py")
        text = "def add(a, b):\n    r"
        asked = asyncio.ensure_future(
            service.complete(CompletionRequest(snapshot(text), len(text)))
        )
        await time.sleep(0.12)  # the speculative stream started at 100 ms
        service.document_changed("file:///w/add.py")
        text += "a"  # "ra...": not what the stream will say
        typed = time.now
        answer = await service.complete(CompletionRequest(snapshot(text, 2), len(text)))
        return await asked, answer, typed

    _, answer, typed = await time.run(typing())

    assert answer is not None and answer.text == "ise ValueError"
    first, second = provider.calls
    # Cancelled at its first chunk (100 + 150 ms), not read for its second second.
    assert first.ended in {"closed", "cancelled"}
    # The next request left the stream at that chunk and waited the full pause from its key
    # (1.6 x ~103 ms x 1.3 right after a letter: ~215 ms), not a speculative one gap, and not
    # for the first stream's end (a second later).
    assert 0.2 <= second.started - typed <= 0.23
    assert totals(service.speculation_snapshot()) == {"started": 1, "kept": 0, "wasted": 1}


async def test_keys_that_keep_a_seat_past_the_pause_do_not_make_a_wasted_stream_kept() -> None:
    time = FakeTime()
    replies = [
        Reply(chunks=("eturn a + b",), first_byte=0.5),  # a slow provider: after the pause
        Reply(chunks=("se b",), first_byte=0.15),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _, _ = service_on(time, provider)
    learned(time, service)

    async def typing() -> Any:
        text = "def add(a, b):\n    r"
        asked = []
        for index, key in enumerate(("", "a", "i")):  # "rai": not what the stream will say
            if index:
                await time.sleep(0.12 if index == 1 else 0.3)
            text += key
            service.document_changed("file:///w/add.py")
            request = CompletionRequest(snapshot(text, index + 1), len(text))
            asked.append(asyncio.ensure_future(service.complete(request)))
        return await asyncio.gather(*asked)

    answers = await time.run(typing())

    assert answers[-1] is not None and answers[-1].text == "se b"
    # "i" came after the pause that ends a burst would have ended, while "a" sat on the
    # stream: the verdict is still the stream's, which did not fit.
    assert totals(service.speculation_snapshot()) == {"started": 1, "kept": 0, "wasted": 1}


async def test_after_a_wasted_start_the_burst_still_ends_at_the_stop_not_the_full_pause() -> None:
    time = FakeTime()
    replies = [
        Reply(chunks=("ise ValueError",), first_byte=0.15),  # a model that mispredicts
        Reply(chunks=(" + f",), first_byte=0.15),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _, _ = service_on(time, provider)
    learned(time, service)

    async def typing() -> tuple[list[Any], float]:
        text = "def add(a, b, c, d, e):\n    "
        asked = []
        last_key = time.now
        for index, key in enumerate("return a + b + c + d + e"):
            if index:
                # A hesitation after "r" (the GAP start goes, and "e" does not fit its
                # stream), then a regular 90 ms.
                await time.sleep(0.12 if index == 1 else 0.09)
            text += key
            service.document_changed("file:///w/add.py")
            last_key = time.now
            request = CompletionRequest(snapshot(text, index + 1), len(text))
            asked.append(asyncio.ensure_future(service.complete(request)))
        return list(await asyncio.gather(*asked)), last_key

    answers, last_key = await time.run(typing())

    assert answers[-1] is not None and answers[-1].text == " + f"
    assert len(provider.calls) == 2
    # The GAP start was wasted; the rest of the burst may not start at a GAP, but at the STOP:
    # just past the document's longest gap (90 ms: the hesitation is over its p95), where
    # the full pause would have waited ~190 ms (1.6 gaps, x 1.3 after a letter).
    assert 0.09 < provider.calls[1].started - last_key <= 0.1
    counts = service.speculation_snapshot()
    assert counts["wasted"] == 1 and counts["stop_started"] == 1


async def test_a_key_arriving_as_the_stream_it_fits_ends_is_served_from_that_stream() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("eturn a + b",), first_byte=0.15), Reply(chunks=("  # no",))]
    provider = ScriptedProvider("local", time, replies)
    service, _, telemetry = service_on(time, provider)

    # "r" asks at once; "e" arrives in the very turn its stream ends, before the request for
    # "r" has shown the suggestion (superseded by "e", it never shows it): the stream is
    # neither in flight nor shown any more (the peers benchmark hit this 1 burst in 15).
    async def typing() -> tuple[Any, Any]:
        text = "def add(a, b):\n    r"
        asked = asyncio.ensure_future(
            service.complete(CompletionRequest(snapshot(text), len(text), invoked=True))
        )
        await time.sleep(0.01)
        (flight,) = list(service._flights)
        typed = text + "e"
        later: list[asyncio.Future[CompletionResult | None]] = []
        key = CompletionRequest(snapshot(typed, 2), len(typed))
        flight.task.add_done_callback(lambda _: later.append(started(service.complete(key))))
        first = await asked
        return first, await later[0]

    superseded, continued = await time.run(typing())

    assert superseded is None
    assert continued is not None and continued.text == "turn a + b"
    assert len(provider.calls) == 1  # no call of its own
    assert telemetry.snapshot()["requests"]["reused"] == 1
