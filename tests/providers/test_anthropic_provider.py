"""Anthropic: the exact requests sent, FIM by a chat prompt, error events, and the probe.

The faults every kind shares are also run against this one in ``test_streaming.py``; here they
are checked in Anthropic's own error shapes, with its ``x-api-key`` never shown.
"""

from __future__ import annotations

import json
from contextlib import aclosing

import httpx
import pytest

from crucible.config.settings import ProviderKind
from crucible.context.snapshot import ContextFile
from crucible.providers.anthropic import API_VERSION, CURSOR, FIM_SYSTEM, fim_prompt
from crucible.providers.base import ChatMessage, ChatRequest, FimRequest
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

ANTHROPIC = ProviderKind.ANTHROPIC


async def test_chat_puts_system_messages_in_the_top_level_field(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.reply = "Wrap the line."
    assert await collect(make(ANTHROPIC).stream_chat(CHAT)) == "Wrap the line."
    request = fake.requests[-1]
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.body == {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Explain E501."}],
        "temperature": 0.3,
        "stream": True,
        "system": "Be brief.",
        "stop_sequences": ["END"],
    }
    assert request.headers["anthropic-version"] == API_VERSION == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "x-api-key" not in request.headers
    assert "authorization" not in request.headers


async def test_no_system_field_without_system_messages(
    make: MakeProvider, fake: FakeProvider
) -> None:
    messages = (
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Why E501?"),
    )
    await collect(make(ANTHROPIC).stream_chat(ChatRequest(messages=messages)))
    body = fake.requests[-1].body
    assert "system" not in body and "stop_sequences" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


async def test_whitespace_stops_are_left_out_and_temperature_capped(
    make: MakeProvider, fake: FakeProvider
) -> None:
    # The API refuses both with 400; the fake does too, so a pass means the request was valid.
    request = ChatRequest(messages=CHAT.messages, temperature=1.7, stop=("\n", " \t", "END", "END"))
    assert await collect(make(ANTHROPIC).stream_chat(request)) == "return a + b"
    body = fake.requests[-1].body
    assert (body["stop_sequences"], body["temperature"]) == (["END"], 1.0)


async def test_the_key_goes_in_x_api_key(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = with_key
    assert await collect(make(ANTHROPIC, api_key_env=KEY_ENV).stream_chat(CHAT)) == "return a + b"
    headers = fake.requests[-1].headers
    assert headers["x-api-key"] == with_key
    assert "authorization" not in headers


async def test_fim_is_asked_for_as_a_chat(make: MakeProvider, fake: FakeProvider) -> None:
    assert await collect(make(ANTHROPIC).stream_fim(FIM)) == "return a + b"
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert request.body == {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": fim_prompt(FIM)}],
        "temperature": 0.1,
        "stream": True,
        "system": FIM_SYSTEM,
        # "\n\n" is whitespace only (refused by the API); a closing fence ends the reply.
        "stop_sequences": ["\n```"],
    }


def test_fim_prompt_shows_other_files_then_the_gap() -> None:
    assert fim_prompt(FIM) == (
        "Other files, for context:\n\n"
        '<file path="src/util.py">\nX = 1\n\n</file>\n\n'
        "Fill in <CURSOR> in src/calc.py (python):\n\n"
        '<file path="src/calc.py">\n'
        f"def add(a, b):\n    {CURSOR}\n\nprint(add(1, 2))\n\n"
        "</file>"
    )
    bare = FimRequest(prefix="a", suffix="b", language_id="", path="")
    assert (
        fim_prompt(bare) == 'Fill in <CURSOR> in this file:\n\n<file path="">\na<CURSOR>b\n</file>'
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 100])
async def test_an_opening_fence_is_dropped_and_a_closing_one_stops(
    make: MakeProvider, fake: FakeProvider, chunk_size: int
) -> None:
    fake.chunk_size = chunk_size
    fake.reply = "```python\nreturn a + b\n```\nExplanation: adds."
    assert await collect(make(ANTHROPIC).stream_fim(FIM)) == "return a + b"


@pytest.mark.parametrize("reply", ["`x` + 1", "``", "```", "return a"])
async def test_text_that_is_no_fence_passes_untouched(
    make: MakeProvider, fake: FakeProvider, reply: str
) -> None:
    fake.chunk_size = 1
    fake.reply = reply
    expected = "" if reply == "```" else reply  # a bare fence line holds no code
    assert await collect(make(ANTHROPIC).stream_fim(FIM)) == expected


async def test_markdown_keeps_its_fences(make: MakeProvider, fake: FakeProvider) -> None:
    fake.reply = "```python\nx = 1\n```\n"
    request = FimRequest(prefix="# Doc\n\n", suffix="", language_id="markdown", path="README.md")
    assert await collect(make(ANTHROPIC).stream_fim(request)) == fake.reply
    assert "stop_sequences" not in fake.requests[-1].body


async def test_closing_a_chat_early_disconnects(make: MakeProvider, fake: FakeProvider) -> None:
    fake.reply = "word " * 200
    fake.inject(Fault(chunk_delay_ms=20))
    async with aclosing(make(ANTHROPIC).stream_chat(CHAT)) as stream:
        assert await anext(stream) == "word"
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)
    assert fake.requests[-1].chunks_sent < 20


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        pytest.param(Fault(status=500), ProviderUnavailable, "HTTP 500: injected", id="500"),
        pytest.param(Fault(status=529), ProviderUnavailable, "HTTP 529: injected", id="529"),
        pytest.param(Fault(status=401), AuthError, "HTTP 401: injected", id="401"),
        pytest.param(Fault(status=404), ModelNotFound, "HTTP 404: injected", id="404"),
        pytest.param(Fault(status=413), BadRequest, "HTTP 413: injected", id="413"),
        pytest.param(Fault(truncate_after=2), BadResponse, "stream broken", id="truncated"),
        pytest.param(Fault(garbage=True), BadResponse, "malformed JSON", id="garbage"),
    ],
)
async def test_faults_in_anthropics_shapes_never_show_the_key(
    make: MakeProvider,
    fake: FakeProvider,
    with_key: str,
    fault: Fault,
    error: type[ProviderError],
    message: str,
) -> None:
    fake.inject(fault)
    with pytest.raises(error, match=message) as info:
        await collect(make(ANTHROPIC, api_key_env=KEY_ENV).stream_chat(CHAT))
    assert with_key not in str(info.value)
    assert fake.requests[-1].headers["x-api-key"] == with_key


