"""The Anthropic Messages API: ``POST /v1/messages`` for chat, and for FIM by a chat prompt.

``base_url`` is the API root without ``/v1`` (``https://api.anthropic.com``), as Anthropic's
SDKs take it; paths here are relative (``v1/messages``), so a gateway under a path prefix works.
Every request carries ``anthropic-version: 2023-06-01`` and, when a key is configured,
``x-api-key`` (not ``Authorization``). The probe is ``GET /v1/models/{model}``: it costs no
tokens, checks the key, and resolves aliases (``claude-sonnet-4-0``) that a listing would not
show.

Chat: system messages go to the top-level ``system`` field (the API refuses a ``system`` role
in ``messages``); ``max_tokens`` is always sent (the API requires it); ``temperature`` is
capped at 1, the API's maximum; whitespace-only stop sequences are left out, since the API
refuses them (``"\\n\\n"``, say) with a 400 and the caller's own stop rules still apply.

FIM: Anthropic has no fill-in-the-middle endpoint, so a completion is asked for as a chat: a
system instruction to answer with only the missing middle, and one user message holding the
other files and the current file with ``<CURSOR>`` at the gap. It works wherever a user routes
completions to this kind (``roles``), at more tokens and latency than a FIM-native model; the
kind is meant for chat. Should the reply open with a Markdown fence anyway, its fence line is
dropped, and outside Markdown documents a closing fence (``\\n```\\``) stops it.

Streams are server-sent events named after their ``type``: ``message_start``,
``content_block_start``, ``content_block_delta`` (text in a ``text_delta``),
``content_block_stop``, ``message_delta``, ``message_stop`` (the last one), and ``ping``. A
stream that ends before ``message_stop`` is a ``BadResponse``. An ``error`` event mid-stream
(the HTTP status is already 200) is mapped by its error type::

    overloaded_error, api_error                          -> ProviderUnavailable
    rate_limit_error                                     -> RateLimited (no retry_after)
    timeout_error                                        -> ProviderTimeout
    authentication_error, permission_error               -> AuthError
    not_found_error                                      -> ModelNotFound
    invalid_request_error, request_too_large, billing_error -> BadRequest
    any other type                                       -> BadResponse

Errors before the stream are those of ``providers/http.py`` (529 ``overloaded_error`` is a 5xx,
so ``ProviderUnavailable``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import httpx

from crucible.providers.base import ChatMessage, ChatRequest, FimRequest, ProbeResult
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
from crucible.providers.http import api_key, missing_key_hint, parse_object
from crucible.providers.http_provider import HttpProvider
from crucible.providers.streams import iter_sse_objects

API_VERSION = "2023-06-01"
KEY_ENV = "ANTHROPIC_API_KEY"  # the variable Anthropic's SDKs read; named in hints only
CURSOR = "<CURSOR>"
_MAX_TEMPERATURE = 1.0
_FENCE = "```"
_MARKDOWN = frozenset({"markdown", "mdx", "quarto", "rmd"})

FIM_SYSTEM = (
    "You are a code completion engine inside an editor. The user shows a file with a gap"
    f" marked {CURSOR}. Reply with exactly the text that belongs at {CURSOR} and nothing else:"
    " no explanation, no Markdown code fence, and none of the code before or after the gap."
    " Match the file's indentation and style. If nothing belongs there, reply with nothing."
)

_STREAM_ERRORS: dict[str, type[ProviderError]] = {
    "overloaded_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "rate_limit_error": RateLimited,
    "timeout_error": ProviderTimeout,
    "authentication_error": AuthError,
    "permission_error": AuthError,
    "not_found_error": ModelNotFound,
    "invalid_request_error": BadRequest,
    "request_too_large": BadRequest,
    "billing_error": BadRequest,
}


class AnthropicProvider(HttpProvider):
    """One Claude model behind the Anthropic Messages API."""

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        stop = _stop_sequences(request.stop)
        markdown = request.language_id.lower() in _MARKDOWN
        if not markdown:
            stop = [*stop, f"\n{_FENCE}"]
        body = self._body(
            (ChatMessage("system", FIM_SYSTEM), ChatMessage("user", fim_prompt(request))),
            request.max_tokens,
            request.temperature,
            stop,
        )
        stream = self._stream(body)
        return stream if markdown else _without_opening_fence(stream)

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        stop = _stop_sequences(request.stop)
        body = self._body(request.messages, request.max_tokens, request.temperature, stop)
        return self._stream(body)

    async def probe(self) -> ProbeResult:
        try:
            model = await self._get_object(f"v1/models/{quote(self.model, safe='')}")
        except ProviderError as exc:
            return self._probe_failed(exc)
        shown = model.get("display_name")
        named = f" ({shown})" if isinstance(shown, str) and shown != self.model else ""
        return ProbeResult(True, f"ok: model {self.model}{named} available", model_present=True)

    def _probe_failed(self, error: ProviderError) -> ProbeResult:
        if isinstance(error, ModelNotFound):
            detail = f"model {self.model} not found ({error.message})"
            if self._settings.base_url.rstrip("/").endswith("/v1"):
                detail += "; base_url is the API root, without /v1"
            return ProbeResult(False, detail, model_present=False)
        if isinstance(error, AuthError):
            return ProbeResult(
                False, error.message + missing_key_hint(self._settings, KEY_ENV, self.env)
            )
        return super()._probe_failed(error)

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        key = api_key(self._settings, self.env)
        if key:
            headers["x-api-key"] = key
        return headers

    def _body(
        self,
        messages: tuple[ChatMessage, ...],
        max_tokens: int,
        temperature: float,
        stop: list[str],
    ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
            "temperature": min(temperature, _MAX_TEMPERATURE),
            "stream": True,
        }
        if system:
            body["system"] = system
        if stop:
            body["stop_sequences"] = stop
        return body

    def _stream(self, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        # Closing the stream closes the connection, and Anthropic stops generating.
        return self._stream_text("v1/messages", body, _events, _text)


def _events(provider: str, response: httpx.Response) -> AsyncGenerator[dict[str, Any], None]:
    # Error events are mapped by their type (``_text``), hence ``parse_object``.
    return iter_sse_objects(
        provider,
        response,
        is_last=_is_message_stop,
        terminator="message_stop",
        decode=parse_object,
    )


def _text(provider: str, event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "content_block_delta":
        return _delta_text(provider, event)
    if kind == "error":
        raise _stream_error(provider, event)
    return ""


def _is_message_stop(event: dict[str, Any]) -> bool:
    return event.get("type") == "message_stop"


def fim_prompt(request: FimRequest) -> str:
    """The user message of a completion asked for as a chat: other files, then the current
    file with ``<CURSOR>`` at the gap, each in a ``<file path="…">`` element."""
    parts = []
    if request.extra:
        parts.append("Other files, for context:")
        parts += [f'<file path="{f.path}">\n{f.text}\n</file>' for f in request.extra]
    where = f"{request.path} ({request.language_id})" if request.language_id else request.path
    parts.append(f"Fill in {CURSOR} in {where or 'this file'}:")
    parts.append(f'<file path="{request.path}">\n{request.prefix}{CURSOR}{request.suffix}\n</file>')
    return "\n\n".join(parts)


def _stop_sequences(stop: tuple[str, ...]) -> list[str]:
    # The API refuses a whitespace-only stop sequence (400 "each stop sequence must contain
    # non-whitespace"); dropping one only loses an early stop the caller enforces anyway.
    return [s for s in dict.fromkeys(stop) if s.strip()]


def _delta_text(provider: str, event: dict[str, Any]) -> str:
    delta = event.get("delta")
    if not isinstance(delta, dict):
        raise BadResponse(provider, "'delta' is not an object")
    # Tool input, thinking and citation deltas carry no answer text.
    if delta.get("type") != "text_delta":
        return ""
    text = delta.get("text")
    if not isinstance(text, str):
        raise BadResponse(provider, "'delta.text' is not a string")
    return text


def _stream_error(provider: str, event: dict[str, Any]) -> ProviderError:
    error = event.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = f"error in stream: {kind or 'unspecified'}"
    if isinstance(message, str) and message:
        text += f": {message[:300]}"
    cls = _STREAM_ERRORS.get(kind) if isinstance(kind, str) else None
    return (cls or BadResponse)(provider, text)


async def _without_opening_fence(chunks: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """``chunks`` less a Markdown fence line (```` ```python ````) the reply may open with.

    Only the first few characters are held back, until they cannot start a fence any more (or
    the fence line is complete), so the first suggestion is not delayed.
    """
    head: str | None = ""  # None once the opening is settled and chunks pass straight through
    async with aclosing(chunks) as stream:
        async for chunk in stream:
            if head is None:
                yield chunk
                continue
            head += chunk
            if _FENCE.startswith(head):
                continue  # "`" or "``": could still become a fence
            if head.startswith(_FENCE):
                if "\n" not in head:
                    continue  # the fence line (with its language) is not complete yet
                head = head.partition("\n")[2]
            if head:
                yield head
            head = None
    if head and not head.startswith(_FENCE):
        yield head  # the whole reply was a few backticks short of a fence
