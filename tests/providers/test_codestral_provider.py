"""Codestral: the exact requests sent, Mistral's errors, and what the probe reports.

The faults every kind shares are also run against this one in ``test_streaming.py``; here they
are checked in Mistral's own error shapes, with the key never shown.
"""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest

from crucible.config.settings import ProviderKind, default_base_url
from crucible.providers.base import ChatRequest, FimRequest
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
from tests.fakes.provider import FakeProvider, Fault
from tests.providers.conftest import MakeProvider
from tests.providers.support import CHAT, FIM, KEY_ENV, MODEL, collect

CODESTRAL = ProviderKind.CODESTRAL


def test_the_default_base_url_includes_v1() -> None:
    assert default_base_url(CODESTRAL) == "https://codestral.mistral.ai/v1"


async def test_fim_uses_the_native_prompt_and_suffix_fields(
    make: MakeProvider, fake: FakeProvider
) -> None:
    assert await collect(make(CODESTRAL).stream_fim(FIM)) == "return a + b"
    request = fake.requests[-1]
    # base_url ends in /v1: the relative path must land under it, not replace it.
    assert (request.method, request.path) == ("POST", "/v1/fim/completions")
    # No template, no other files: Mistral builds the FIM prompt (and refuses unknown fields).
    assert request.body == {
        "model": MODEL,
        "prompt": FIM.prefix,
        "suffix": FIM.suffix,
        "max_tokens": 64,
        "temperature": 0.1,
        "stream": True,
        "stop": ["\n\n"],
    }
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers


async def test_no_stop_key_when_the_request_has_none(
    make: MakeProvider, fake: FakeProvider
) -> None:
    request = FimRequest(prefix="a", suffix="b", language_id="python", path="a.py")
    await collect(make(CODESTRAL).stream_fim(request))
    assert "stop" not in fake.requests[-1].body


async def test_temperature_is_capped_at_one(make: MakeProvider, fake: FakeProvider) -> None:
    request = FimRequest(prefix="a", suffix="b", language_id="", path="", temperature=1.8)
    await collect(make(CODESTRAL).stream_fim(request))
    assert fake.requests[-1].body["temperature"] == 1.0


async def test_a_base_url_with_a_trailing_slash_works_too(
    make: MakeProvider, fake: FakeProvider
) -> None:
    await collect(make(CODESTRAL, base_url=f"{fake.base_url}/v1/").stream_fim(FIM))
    assert fake.requests[-1].path == "/v1/fim/completions"


async def test_chat_request(make: MakeProvider, fake: FakeProvider) -> None:
    fake.reply = "Wrap the line."
    assert await collect(make(CODESTRAL).stream_chat(CHAT)) == "Wrap the line."
    request = fake.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Explain E501."},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "stream": True,
        "stop": ["END"],
    }


async def test_the_key_is_sent_as_bearer(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = with_key
    assert await collect(make(CODESTRAL, api_key_env=KEY_ENV).stream_fim(FIM)) == "return a + b"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {with_key}"


async def test_a_missing_key_is_mistrals_401(make: MakeProvider, fake: FakeProvider) -> None:
    fake.require_api_key = "needed"
    with pytest.raises(AuthError, match=r"^test-codestral: HTTP 401: Unauthorized$"):
        await collect(make(CODESTRAL).stream_fim(FIM))


async def test_an_unknown_model_is_model_not_found_though_mistral_says_400(
    make: MakeProvider,
) -> None:
    with pytest.raises(ModelNotFound, match="HTTP 400: Invalid model: not-pulled:7b"):
        await collect(make(CODESTRAL, model="not-pulled:7b").stream_fim(FIM))


async def test_closing_the_stream_early_disconnects(make: MakeProvider, fake: FakeProvider) -> None:
    fake.reply = "x = 1\n" * 200
    fake.inject(Fault(chunk_delay_ms=20))
    async with aclosing(make(CODESTRAL).stream_fim(FIM)) as stream:
        assert await anext(stream) == "x = "
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)
    assert fake.requests[-1].chunks_sent < 20


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        pytest.param(Fault(status=500), ProviderUnavailable, "HTTP 500: injected", id="500"),
        pytest.param(Fault(status=401), AuthError, "HTTP 401: injected", id="401"),
        pytest.param(Fault(status=400), BadRequest, "HTTP 400: injected", id="400"),
        pytest.param(Fault(truncate_after=2), BadResponse, "stream broken", id="truncated"),
        pytest.param(Fault(garbage=True), BadResponse, "malformed JSON", id="garbage"),
        pytest.param(
            Fault(error_event="overloaded_error", error_after=1),
            BadResponse,
            "error in stream: injected fault: overloaded_error",
            id="error-event",
        ),
    ],
)
async def test_faults_in_mistrals_shapes_never_show_the_key(
    make: MakeProvider,
    fake: FakeProvider,
    with_key: str,
    fault: Fault,
    error: type[ProviderError],
    message: str,
) -> None:
    fake.inject(fault)
    with pytest.raises(error, match=message) as info:
        await collect(make(CODESTRAL, api_key_env=KEY_ENV).stream_fim(FIM))
    assert with_key not in str(info.value)