async def test_429_carries_retry_after(make: MakeProvider, fake: FakeProvider) -> None:
    fake.inject(Fault(status=429, retry_after=3))
    with pytest.raises(RateLimited, match="HTTP 429: injected") as info:
        await collect(make(ANTHROPIC).stream_chat(CHAT))
    assert info.value.retry_after == 3.0


async def test_a_hung_request_times_out(make: MakeProvider, fake: FakeProvider) -> None:
    fake.inject(Fault(hang=True))
    async with httpx.AsyncClient(
        base_url=fake.base_url, timeout=httpx.Timeout(5.0, read=0.1)
    ) as client:
        with pytest.raises(ProviderTimeout, match="read timeout"):
            await collect(make(ANTHROPIC, client=client).stream_chat(CHAT))
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected, timeout=2)


@pytest.mark.parametrize(
    ("error_type", "error"),
    [
        pytest.param("overloaded_error", ProviderUnavailable, id="overloaded"),
        pytest.param("api_error", ProviderUnavailable, id="api"),
        pytest.param("rate_limit_error", RateLimited, id="rate-limit"),
        pytest.param("timeout_error", ProviderTimeout, id="timeout"),
        pytest.param("permission_error", AuthError, id="permission"),
        pytest.param("invalid_request_error", BadRequest, id="invalid-request"),
        pytest.param("something_new_error", BadResponse, id="unknown"),
    ],
)
async def test_an_error_event_mid_stream_is_typed(
    make: MakeProvider, fake: FakeProvider, error_type: str, error: type[ProviderError]
) -> None:
    fake.reply = "return a + b"
    fake.inject(Fault(error_event=error_type, error_after=2))
    received: list[str] = []
    with pytest.raises(error) as info:
        async with aclosing(make(ANTHROPIC).stream_chat(CHAT)) as stream:
            async for chunk in stream:
                received.append(chunk)
    assert received == ["retu", "rn a"]  # what came before the error was delivered
    assert type(info.value) is error
    assert info.value.message == f"error in stream: {error_type}: injected fault: {error_type}"
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after is None  # no header mid-stream


async def test_unknown_model_is_model_not_found(make: MakeProvider) -> None:
    with pytest.raises(ModelNotFound, match="HTTP 404: model: claude-nope"):
        await collect(make(ANTHROPIC, model="claude-nope").stream_chat(CHAT))


