"""The shared HTTP plumbing of every wire format: client, auth, error mapping, JSON bodies.

This module owns the connection pool (``make_client``), the API key and its headers, the
decoding of one JSON object (a body, or an event once ``providers/streams.py`` has framed it),
and the translation of httpx's exceptions and HTTP
statuses into the typed tree of ``providers/errors.py`` (``raise … from exc``)::

    httpx.TimeoutException (connect, read, write, pool)   -> ProviderTimeout
    httpx transport error before the response              -> ProviderUnavailable
    HTTP 3xx (redirects are never followed)                -> ProviderUnavailable
    HTTP 401, 403                                          -> AuthError
    HTTP 404                                               -> ModelNotFound
    HTTP 408                                               -> ProviderTimeout
    HTTP 429                                               -> RateLimited (retry_after: from
                                                              Retry-After, else the gateway's
                                                              x-ratelimit-reset-*)
    HTTP 5xx                                               -> ProviderUnavailable
    other HTTP 4xx                                         -> BadRequest
    an error body whose ``type`` the caller maps           -> the caller's error (``error_types``)
    malformed JSON, an error object in a body or event     -> BadResponse
    a JSON body over ``BODY_LIMIT`` bytes                  -> BadResponse (body over N bytes)

Errors of a started stream (a transport error while reading it, a stream that ends without its
terminator) are ``providers/streams.py``'s; with this module it is the only one that knows
httpx's exceptions. The requests themselves are ``HttpProvider``'s (``providers/http_provider.py``),
built on these functions.

Messages name the server's origin and quote the server's own error text, never request headers,
and any API key the server echoes back (``Authorization: Bearer`` or ``x-api-key``) is masked,
so errors are safe to log and to show.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx

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
from crucible.providers.rate_limits import refusal_pause

log = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 4096  # bytes of an error body read to find the server's message
# Largest non-streamed JSON body read whole (model listings, health): the biggest listing
# seen, OpenRouter's ~300 models with descriptions, is under 2 MB; a server sending more is
# refused after this many bytes instead of being buffered to its end.
BODY_LIMIT = 8 << 20
_MESSAGE_LIMIT = 300  # characters of that message kept


def make_client(settings: ProviderSettings) -> httpx.AsyncClient:
    """One long-lived client (connection pool) for one provider.

    The timeouts here only catch a dead socket: read is per chunk, not per request. The
    per-request deadline is the caller's (``asyncio.timeout`` around the whole stream), because
    it depends on the feature (an inline completion is worth far less time than a chat answer).
    ``trust_env=False``: local traffic must never go through a proxy from the environment, and
    an API key must never be sent to one. ``follow_redirects=False`` (httpx's default, pinned):
    a redirect would carry the request, and every header set on it, to wherever the provider
    points; httpx drops ``Authorization`` on a cross-origin redirect but not ``x-api-key``
    (Anthropic's header), so the key goes only to the configured origin, and a redirect is
    an error naming where it pointed.
    """
    return httpx.AsyncClient(
        base_url=settings.base_url,
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=60,
        ),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_ms / 1000, read=30, write=10, pool=5
        ),
        trust_env=False,
        follow_redirects=False,
    )


async def close_idle_connections(client: httpx.AsyncClient) -> int:
    """Close the keep-alive connections of ``client``'s pool that carry no request now; those
    streaming an answer are untouched. Returns how many were closed.

    httpx has no public call for this (idle connections go only when ``keepalive_expiry``
    passes or the client closes), and rebuilding the client would have to wait for every
    stream on the old one. httpcore's pool lists its connections publicly, and each says
    whether it is idle; only the way to the pool (the transport's ``_pool``) is private, so a
    client whose transport is another (a test's ``MockTransport``) has nothing closed. Closing
    marks a connection closed before any await, so no request can take it meanwhile; one
    already handed it finds it unavailable and httpcore opens another; the pool drops closed
    connections on its next request.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool):
        return 0
    idle = [c for c in pool.connections if c.is_idle() and not c.is_closed()]
    for connection in idle:
        await connection.aclose()
    return len(idle)


def api_key(settings: ProviderSettings, env: Mapping[str, str] = os.environ) -> str | None:
    """The key in the environment variable ``settings.api_key_env`` names, if set and non-empty.
    ``env`` is the editor's environment: the process's own, or in the shared daemon the one
    the session's client sent (``shared/handshake.py``)."""
    if not settings.api_key_env:
        return None
    return env.get(settings.api_key_env) or None


def auth_headers(settings: ProviderSettings, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``Authorization: Bearer`` when a key is configured; no header at all otherwise."""
    key = api_key(settings, env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def missing_key_hint(
    settings: ProviderSettings, usual_env: str, env: Mapping[str, str] = os.environ
) -> str:
    """Why no key was sent, for an auth error from a hosted API; "" when a key was sent.

    Names the variable, never a value: the point is to say which name to set.
    """
    if api_key(settings, env) is not None:
        return ""
    if settings.api_key_env:
        return f"; the environment variable {settings.api_key_env} (api_key_env) is not set"
    return f"; no API key: set api_key_env to the NAME of a variable holding it (e.g. {usual_env})"


@asynccontextmanager
async def map_errors(provider: str) -> AsyncIterator[None]:
    """Translate httpx exceptions raised inside the block into ``ProviderError``s."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(provider, describe_error(exc)) from exc
    except httpx.DecodingError as exc:
        raise BadResponse(provider, describe_error(exc)) from exc
    except httpx.RequestError as exc:
        raise ProviderUnavailable(provider, describe_error(exc)) from exc


async def check_status(
    provider: str,
    response: httpx.Response,
    *,
    error_types: Mapping[str, type[ProviderError]] | None = None,
) -> None:
    """Raise the typed error for a non-2xx response, quoting the server's own message.

    Works on streaming responses: at most ``ERROR_BODY_LIMIT`` bytes of the body are read.
    ``error_types`` maps the error ``type`` a format's body names to the error to raise instead
    of the status's, for formats whose status alone misleads (Mistral answers an unknown model
    with 400 ``invalid_model``, which is not a request that could be fixed by rewording).
    """
    if response.is_success:
        return
    status = response.status_code
    text, kind = await _error_detail(response)
    detail = _redact(text, response.request)
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    special = error_types.get(kind) if error_types and kind else None
    if special is not None:
        raise special(provider, message)
    if response.is_redirect:
        raise ProviderUnavailable(provider, _redirect_message(status, response))
    if status in (401, 403):
        raise AuthError(provider, message)
    if status == 404:
        raise ModelNotFound(provider, message)
    if status == 408:
        raise ProviderTimeout(provider, message)
    if status == 429:
        now = time.time()
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is None:  # a gateway's own words: x-ratelimit-reset-requests …
            pause = refusal_pause(response.headers, now)
            if pause is not None:
                raise RateLimited(provider, message, pause.seconds, pause.window)
        raise RateLimited(provider, message, retry_after)
    if status >= 500:
        raise ProviderUnavailable(provider, message)
    raise BadRequest(provider, message)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive parse means it said so
        return None
    return max(0.0, when.timestamp() - now)


def parse_object(provider: str, text: str) -> dict[str, Any]:
    """One JSON object from a stream or a body, whatever it holds; formats whose error events
    carry a type worth mapping (Anthropic's) look at ``error`` themselves."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        # The text is model output or server noise: its length is logged, never its content.
        log.debug("%s: malformed JSON (%d characters)", provider, len(text))
        raise BadResponse(provider, "malformed JSON in response") from exc
    if not isinstance(obj, dict):
        raise BadResponse(provider, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def decode_object(provider: str, text: str) -> dict[str, Any]:
    """One JSON object from a stream or a body; an error object becomes ``BadResponse``."""
    obj = parse_object(provider, text)
    if obj.get("error"):
        raise BadResponse(provider, f"error in stream: {_message_of(obj) or 'unspecified'}")
    return obj


async def read_body(provider: str, response: httpx.Response, limit: int = BODY_LIMIT) -> str:
    """The body of a streaming ``response`` as text, refused (``BadResponse``) once it passes
    ``limit`` bytes: httpx would buffer a body of any size."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise BadResponse(provider, f"body over {limit} bytes")
    return body.decode("utf-8", errors="replace")


async def _error_detail(response: httpx.Response) -> tuple[str, str | None]:
    """The server's error message, and the error ``type`` its body names (if any)."""
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= ERROR_BODY_LIMIT:
                break
    except httpx.TransportError:
        pass  # the status code alone still says what went wrong
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    message = _message_of(parsed) if isinstance(parsed, dict) else None
    if message is None:
        message = text.splitlines()[0] if text else response.reason_phrase
    kind = _type_of(parsed) if isinstance(parsed, dict) else None
    return message[:_MESSAGE_LIMIT], kind


def _message_of(obj: dict[str, Any]) -> str | None:
    """``{"error": "..."}`` (Ollama), ``{"error": {"message": ...}}`` (OpenAI, llama.cpp,
    Anthropic), ``{"message": ...}`` (Mistral), whose validation errors hold FastAPI's
    ``{"detail": [{"loc": [...], "msg": ...}]}``, as a message or bare."""
    error = obj.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    if error is None:
        error = obj.get("message")
    if error is None and isinstance(obj.get("detail"), list):
        error = obj
    if isinstance(error, dict) and isinstance(error.get("detail"), list):
        error = _validation_errors(error["detail"]) or error
    return str(error) if error is not None else None


def _validation_errors(detail: list[Any]) -> str:
    """``body.stop: Input should be a valid list; …`` from FastAPI's validation detail."""
    parts = []
    for item in detail:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def _type_of(obj: dict[str, Any]) -> str | None:
    """The error type a body names: ``error.type`` (OpenAI, Anthropic) or ``type`` (Mistral)."""
    error = obj.get("error")
    kind = error.get("type") if isinstance(error, dict) else obj.get("type")
    return kind if isinstance(kind, str) else None


def _redirect_message(status: int, response: httpx.Response) -> str:
    """Where a redirect pointed (its origin only: a path or query may hold anything)."""
    try:
        target = response.request.url.join(response.headers.get("location", ""))
        where = f"{target.scheme}://{target.netloc.decode('ascii', errors='replace')}"
    except (httpx.InvalidURL, ValueError):
        where = "an address that is not a URL"
    return (
        f"HTTP {status}: redirected to {where}, not followed (the API key goes only to the"
        " configured address); set base_url to the address the provider answers at"
    )


def _redact(message: str, request: httpx.Request) -> str:
    """Mask the request's API key should the server have echoed it back."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    keys = [bearer if scheme.lower() == "bearer" else "", request.headers.get("x-api-key", "")]
    for key in keys:
        message = mask_key(message, key)
    return message


_ECHO_MIN = 8  # characters of a key shared with a word of a message that mask the word


def mask_key(message: str, key: str | None) -> str:
    """``message`` with every occurrence of ``key`` replaced by ``***``, and every word that
    shares 8 or more consecutive characters with it (a prefix or a tail of the key, as some
    providers echo: "Incorrect API key provided: sk-proj-abcd****wxyz") replaced by ``***``
    too. Keys shorter than 4 characters are left alone: masking them would garble ordinary
    words."""
    if not key or len(key) < 4:
        return message
    message = message.replace(key, "***")
    if len(key) < _ECHO_MIN:
        return message
    words = message.split(" ")
    for i, word in enumerate(words):
        if len(word) >= _ECHO_MIN and any(
            word[start : start + _ECHO_MIN] in key for start in range(len(word) - _ECHO_MIN + 1)
        ):
            words[i] = "***"
    return " ".join(words)


_TIMEOUTS: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "connect timeout",
    httpx.ReadTimeout: "read timeout (no data)",
    httpx.WriteTimeout: "write timeout",
    httpx.PoolTimeout: "no free connection in the pool",
}


def describe_error(exc: httpx.RequestError) -> str:
    """A short cause with the server's origin, e.g. ``connection refused (http://h:1)``."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        cause = _TIMEOUTS.get(type(exc), "timeout")
    elif isinstance(exc, httpx.ConnectError) and _refused(exc):
        cause = "connection refused"
    elif isinstance(exc, httpx.ConnectError):
        cause = f"cannot connect: {detail}"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        cause = f"connection lost: {detail}"
    else:
        cause = detail
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached: nothing more to say
        return cause
    # The origin only: paths and query strings are the caller's business (and may hold keys).
    return f"{cause} ({url.scheme}://{url.netloc.decode('ascii', errors='replace')})"


def _refused(exc: BaseException) -> bool:
    """Whether the OS refused the connection; httpx says only "All connection attempts
    failed" and keeps the ``ConnectionRefusedError`` further down the chain."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; the bound guards against a cycle
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
