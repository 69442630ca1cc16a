"""Speculative start (issue 16), through the real server: a burst typed at ~100 ms gaps gets
its provider call when a pause begins (one gap after the last key), sooner than the pause that
ends a burst; a key that does not fit the speculative stream has it cancelled at its first
chunk; and a prefetch in flight never delays the answer the user waits for, even with a
provider that serves one request at a time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

pytestmark = pytest.mark.e2e

START = "def area(width, height):\n"
LINE = "    return width * height"


def _rest_of_line(record: RecordedRequest) -> str:
    """A model that knows the line being typed: the rest of LINE after the prompt's last line."""
    prompt = record.body.get("prompt", "") if isinstance(record.body, dict) else ""
    typed = prompt.rsplit("\n", 1)[-1]
    return LINE[len(typed) :] if LINE.startswith(typed) else " + 1 + 2 + 3 + 4  # wrong"


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply=_rest_of_line) as provider:
        yield provider


async def _type(editor: Editor, keys: str, gap_s: float) -> tuple[list[asyncio.Future[Any]], float]:
    """Type ``keys`` on an absolute schedule, a request per key; when the last key was sent."""
    asked: list[asyncio.Future[Any]] = []
    due = time.monotonic()
    last = due
    for index, key in enumerate(keys):
        if index:
            due += gap_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        editor.type(key)
        last = time.monotonic()
        asked.append(editor.request())
    return asked, last


async def test_a_burst_at_100_ms_gaps_is_asked_for_one_gap_after_its_last_key(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(latency_ms=150))  # a provider's time to first byte, every call
    options = provider_options(fake, debounce_ms=150)  # adaptive, the default starting point
    async with lsp_session(options) as client:
        await server_status(client)
        editor = Editor(client, open_document(client, START), START)
        asked, last_key = await _type(editor, LINE, 0.1)
        answers = await asyncio.wait_for(asyncio.gather(*asked), 10)
        status = await server_status(client)

    # The last key's request gets the rest of the line (nothing: the line is complete) or a
    # fitting suggestion; what matters is when the call that answered it started.
    assert all(text == "" or LINE.endswith(text) for a in answers if a for text in texts(a))
    calls = fake.generation_requests()
    assert calls, "no provider call"
    # The pause that ends a burst waits 1.6 gaps x 1.3 right after a letter (~210 ms) after
    # the last key; the speculative start one gap (~100 ms). The answer comes from a call
    # started before then: after the last key, or one started mid-burst that still fit.
    assert calls[-1].received_at - last_key < 0.17
    assert status["scheduling"]["speculative_started"] >= 1
    # With a model that knows the line, nothing started speculatively was wasted.
    assert status["scheduling"]["speculative_wasted"] == 0
    assert len(calls) <= 2  # a speculative call mid-burst continues: no call per key


async def test_a_key_that_does_not_fit_cancels_the_speculative_stream(
    fake: FakeProvider, lsp_session: Session
) -> None:
    # debounce_ms is the adaptive mode's prior: 480 ms = 1.6 gaps of 300 ms, the rhythm typed
    # below, so the rhythm learnt is 300 ms from the first key; the longest pause is raised
    # past the 624 ms the rhythm asks for after a letter (1.6 x 300 x 1.3).
    options = provider_options(fake, debounce_ms=480, debounce_max_ms=2000)
    async with lsp_session(options) as client:
        await server_status(client)
        editor = Editor(client, open_document(client, START), START)
        # A rhythm of 300 ms: a pause begins ~300 ms after a key and ends ~620 ms after it.
        asked, _ = await _type(editor, "    return wid", 0.3)
        await asyncio.wait_for(asyncio.gather(*asked), 10)
        fake.reset()
        # Slow and wrong: the speculative stream after "q" says " + 1 ...", one chunk at a time.
        fake.inject(Fault(latency_ms=300, chunk_delay_ms=300))
        editor.type("q")
        first = editor.request()
        # The speculative call, when the pause begins; the next key goes at once, ~320 ms
        # before the pause would end (waiting a fixed 0.3 s left ~100 ms either side).
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 1, 10)
        editor.type("z")  # does not fit " + 1 ..."
        answer = await asyncio.wait_for(editor.request(), 10)
        await asyncio.wait_for(first, 10)
        speculative = fake.generation_requests()[0]
        assert await fake.wait_for_async(lambda f: speculative.finished_at is not None)
        status = await server_status(client)

    # Cancelled at its first chunk, not read to its end.
    assert speculative.disconnected and not speculative.completed
    assert status["scheduling"]["speculative_wasted"] == 1
    assert answer is not None  # the request after "z" was answered (by a call of its own)
    assert len(fake.generation_requests()) == 2


async def test_a_prefetch_in_flight_never_delays_the_answer_the_user_waits_for(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.slots = 1  # one request generates at a time, the others queue
    options = provider_options(fake, cache={"prefetch": "on"})
    async with lsp_session(options) as client:
        # A suggestion accepted first (in another document), so that prefetch pays (no
        # prefetch before a use is measured); nothing of it is running any more.
        text = START + "    return "
        accepted = Editor(client, open_document(client, text, name="accepted.py"), text)
        accepted.type(texts(await asyncio.wait_for(accepted.request(invoked=True), 10))[0])
        await asyncio.wait_for(accepted.request(invoked=True), 10)
        assert await fake.wait_for_async(
            lambda f: all(r.completed for r in f.generation_requests())
        )
        assert (await server_status(client))["prefetch"]["measured_used"] == 1
        before = len(fake.generation_requests())
        # The first call is answered at once; the prefetch of what follows its suggestion,
        # which comes next, holds the one slot for 5 s.
        fake.inject(Fault(), times=1)
        fake.inject(Fault(latency_ms=5000), times=1)
        editor = Editor(client, open_document(client, START + "    return "), START + "    return ")
        shown = await asyncio.wait_for(editor.request(invoked=True), 10)
        assert texts(shown) == ["width * height"]
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == before + 2)
        editor.type("h")  # not the suggestion: the user wants something else
        asked = time.monotonic()
        answer = await asyncio.wait_for(editor.request(invoked=True), 10)
        answered = time.monotonic() - asked
        status = await server_status(client)

    prefetch, request = fake.generation_requests()[before + 1 : before + 3]
    assert status["requests"]["prefetched"] >= 1
    assert prefetch.disconnected and not prefetch.completed  # it made way
    # The user's request was admitted to the slot as soon as it arrived, not after the
    # prefetch's 5 s: the prefetch added nothing to its wait.
    assert request.admitted_at is not None and request.admitted_at - request.received_at < 1.0
    assert answered < 2.0
    assert answer is not None