def _sse(*events: dict[str, object]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


async def test_only_text_deltas_are_text_and_message_stop_ends_the_stream(
    make: MakeProvider,
) -> None:
    body = _sse(
        {"type": "message_start", "message": {"id": "msg_1", "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text"}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
        {"type": "message_stop"},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "after"}},
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://a", transport=transport) as client:
        assert await collect(make(ANTHROPIC, client=client).stream_chat(CHAT)) == "ok"


async def test_a_stream_ending_before_message_stop_is_a_bad_response(make: MakeProvider) -> None:
    delta = {"type": "text_delta", "text": "ok"}
    body = _sse({"type": "message_start"}, {"type": "content_block_delta", "delta": delta})

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://a", transport=transport) as client:
        with pytest.raises(BadResponse, match=r"stream ended early \(no message_stop\)"):
            await collect(make(ANTHROPIC, client=client).stream_chat(CHAT))


# -- probe -----------------------------------------------------------------------------------


async def test_probe_asks_for_the_model_by_name(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = with_key
    result = await make(ANTHROPIC, api_key_env=KEY_ENV).probe()
    assert (result.ok, result.detail) == (True, f"ok: model {MODEL} available")
    request = fake.requests[-1]
    assert (request.method, request.path) == ("GET", "/v1/models/qwen2.5-coder%3A1.5b-base")
    assert request.headers["x-api-key"] == with_key
    assert request.headers["anthropic-version"] == API_VERSION
    assert fake.generation_requests() == []  # the probe costs no tokens


async def test_probe_of_a_missing_model(make: MakeProvider, fake: FakeProvider) -> None:
    fake.models = ["claude-other"]
    result = await make(ANTHROPIC, model="claude-nope").probe()
    assert (result.ok, result.detail) == (
        False,
        "model claude-nope not found (HTTP 404: model: claude-nope)",
    )


async def test_probe_says_when_base_url_has_a_v1_too_many(
    make: MakeProvider, fake: FakeProvider
) -> None:
    result = await make(ANTHROPIC, base_url=f"{fake.base_url}/v1").probe()
    assert not result.ok
    assert result.detail.endswith("; base_url is the API root, without /v1")


async def test_probe_of_a_server_that_is_down(make: MakeProvider, refused_port: int) -> None:
    root = f"http://127.0.0.1:{refused_port}"
    result = await make(ANTHROPIC, root=root).probe()
    assert (result.ok, result.detail) == (False, f"connection refused ({root})")


async def test_probe_with_a_wrong_key_never_shows_it(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = "sk-ant-the-right-one"
    result = await make(ANTHROPIC, api_key_env=KEY_ENV).probe()
    assert (result.ok, result.detail) == (False, "HTTP 401: invalid x-api-key")
    assert with_key not in result.detail


async def test_probe_without_a_key_says_which_variable_to_set(
    make: MakeProvider, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.require_api_key = "sk-ant-needed"
    result = await make(ANTHROPIC).probe()
    assert result.detail == (
        "HTTP 401: x-api-key header is required; no API key: set api_key_env to the NAME of"
        " a variable holding it (e.g. ANTHROPIC_API_KEY)"
    )
    monkeypatch.delenv(KEY_ENV, raising=False)
    result = await make(ANTHROPIC, api_key_env=KEY_ENV).probe()
    assert result.detail.endswith(f"; the environment variable {KEY_ENV} (api_key_env) is not set")


async def test_an_echoed_key_is_masked(make: MakeProvider, with_key: str) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-api-key"]
        error = {"type": "authentication_error", "message": f"invalid x-api-key {key}"}
        return httpx.Response(401, json={"type": "error", "error": error})

    transport = httpx.MockTransport(echo)
    async with httpx.AsyncClient(base_url="http://a", transport=transport) as client:
        provider = make(ANTHROPIC, client=client, api_key_env=KEY_ENV)
        with pytest.raises(AuthError) as info:
            await collect(provider.stream_chat(CHAT))
        assert info.value.message == "HTTP 401: invalid x-api-key ***"
        assert with_key not in (await provider.probe()).detail


def test_other_files_keep_their_paths() -> None:
    request = FimRequest(
        prefix="",
        suffix="",
        language_id="go",
        path="main.go",
        extra=(ContextFile("a.go", "package a"), ContextFile("b.go", "package b")),
    )
    prompt = fim_prompt(request)
    assert prompt.index('<file path="a.go">') < prompt.index('<file path="b.go">')
    assert prompt.endswith(
        'Fill in <CURSOR> in main.go (go):\n\n<file path="main.go">\n<CURSOR>\n</file>'
    )
