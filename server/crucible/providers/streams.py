"""Stream framing: the lines, server-sent events and NDJSON objects of a streamed body.

Each wire format's streaming code reads its events here: ``iter_sse_data`` (SSE data payloads,
up to OpenAI's ``data: [DONE]``), ``iter_sse_json`` (those payloads decoded: the
OpenAI-compatible formats and Codestral), ``iter_sse_objects`` (decoded SSE events, up to the
one the format marks as its last, as Anthropic's ``message_stop`` or llama.cpp's ``stop:
true``) and ``iter_ndjson`` (newline-delimited JSON, up to ``done: true``). After its
terminator each reads on to the end of the body, so that httpx returns the connection to the
pool. The request around a stream (POST, headers, status) is ``HttpProvider``'s
(``providers/http_provider.py``), which hands the response to one of these.

Every size is bounded: a line (an NDJSON object, an SSE field) or an SSE event longer than
``LINE_LIMIT`` bytes ends the stream, so a provider that sends a body with no newline (or one
gigantic token) costs at most that much memory, never the whole body.

Errors of a started stream, all ``BadResponse`` (a truncated answer is never taken for a
complete one)::

    httpx transport error while reading the body           -> BadResponse (stream broken)
    a stream that ends without its terminator              -> BadResponse (stream ended early)
    a line or an SSE event over ``LINE_LIMIT``             -> BadResponse (line over N bytes)
    malformed JSON, an error object in an event            -> BadResponse (``providers/http.py``)

A timeout while reading is left to ``map_errors`` (``ProviderTimeout``), around the caller's
``async with client.stream``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx

from crucible.providers.errors import BadResponse
from crucible.providers.http import decode_object, describe_error

_DRAIN_S = 0.25  # longest wait for the end of a body after its stream's terminator
# Longest line or SSE event read from a stream. A streamed event carries one token or a few
# (OpenAI's chunk objects are ~200-400 bytes; llama.cpp's with probabilities a few KB); 1 MiB
# is thousands of times that, and small enough that a provider flooding one line costs a
# bounded amount of memory.
LINE_LIMIT = 1 << 20


async def iter_sse_data(
    provider: str, response: httpx.Response, *, until_done: bool = True
) -> AsyncGenerator[str, None]:
    """The data payload of each server-sent event, in order.

    Multi-line data is joined with newlines; comments and other fields are ignored. The stream
    ends at ``data: [DONE]`` (OpenAI's terminator). With ``until_done`` a stream that closes
    without it raises ``BadResponse``; formats that mark their last event another way
    (llama.cpp's ``stop: true``) pass ``until_done=False``, get every event up to the end of
    the body, and check for themselves (``iter_sse_objects`` does that for JSON events).
    """
    data: list[str] = []
    size = 0  # characters in ``data``: an event of many short data lines is bounded too
    async with aclosing(_lines(provider, response)) as lines:
        async for line in lines:
            if line == "":
                if data:
                    payload = "\n".join(data)
                    data.clear()
                    size = 0
                    if payload == "[DONE]":
                        await _drain(lines)
                        return
                    yield payload
                continue
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value.removeprefix(" "))
                size += len(data[-1]) + 1
                if size > LINE_LIMIT:
                    raise BadResponse(provider, f"event over {LINE_LIMIT} characters")
    # An event cut off before its blank line is incomplete and dropped (the SSE rules).
    if until_done:
        raise BadResponse(provider, "stream ended early (no [DONE])")


async def iter_sse_json(
    provider: str, response: httpx.Response
) -> AsyncGenerator[dict[str, Any], None]:
    """Each server-sent event decoded to an object, up to OpenAI's ``data: [DONE]``."""
    async with aclosing(iter_sse_data(provider, response)) as events:
        async for data in events:
            yield decode_object(provider, data)


async def iter_sse_objects(
    provider: str,
    response: httpx.Response,
    *,
    is_last: Callable[[dict[str, Any]], bool],
    terminator: str,
    decode: Callable[[str, str], dict[str, Any]] = decode_object,
) -> AsyncGenerator[dict[str, Any], None]:
    """Each server-sent event decoded to an object, up to the one ``is_last`` marks.

    For formats whose last event says so in its JSON rather than with ``[DONE]``. That event is
    yielded too; the events after it are read to the end of the body but not decoded. A stream
    that ends before it raises ``BadResponse`` naming ``terminator``. ``decode`` is
    ``decode_object`` unless the format maps its error events itself (``parse_object``).
    """
    stopped = False
    async with aclosing(iter_sse_data(provider, response, until_done=False)) as events:
        async for data in events:
            if stopped:
                continue
            event = decode(provider, data)
            yield event
            stopped = is_last(event)
    if not stopped:
        raise BadResponse(provider, f"stream ended early (no {terminator})")


async def iter_ndjson(
    provider: str, response: httpx.Response
) -> AsyncGenerator[dict[str, Any], None]:
    """Each object of a newline-delimited JSON stream, up to the one with ``done: true``.

    That object is yielded too (it may carry text and the stop reason). A stream that closes
    before it raises ``BadResponse``, so a truncated answer is never taken for a complete one.
    """
    async with aclosing(_lines(provider, response)) as lines:
        async for line in lines:
            if not line.strip():
                continue
            obj = decode_object(provider, line)
            yield obj
            if obj.get("done") is True:
                await _drain(lines)
                return
    raise BadResponse(provider, "stream ended early (no done: true)")


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows a stream's terminator (normally just the end of the chunked body).

    httpx returns a connection to the pool only when its response was read to the end; a
    response closed early costs a new connection (a TLS handshake, remotely) next time. The
    wait is bounded: a server holding the stream open after its terminator costs only the
    connection, never the answer already received.
    """
    try:
        async with asyncio.timeout(_DRAIN_S):
            async for _ in lines:
                pass
    except (TimeoutError, httpx.TimeoutException, BadResponse):
        pass


async def _lines(provider: str, response: httpx.Response) -> AsyncGenerator[str, None]:
    """The body's lines, each at most ``LINE_LIMIT`` bytes; a connection lost mid-body is a
    truncated stream, not an outage.

    httpx's ``aiter_lines`` keeps a line in memory until its newline arrives, however long it
    grows; this reads bytes and gives up once a line outgrows the limit. Lines end at ``\\n``,
    ``\\r\\n`` or ``\\r`` (the SSE rules, which also cover NDJSON); text is UTF-8 (what JSON
    is), an invalid sequence replaced rather than fatal, as httpx did.
    """
    pending = bytearray()  # the line being received
    held_cr = False  # the last chunk ended in CR: an LF starting the next is the same break
    try:
        async for chunk in response.aiter_bytes():
            if held_cr:
                chunk = b"\r" + chunk
            held_cr = chunk.endswith(b"\r")
            if held_cr:
                chunk = chunk[:-1]
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if b"\n" not in chunk:
                pending += chunk
                _check_line(provider, len(pending))
                continue
            first, *middle, last = chunk.split(b"\n")
            pending += first
            _check_line(provider, len(pending))
            yield pending.decode("utf-8", "replace")
            for line in middle:
                _check_line(provider, len(line))
                yield line.decode("utf-8", "replace")
            pending = bytearray(last)
            _check_line(provider, len(pending))
    except httpx.TimeoutException:
        raise  # map_errors turns it into ProviderTimeout
    except httpx.TransportError as exc:
        raise BadResponse(provider, f"stream broken: {describe_error(exc)}") from exc
    if pending or held_cr:
        yield pending.decode("utf-8", "replace")  # the last line, without its line break


def _check_line(provider: str, size: int) -> None:
    if size > LINE_LIMIT:
        raise BadResponse(provider, f"line over {LINE_LIMIT} bytes")