async def test_429_carries_retry_after(make: MakeProvider, fake: FakeProvider) -> None:
    fake.inject(Fault(status=429, retry_after=4))
    with pytest.raises(RateLimited, match="HTTP 429: injected") as info:
        await collect(make(CODESTRAL).stream_fim(FIM))
    assert info.value.retry_after == 4.0


async def test_a_hung_request_times_out(make: MakeProvider, fake: FakeProvider) -> None:
    fake.inject(Fault(hang=True))
    async with httpx.AsyncClient(
        base_url=f"{fake.base_url}/v1", timeout=httpx.Timeout(5.0, read=0.1)
    ) as client:
        with pytest.raises(ProviderTimeout, match="read timeout"):
            await collect(make(CODESTRAL, client=client).stream_fim(FIM))
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)


async def test_content_as_a_list_of_chunks_is_read_for_its_text(make: MakeProvider) -> None:
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":[{"type":"thinking","thinking":[]},'
        b'{"type":"text","text":"ok"}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":null},"finish_reason":"stop"}],"usage":{}}\n\n'
        b"data: [DONE]\n\n"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://m/v1", transport=transport) as client:
        assert await collect(make(CODESTRAL, client=client).stream_chat(CHAT)) == "ok"


# -- probe -----------------------------------------------------------------------------------


async def test_probe_finds_the_model(make: MakeProvider, fake: FakeProvider, with_key: str) -> None:
    fake.require_api_key = with_key
    result = await make(CODESTRAL, api_key_env=KEY_ENV).probe()
    assert (result.ok, result.detail) == (True, f"ok: model {MODEL} available")
    request = fake.requests[-1]
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == f"Bearer {with_key}"


async def test_probe_accepts_an_alias(make: MakeProvider) -> None:
    listing = {
        "object": "list",
        "data": [
            {"id": "codestral-2508", "object": "model", "aliases": ["codestral-latest"]},
            {"id": "mistral-small-2503", "object": "model", "aliases": []},
        ],
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=listing))
    async with httpx.AsyncClient(base_url="http://m/v1", transport=transport) as client:
        result = await make(CODESTRAL, client=client, model="codestral-latest").probe()
    assert (result.ok, result.detail) == (
        True,
        "ok: model codestral-latest available (as codestral-2508)",
    )


async def test_probe_of_a_missing_model_lists_what_there_is(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.models = ["codestral-2508", "codestral-2501"]
    result = await make(CODESTRAL, model="codestral-9999").probe()
    assert (result.ok, result.detail) == (
        False,
        "model codestral-9999 not found (has: codestral-2508, codestral-2501)",
    )


async def test_probe_of_a_server_listing_nothing(make: MakeProvider, fake: FakeProvider) -> None:
    fake.models = []
    assert (await make(CODESTRAL).probe()).detail == "the server lists no models"


async def test_probe_says_when_base_url_lacks_v1(make: MakeProvider, fake: FakeProvider) -> None:
    result = await make(CODESTRAL, base_url=fake.base_url).probe()
    assert not result.ok
    assert result.detail.startswith("HTTP 404")
    assert result.detail.endswith("; base_url includes /v1 (https://codestral.mistral.ai/v1)")


async def test_probe_of_a_server_that_is_down(make: MakeProvider, refused_port: int) -> None:
    root = f"http://127.0.0.1:{refused_port}"
    result = await make(CODESTRAL, root=root).probe()
    assert (result.ok, result.detail) == (False, f"connection refused ({root})")


async def test_probe_with_a_wrong_key_never_shows_it(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = "the-right-one"
    result = await make(CODESTRAL, api_key_env=KEY_ENV).probe()
    # /v1/models is shared with the OpenAI family in the fake, hence OpenAI's wording here.
    assert not result.ok
    assert result.detail.startswith("HTTP 401: ")
    assert with_key not in result.detail


async def test_probe_without_a_key_says_which_variable_to_set(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.require_api_key = "needed"
    result = await make(CODESTRAL).probe()
    assert result.detail.endswith("(e.g. MISTRAL_API_KEY)")


async def test_a_long_chat_is_not_cut_by_a_missing_stop(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.reply = "a\n\nb"
    request = ChatRequest(messages=CHAT.messages)
    assert await collect(make(CODESTRAL).stream_chat(request)) == "a\n\nb"
    assert "stop" not in fake.requests[-1].body
