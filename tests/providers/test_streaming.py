"""Every kind against the loopback fake: streamed text, early stop, and each error mapping."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import httpx
import pytest

from crucible.config.settings import ProviderKind
from crucible.providers.errors import (
    AuthError,
    BadRequest,
    BadResponse,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from crucible.providers.registry import create_provider
from tests.fakes.provider import FakeProvider, Fault
from tests.providers.conftest import MakeProvider
from tests.providers.support import CHAT, FIM, KEY_ENV, KINDS, collect, settings_for

LONG_REPLY = "x = 1\n" * 200


@pytest.mark.parametrize("kind", KINDS)
async def test_fim_text_is_reassembled_from_the_stream(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.reply = "return a + b  # done"
    assert await collect(make(kind).stream_fim(FIM)) == "return a + b  # done"
    assert fake.requests[-1].chunks_sent == 5
    assert fake.requests[-1].completed


@pytest.mark.parametrize("kind", KINDS)
async def test_chat_text_is_reassembled_from_the_stream(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.reply = "Line too long: wrap it."
    assert await collect(make(kind).stream_chat(CHAT)) == "Line too long: wrap it."


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_the_stream_early_disconnects(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.reply = LONG_REPLY
    fake.inject(Fault(chunk_delay_ms=5))
    async with aclosing(make(kind).stream_fim(FIM)) as stream:
        assert await anext(stream) == "x = "
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)
    assert fake.requests[-1].chunks_sent < 20


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelling_the_reader_disconnects_and_propagates(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.reply = LONG_REPLY
    fake.inject(Fault(chunk_delay_ms=5))
    first_chunk = asyncio.Event()

    async def read() -> None:
        async with aclosing(make(kind).stream_chat(CHAT)) as stream:
            async for _ in stream:
                first_chunk.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first_chunk.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_deadline_around_a_hung_request_disconnects(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.inject(Fault(hang=True))
    task = asyncio.create_task(collect(make(kind).stream_fim(FIM)))
    # The deadline runs from the request's arrival: on a loaded machine merely sending it can
    # take longer than the deadline, and a request never sent proves nothing.
    assert await fake.wait_for_async(lambda f: bool(f.generation_requests()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 0.1)
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        pytest.param(Fault(status=401), AuthError, "HTTP 401: injected fault", id="401"),
        pytest.param(Fault(status=403), AuthError, "HTTP 403", id="403"),
        pytest.param(Fault(status=404), ModelNotFound, "HTTP 404", id="404"),
        pytest.param(Fault(status=400), BadRequest, "HTTP 400", id="400"),
        pytest.param(Fault(status=500), ProviderUnavailable, "HTTP 500: injected", id="500"),
        pytest.param(Fault(status=503), ProviderUnavailable, "HTTP 503", id="503"),
        pytest.param(Fault(truncate_after=2), BadResponse, "stream broken", id="truncated"),
        pytest.param(Fault(garbage=True), BadResponse, "malformed JSON", id="garbage"),
    ],
)
async def test_errors_are_typed_and_never_show_the_key(
    make: MakeProvider,
    fake: FakeProvider,
    with_key: str,
    kind: ProviderKind,
    fault: Fault,
    error: type[ProviderError],
    message: str,
) -> None:
    fake.inject(fault)
    provider = make(kind, api_key_env=KEY_ENV)
    with pytest.raises(error, match=message) as info:
        await collect(provider.stream_fim(FIM))
    assert info.value.provider == f"test-{kind}"
    assert with_key not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_rate_limit_carries_retry_after(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.inject(Fault(status=429, retry_after=7))
    with pytest.raises(RateLimited) as info:
        await collect(make(kind).stream_fim(FIM))
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_event_mid_stream_is_a_provider_error(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    # The status was 200 and text has flowed: the error arrives as one more event.
    fake.inject(Fault(error_event="overloaded_error", error_after=1))
    received: list[str] = []
    with pytest.raises(ProviderError, match="error in stream") as info:
        async with aclosing(make(kind).stream_fim(FIM)) as stream:
            async for chunk in stream:
                received.append(chunk)
    assert received == ["retu"]
    assert "injected fault: overloaded_error" in info.value.message
    # Only Anthropic's error events carry a type worth mapping; the others' are BadResponse.
    expected = ProviderUnavailable if kind is ProviderKind.ANTHROPIC else BadResponse
    assert type(info.value) is expected


# llama.cpp serves the model it loaded whatever the name; its 404s are routes (covered above).
@pytest.mark.parametrize(
    "kind",
    [ProviderKind.OLLAMA, ProviderKind.OPENAI, ProviderKind.ANTHROPIC, ProviderKind.CODESTRAL],
)
async def test_unknown_model_is_model_not_found(make: MakeProvider, kind: ProviderKind) -> None:
    with pytest.raises(ModelNotFound, match="not-pulled"):
        await collect(make(kind, model="not-pulled:7b").stream_chat(CHAT))


@pytest.mark.parametrize("kind", KINDS)
async def test_connection_refused_is_unavailable_and_names_the_server(
    kind: ProviderKind, refused_port: int
) -> None:
    root = f"http://127.0.0.1:{refused_port}"
    provider = create_provider(settings_for(kind, root))
    try:
        with pytest.raises(ProviderUnavailable, match=rf"connection refused \({root}\)"):
            await collect(provider.stream_fim(FIM))
    finally:
        await provider.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_no_data_within_the_read_timeout_is_a_provider_timeout(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    fake.inject(Fault(hang=True))
    base_url = settings_for(kind, fake.base_url).base_url
    # Only the read is short: a connect on a loaded machine may take longer than 0.1 s.
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(5.0, read=0.1)) as client:
        with pytest.raises(ProviderTimeout, match="read timeout"):
            await collect(make(kind, client=client).stream_fim(FIM))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_finished_stream_leaves_its_connection_for_the_next_request(
    make: MakeProvider, fake: FakeProvider, kind: ProviderKind
) -> None:
    streams: list[object] = []

    async def remember(response: httpx.Response) -> None:
        streams.append(response.extensions["network_stream"])

    base_url = settings_for(kind, fake.base_url).base_url
    async with httpx.AsyncClient(base_url=base_url, event_hooks={"response": [remember]}) as client:
        provider = make(kind, client=client)
        await collect(provider.stream_fim(FIM))
        await collect(provider.stream_fim(FIM))
    assert streams[0] is streams[1]
