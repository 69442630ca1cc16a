"""OpenAI-compatible micro-batching against the loopback fake: one call with a prompt list,
each caller's own text streamed back, early stop per caller and for the whole batch, errors to all.

Each request's prefix carries a marker (``#3``) and the fake answers every prompt of a list
with the reply for that marker, so a caller that got another caller's text would show it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

import httpx
import pytest

from crucible.config.settings import ProviderKind
from crucible.context.fim import TEMPLATES
from crucible.providers.base import FimRequest
from crucible.providers.errors import BadResponse, ProviderUnavailable
from crucible.providers.openai import OpenAIProvider
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest
from tests.providers.conftest import MakeProvider
from tests.providers.support import FIM, MODEL, collect

OPENAI = ProviderKind.OPENAI
WINDOW_MS = 20
LONG = 6


def request(
    marker: int, max_tokens: int = FIM.max_tokens, stop: tuple[str, ...] = FIM.stop
) -> FimRequest:
    return replace(FIM, prefix=f"# {marker}\n{FIM.prefix}", max_tokens=max_tokens, stop=stop)


def prompt(marker: int) -> str:
    fim = request(marker)
    return TEMPLATES["qwen"].render(fim.prefix, fim.suffix, path=fim.path, extra=fim.extra)


def answer(marker: int) -> str:
    return f"return {marker} * (a + b)"


def reply_by_marker(record: RecordedRequest) -> str:
    """The fake's reply to one prompt: ``answer`` for its marker, 12 times over for markers
    from 100 (120 characters: 30 stream pieces, within max_tokens)."""
    found = re.search(r"# (\d+)\n", record.body["prompt"])
    assert found is not None
    marker = int(found[1])
    return answer(marker) * (LONG if marker >= 100 else 1)


@pytest.fixture(autouse=True)
def _replies(fake: FakeProvider) -> None:
    fake.reply = reply_by_marker


def batched(make: MakeProvider, **overrides: object) -> OpenAIProvider:
    settings = {"batch_window_ms": WINDOW_MS, **overrides}
    provider = make(OPENAI, **settings)
    assert isinstance(provider, OpenAIProvider)
    return provider


async def test_concurrent_prompts_within_the_window_go_out_as_one_call(
    make: MakeProvider, fake: FakeProvider
) -> None:
    provider = batched(make)
    waits: list[tuple[float, ...]] = []
    provider.on_batch = waits.append
    texts = await asyncio.gather(*(collect(provider.stream_fim(request(i))) for i in (1, 2, 3)))
    assert texts == [answer(1), answer(2), answer(3)]
    (call,) = fake.generation_requests()
    qwen = TEMPLATES["qwen"]
    assert call.body == {
        "model": MODEL,
        "prompt": [prompt(1), prompt(2), prompt(3)],
        "max_tokens": FIM.max_tokens,
        "temperature": FIM.temperature,
        "stop": [*qwen.stop, *FIM.stop],
        "stream": True,
    }
    assert call.completed
    (batch,) = waits
    assert len(batch) == 3
    # Each prompt waited at most the window (plus scheduling slack), never negative.
    assert all(0 <= waited <= WINDOW_MS + 50 for waited in batch)


async def test_a_lone_prompt_waits_for_the_window_and_goes_as_a_plain_string(
    make: MakeProvider, fake: FakeProvider
) -> None:
    provider = batched(make)
    waits: list[tuple[float, ...]] = []
    provider.on_batch = waits.append
    assert await collect(provider.stream_fim(request(1))) == answer(1)
    (call,) = fake.generation_requests()
    assert call.body["prompt"] == prompt(1)
    ((waited,),) = waits
    assert waited >= WINDOW_MS * 0.9  # a lone prompt sits out the whole window


async def test_different_sampling_parameters_go_out_as_separate_calls(
    make: MakeProvider, fake: FakeProvider
) -> None:
    provider = batched(make)
    texts = await asyncio.gather(
        collect(provider.stream_fim(request(1))),
        collect(provider.stream_fim(request(2, max_tokens=32))),
        collect(provider.stream_fim(request(3))),
        collect(provider.stream_fim(request(4, stop=("\n",)))),
    )
    assert list(texts) == [answer(1), answer(2), answer(3), answer(4)]
    calls = {
        (call.body["max_tokens"], tuple(call.body["stop"])): call.body["prompt"]
        for call in fake.generation_requests()
    }
    stop = (*TEMPLATES["qwen"].stop, *FIM.stop)
    assert calls == {
        (64, stop): [prompt(1), prompt(3)],
        (32, stop): prompt(2),
        (64, (*TEMPLATES["qwen"].stop, "\n")): prompt(4),
    }


async def test_without_a_window_nothing_is_batched(make: MakeProvider, fake: FakeProvider) -> None:
    provider = make(OPENAI)  # batch_window_ms = 0, the default
    assert isinstance(provider, OpenAIProvider)
    waits: list[tuple[float, ...]] = []
    provider.on_batch = waits.append
    texts = await asyncio.gather(*(collect(provider.stream_fim(request(i))) for i in (1, 2, 3)))
    assert texts == [answer(1), answer(2), answer(3)]
    assert sorted(call.body["prompt"] for call in fake.generation_requests()) == sorted(
        prompt(i) for i in (1, 2, 3)
    )
    assert waits == []


async def test_batch_max_caps_the_prompts_per_call(make: MakeProvider, fake: FakeProvider) -> None:
    provider = batched(make, batch_max=2)
    texts = await asyncio.gather(*(collect(provider.stream_fim(request(i))) for i in range(5)))
    assert texts == [answer(i) for i in range(5)]
    # The two full batches go at once, on two connections: either may arrive first.
    prompts = sorted((call.body["prompt"] for call in fake.generation_requests()), key=str)
    assert prompts == sorted([[prompt(0), prompt(1)], [prompt(2), prompt(3)], prompt(4)], key=str)


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(f"data: {json.dumps(event)}\n\n".encode() for event in events)


def choice(index: int, text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": index, "text": text, "finish_reason": finish}]}


class HeldStream(httpx.AsyncByteStream):
    """An SSE body sent in two parts, the second only once ``release`` is set."""

    def __init__(self, head: bytes, tail: bytes) -> None:
        self.head, self.tail = head, tail
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        await self.release.wait()
        yield self.tail


async def test_each_caller_ends_at_its_own_finish_reason(make: MakeProvider) -> None:
    # The fake sends every finish_reason at the end; a real server sends each when its
    # choice is done, which this hand-written stream does: choice 0 ends, choice 1 goes on.
    body = HeldStream(
        sse(choice(0, "first"), choice(1, "second"), choice(0, "", "stop")),
        sse(choice(1, " goes on"), choice(1, "", "length")) + b"data: [DONE]\n\n",
    )
    sent: list[object] = []

    def respond(http_request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(http_request.content)["prompt"])
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(respond)
    async with httpx.AsyncClient(transport=transport, base_url="http://h:1/v1") as client:
        provider = make(OPENAI, client=client, batch_window_ms=WINDOW_MS)
        first = asyncio.create_task(collect(provider.stream_fim(request(1))))
        second = asyncio.create_task(collect(provider.stream_fim(request(2))))
        assert await asyncio.wait_for(first, 2) == "first"
        assert not second.done()  # its choice has not finished: the stream is held open
        body.release.set()
        assert await asyncio.wait_for(second, 2) == "second goes on"
    assert sent == [[prompt(1), prompt(2)]]


async def test_a_choice_index_outside_the_batch_reaches_every_caller(make: MakeProvider) -> None:
    def respond(http_request: httpx.Request) -> httpx.Response:
        content = sse(choice(0, "ok"), choice(2, "whose?"))
        return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(respond)
    async with httpx.AsyncClient(transport=transport, base_url="http://h:1/v1") as client:
        provider = make(OPENAI, client=client, batch_window_ms=WINDOW_MS)
        results = await asyncio.gather(
            *(collect(provider.stream_fim(request(i))) for i in (1, 2)), return_exceptions=True
        )
    assert [type(result) for result in results] == [BadResponse] * 2
    assert "choice index 2" in str(results[0])


async def test_one_caller_stopping_early_leaves_the_others_streaming(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.inject(Fault(chunk_delay_ms=2), times=1)
    provider = batched(make)

    async def first_chunk_only() -> str:
        async with aclosing(provider.stream_fim(request(101))) as stream:
            return await anext(stream)

    texts = await asyncio.gather(
        first_chunk_only(),
        collect(provider.stream_fim(request(102))),
        collect(provider.stream_fim(request(103))),
    )
    assert list(texts) == [answer(101)[:4], answer(102) * LONG, answer(103) * LONG]
    call = fake.requests[-1]
    assert call.completed and not call.disconnected


async def test_a_cancelled_caller_propagates_and_the_others_complete(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.inject(Fault(chunk_delay_ms=2), times=1)
    provider = batched(make)
    started = asyncio.Event()

    async def read_until_cancelled() -> None:
        async for _ in provider.stream_fim(request(101)):
            started.set()

    cancelled = asyncio.create_task(read_until_cancelled())
    other = asyncio.create_task(collect(provider.stream_fim(request(102))))
    await asyncio.wait_for(started.wait(), 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await other == answer(102) * LONG
    assert fake.requests[-1].completed


async def test_when_every_caller_stops_early_the_connection_is_closed(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.inject(Fault(chunk_delay_ms=5), times=1)
    provider = batched(make)

    async def first_chunk_only(marker: int) -> str:
        async with aclosing(provider.stream_fim(request(marker))) as stream:
            return await anext(stream)

    texts = await asyncio.gather(*(first_chunk_only(i) for i in (101, 102, 103)))
    assert texts == [answer(i)[:4] for i in (101, 102, 103)]
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)
    assert fake.requests[-1].chunks_sent < 30  # of 3 * 30 pieces


async def test_an_http_error_reaches_every_caller(make: MakeProvider, fake: FakeProvider) -> None:
    fake.inject(Fault(status=500), times=1)
    provider = batched(make)
    results = await asyncio.gather(
        *(collect(provider.stream_fim(request(i))) for i in (1, 2, 3)), return_exceptions=True
    )
    assert [type(result) for result in results] == [ProviderUnavailable] * 3
    assert len(fake.generation_requests()) == 1


async def test_a_truncated_stream_reaches_every_caller_still_reading(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.inject(Fault(truncate_after=4), times=1)
    provider = batched(make)
    results = await asyncio.gather(
        *(collect(provider.stream_fim(request(i))) for i in (101, 102)), return_exceptions=True
    )
    assert [type(result) for result in results] == [BadResponse] * 2


async def test_garbage_in_the_stream_reaches_every_caller(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.inject(Fault(garbage=True), times=1)
    provider = batched(make)
    results = await asyncio.gather(
        *(collect(provider.stream_fim(request(i))) for i in (1, 2)), return_exceptions=True
    )
    assert [type(result) for result in results] == [BadResponse] * 2
