"""providers/http.py on its own: client settings, status mapping, stream parsing, Retry-After."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator

import httpx
import pytest

from crucible.config.settings import ProviderSettings
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
from crucible.providers.http import (
    api_key,
    check_status,
    decode_object,
    make_client,
    missing_key_hint,
    parse_object,
    parse_retry_after,
)
from crucible.providers.streams import iter_ndjson, iter_sse_data
from tests.providers.support import KEY_ENV


def response(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    sent: dict[str, str] | None = None,
) -> httpx.Response:
    """A response to a request that sent ``sent`` (by default a Bearer key)."""
    sent = {"Authorization": "Bearer sk-echoed-secret"} if sent is None else sent
    request = httpx.Request("POST", "http://h:1/v1/completions", headers=sent)
    return httpx.Response(status, content=body, headers=headers, request=request)


def streamed(body: bytes) -> httpx.Response:
    """A response whose body arrives in small pieces, as over a socket."""

    class Pieces(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for start in range(0, len(body), 5):
                yield body[start : start + 5]

    return httpx.Response(200, stream=Pieces(), request=httpx.Request("GET", "http://h:1/"))


async def test_client_settings() -> None:
    settings = ProviderSettings(base_url="http://h:1/v1", connect_timeout_ms=250, max_connections=3)
    client = make_client(settings)
    try:
        assert client.build_request("GET", "models").url == "http://h:1/v1/models"
        assert client.timeout == httpx.Timeout(connect=0.25, read=30, write=10, pool=5)
        assert client.trust_env is False
    finally:
        await client.aclose()


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-abc")
    assert api_key(ProviderSettings(api_key_env=KEY_ENV)) == "sk-abc"
    assert api_key(ProviderSettings()) is None
    monkeypatch.setenv(KEY_ENV, "")
    assert api_key(ProviderSettings(api_key_env=KEY_ENV)) is None


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        pytest.param(
            401, b'{"error": "unauthorized"}', AuthError, "HTTP 401: unauthorized", id="401"
        ),
        pytest.param(403, b"", AuthError, "HTTP 403: Forbidden", id="403-empty"),
        pytest.param(
            404,
            b'{"error": "model \\"x\\" not found"}',
            ModelNotFound,
            'HTTP 404: model "x" not found',
            id="404-ollama",
        ),
        pytest.param(
            404,
            b'{"error": {"message": "The model `x` does not exist", "type": "invalid"}}',
            ModelNotFound,
            "HTTP 404: The model `x` does not exist",
            id="404-openai",
        ),
        pytest.param(408, b"", ProviderTimeout, "HTTP 408: Request Timeout", id="408"),
        pytest.param(422, b"bad field\nmore", BadRequest, "HTTP 422: bad field", id="422-text"),
        pytest.param(
            500,
            b"<html>oops</html>",
            ProviderUnavailable,
            "HTTP 500: <html>oops</html>",
            id="500-html",
        ),
        pytest.param(
            502, b'{"message": "upstream"}', ProviderUnavailable, "HTTP 502: upstream", id="502"
        ),
        pytest.param(
            529,
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            ProviderUnavailable,
            "HTTP 529: Overloaded",
            id="529-anthropic",
        ),
        pytest.param(
            400,
            b'{"object":"error","message":"Invalid model: x","type":"invalid_model"}',
            BadRequest,
            "HTTP 400: Invalid model: x",
            id="400-mistral-unmapped",
        ),
        pytest.param(
            422,
            b'{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body",'
            b'"store"],"msg":"Extra inputs are not permitted","input":false}]},"type":"x"}',
            BadRequest,
            "HTTP 422: body.store: Extra inputs are not permitted",
            id="422-mistral",
        ),
        pytest.param(
            422,
            b'{"detail":[{"loc":["body","a"],"msg":"bad"},{"loc":["body","b"],"msg":"worse"}]}',
            BadRequest,
            "HTTP 422: body.a: bad; body.b: worse",
            id="422-fastapi",
        ),
    ],
)
async def test_status_mapping(
    status: int, body: bytes, error: type[ProviderError], message: str
) -> None:
    with pytest.raises(error) as info:
        await check_status("p", response(status, body))
    assert info.value.message == message
    assert str(info.value) == f"p: {message}"


async def test_success_passes() -> None:
    await check_status("p", response(204))


async def test_an_echoed_key_is_masked() -> None:
    body = b'{"error": {"message": "Incorrect API key provided: sk-echoed-secret"}}'
    with pytest.raises(AuthError) as info:
        await check_status("p", response(401, body))
    assert "sk-echoed-secret" not in str(info.value)
    assert info.value.message == "HTTP 401: Incorrect API key provided: ***"


async def test_an_echoed_x_api_key_is_masked() -> None:
    body = b'{"type":"error","error":{"type":"authentication_error","message":"bad sk-ant-k3y"}}'
    sent = {"x-api-key": "sk-ant-k3y", "anthropic-version": "2023-06-01"}
    with pytest.raises(AuthError) as info:
        await check_status("p", response(401, body, sent=sent))
    assert info.value.message == "HTTP 401: bad ***"


async def test_error_types_override_the_status() -> None:
    body = b'{"object":"error","message":"Invalid model: x","type":"invalid_model","code":"1500"}'
    types: dict[str, type[ProviderError]] = {"invalid_model": ModelNotFound}
    with pytest.raises(ModelNotFound, match="HTTP 400: Invalid model: x"):
        await check_status("p", response(400, body), error_types=types)
    nested = b'{"error":{"type":"invalid_model","message":"m"}}'
    with pytest.raises(ModelNotFound):
        await check_status("p", response(400, nested), error_types=types)
    with pytest.raises(BadRequest):
        await check_status("p", response(400, b'{"type":"other"}'), error_types=types)


def test_missing_key_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert missing_key_hint(ProviderSettings(), "X_KEY").endswith("(e.g. X_KEY)")
    unset = missing_key_hint(ProviderSettings(api_key_env=KEY_ENV), "X_KEY")
    assert unset == f"; the environment variable {KEY_ENV} (api_key_env) is not set"
    monkeypatch.setenv(KEY_ENV, "sk-set")
    assert missing_key_hint(ProviderSettings(api_key_env=KEY_ENV), "X_KEY") == ""


def test_parse_object_leaves_error_objects_to_the_caller() -> None:
    event = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert parse_object("p", event)["error"]["type"] == "overloaded_error"
    with pytest.raises(BadResponse, match="error in stream: Overloaded"):
        decode_object("p", event)


async def test_a_long_error_body_is_capped() -> None:
    with pytest.raises(BadRequest) as info:
        await check_status("p", response(400, b"x" * 100_000))
    assert len(info.value.message) < 400


async def test_rate_limit_retry_after_in_seconds() -> None:
    with pytest.raises(RateLimited) as info:
        await check_status("p", response(429, b"{}", {"Retry-After": "2.5"}))
    assert info.value.retry_after == 2.5


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now + 12, usegmt=True), now) == 12.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def sse(body: bytes, *, until_done: bool = True) -> list[str]:
    return [data async for data in iter_sse_data("p", streamed(body), until_done=until_done)]


async def test_sse_events_comments_and_multi_line_data() -> None:
    body = (
        b": keep-alive comment\n\n"
        b'event: message\nid: 1\ndata: {"a":1}\n\n'
        b"data:first\ndata: second\r\n\r\n"
        b"retry: 10\n\n"
        b"data: [DONE]\n\n"
        b"data: after the end\n\n"
    )
    assert await sse(body) == ['{"a":1}', "first\nsecond"]


async def test_sse_without_done_is_truncated() -> None:
    with pytest.raises(BadResponse, match=r"stream ended early \(no \[DONE\]\)"):
        await sse(b'data: {"a":1}\n\n')


async def test_sse_without_done_is_fine_for_formats_that_end_otherwise() -> None:
    # The event cut off before its blank line is dropped, as the SSE rules say.
    assert await sse(b"data: one\n\ndata: cut", until_done=False) == ["one"]


async def test_ndjson_stops_at_done() -> None:
    body = b'{"response":"a","done":false}\n\n{"response":"b","done":true}\n{"response":"c"}\n'
    objects = [obj async for obj in iter_ndjson("p", streamed(body))]
    assert [obj["response"] for obj in objects] == ["a", "b"]


async def test_ndjson_without_done_is_truncated() -> None:
    with pytest.raises(BadResponse, match="stream ended early"):
        [obj async for obj in iter_ndjson("p", streamed(b'{"response":"a","done":false}\n'))]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('{"a": ', "malformed JSON", id="malformed"),
        pytest.param("[1, 2]", "expected a JSON object, got list", id="not-an-object"),
        pytest.param(
            '{"error": "model crashed"}', "error in stream: model crashed", id="ollama-error"
        ),
        pytest.param(
            '{"error": {"message": "slot gone"}}', "error in stream: slot gone", id="openai-error"
        ),
    ],
)
def test_decode_object_failures(text: str, message: str) -> None:
    with pytest.raises(BadResponse, match=message):
        decode_object("p", text)
