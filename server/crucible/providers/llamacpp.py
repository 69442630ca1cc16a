"""The llama.cpp server's native wire format: ``/infill`` for FIM, ``/health`` to probe.

``/infill`` takes the prefix, the suffix and other files (``input_extra``) as separate fields
and builds the prompt from the model's own FIM tokens, so no template of ours is involved and
the server can cache the shared context between keystrokes (``cache_prompt``). A model without
FIM tokens answers 501 there: the provider says so once (``on_notice``) and continues the
prefix through ``/completion`` from then on. It streams
server-sent events without ``[DONE]``: the last event carries ``stop: true``, and a stream that
ends before it is a ``BadResponse``. Chat goes to the same server's OpenAI-compatible
``/v1/chat/completions`` (the body and its text are ``openai.py``'s). ``base_url`` is the server
root, e.g. ``http://127.0.0.1:8080``.

Errors are those of ``providers/http.py`` and ``providers/streams.py``: ``ProviderError``
subclasses, never httpx's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import BadResponse, FimUnsupported, ProviderError
from crucible.providers.http import check_status, decode_object, read_body
from crucible.providers.http_provider import HttpProvider
from crucible.providers.openai import chat_body, delta_text
from crucible.providers.streams import iter_sse_json, iter_sse_objects

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
        # Closing the stream closes the connection, and llama.cpp cancels the task.
        return self._fim_or_prefix_only(
            lambda: self._generate("infill", infill),
            lambda: self._generate("completion", {"prompt": request.prefix, **sampling}),
        )

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        body = chat_body(self.model, request)
        return self._stream_text("v1/chat/completions", body, iter_sse_json, delta_text)

    async def probe(self) -> ProbeResult:
        try:
            async with self._open("GET", "health") as response:
                if response.status_code == _LOADING:
                    return ProbeResult(False, "server is loading the model (HTTP 503)")
                await check_status(self.name, response)
                health = decode_object(self.name, await read_body(self.name, response))
        except ProviderError as exc:
            return self._probe_failed(exc)
        status = health.get("status")
        if status != "ok":
            return ProbeResult(False, f"server health is {status!r}")
        return ProbeResult(True, f"ok: server ready (model {self.model})")

    def _generate(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        return self._stream_text(path, body, _events, _content, error_types=_ERROR_TYPES)


def _events(provider: str, response: httpx.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The native routes' events: no ``[DONE]``, the last one carries ``stop: true``."""
    return iter_sse_objects(provider, response, is_last=_is_stop, terminator="stop: true")


def _is_stop(event: dict[str, Any]) -> bool:
    return event.get("stop") is True


def _content(provider: str, event: dict[str, Any]) -> str:
    text = event.get("content", "")
    if not isinstance(text, str):
        raise BadResponse(provider, "'content' is not a string")
    return text
