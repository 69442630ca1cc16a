"""The llama.cpp server's native wire format: ``/infill`` for FIM, ``/health`` to probe.

``/infill`` takes the prefix, the suffix and other files (``input_extra``) as separate fields
and builds the prompt from the model's own FIM tokens, so no template of ours is involved and
the server can cache the shared context between keystrokes (``cache_prompt``). A model without
FIM tokens answers 501 there: the provider says so once (``on_notice``) and continues the
prefix through ``/completion`` from then on. It streams
server-sent events without ``[DONE]``: the last event carries ``stop: true``, and a stream that
ends before it is a ``BadResponse``. Chat goes to the same server's OpenAI-compatible
``/v1/chat/completions`` (the streaming code is ``openai.py``'s). ``base_url`` is the server
root, e.g. ``http://127.0.0.1:8080``.

Errors are those of ``providers/http.py`` and ``providers/streams.py``: ``ProviderError``
subclasses, never httpx's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import BadResponse, FimUnsupported, ProviderError
from crucible.providers.http import (
    HttpProvider,
    auth_headers,
    check_status,
    decode_object,
    map_errors,
    read_body,
)
from crucible.providers.openai import stream_openai_chat
from crucible.providers.streams import iter_sse_objects

_LOADING = 503  # /health answers 503 while the model is still loading
# /infill for a model without FIM tokens: 501 {"error": {"type": "not_supported_error", ...}}
_ERROR_TYPES = {"not_supported_error": FimUnsupported}


class LlamaCppProvider(HttpProvider):
    """One llama.cpp server (it serves the one model it was started with)."""

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        sampling = {
            "n_predict": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
            "stream": True,
            "cache_prompt": True,
        }
        infill = {
            "input_prefix": request.prefix,
            "input_suffix": request.suffix,
            "input_extra": [{"filename": f.path, "text": f.text} for f in request.extra],
            **sampling,
        }
        # A model without FIM tokens gets 501 from /infill; /completion continues the prefix.
        return self._fim_or_prefix_only(
            lambda: self._stream_events("infill", infill),
            lambda: self._stream_events("completion", {"prompt": request.prefix, **sampling}),
        )

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        return stream_openai_chat(self._client, self._settings, "v1/chat/completions", request)

    async def probe(self) -> ProbeResult:
        try:
            async with (
                map_errors(self.name),
                self._client.stream(
                    "GET", "health", headers=auth_headers(self._settings)
                ) as response,
            ):
                if response.status_code == _LOADING:
                    return ProbeResult(False, "server is loading the model (HTTP 503)")
                await check_status(self.name, response)
                health = decode_object(self.name, await read_body(self.name, response))
        except ProviderError as exc:
            return ProbeResult(False, exc.message)
        status = health.get("status")
        if status != "ok":
            return ProbeResult(False, f"server health is {status!r}")
        return ProbeResult(True, f"ok: server ready (model {self.model})")

    async def _stream_events(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        # ``async with client.stream`` ties the HTTP response to this generator: closing it
        # (early stop, cancellation) closes the connection, and llama.cpp cancels the task.
        headers = auth_headers(self._settings)
        async with (
            map_errors(self.name),
            self._client.stream("POST", path, json=body, headers=headers) as response,
        ):
            await check_status(self.name, response, error_types=_ERROR_TYPES)
            events = iter_sse_objects(
                self.name, response, is_last=_is_stop, terminator="stop: true"
            )
            async with aclosing(events):
                async for event in events:
                    text = event.get("content", "")
                    if not isinstance(text, str):
                        raise BadResponse(self.name, "'content' is not a string")
                    if text:
                        yield text


def _is_stop(event: dict[str, Any]) -> bool:
    return event.get("stop") is True
