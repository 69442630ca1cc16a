"""Mistral's Codestral API: ``fim/completions`` for FIM, ``chat/completions``, ``models``.

FIM-native: the text before the cursor goes in ``prompt`` and the text after it in
``suffix``, and Mistral builds the model's own FIM prompt, so no template of ours is involved.
The route has no field for other files, so ``FimRequest.extra`` is not sent (as with Ollama).

``base_url`` includes ``/v1``, like the openai kind's: ``https://codestral.mistral.ai/v1``
(the default, for Codestral keys) or ``https://api.mistral.ai/v1`` (for La Plateforme keys).
Paths here are relative and httpx appends them to the base path. The key goes as
``Authorization: Bearer``. ``temperature`` is capped at 1, which every version of Mistral's
spec accepts; the configuration allows up to 2.

Streams are server-sent events in the OpenAI chat-chunk shape, FIM included: the text is in
``choices[0].delta.content`` and the stream ends with ``data: [DONE]``. A stream that closes
without it, and an error object mid-stream, are ``BadResponse``. Other errors are those of
``providers/http.py`` and ``providers/streams.py``, but for one: Mistral answers an unknown
model with 400 ``invalid_model``, which is ``ModelNotFound`` here, as other formats' 404 is.

The probe lists ``models``; each entry names its ``aliases`` (``codestral-latest``), and a
model configured by an alias counts as listed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import AuthError, BadResponse, ModelNotFound, ProviderError
from crucible.providers.http import missing_key_hint
from crucible.providers.http_provider import HttpProvider
from crucible.providers.listing import ModelListing
from crucible.providers.openai import first_choice
from crucible.providers.streams import iter_sse_json

KEY_ENV = "MISTRAL_API_KEY"  # the variable Mistral's SDKs read; named in hints only
_MAX_TEMPERATURE = 1.0
_ERROR_TYPES: dict[str, type[ProviderError]] = {"invalid_model": ModelNotFound}
_LISTING = ModelListing(path="models")  # entries name their aliases; ModelListing reads them


class CodestralProvider(HttpProvider):
    """One model behind Mistral's Codestral (or La Plateforme) API."""

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prefix,
            "suffix": request.suffix,
            "max_tokens": request.max_tokens,
            "temperature": min(request.temperature, _MAX_TEMPERATURE),
            "stream": True,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return self._stream("fim/completions", body)

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": min(request.temperature, _MAX_TEMPERATURE),
            "stream": True,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return self._stream("chat/completions", body)

    async def probe(self) -> ProbeResult:
        return await self._probe_models(_LISTING)

    def _probe_failed(self, error: ProviderError) -> ProbeResult:
        if isinstance(error, ModelNotFound):
            detail = error.message
            if not self._settings.base_url.rstrip("/").endswith("/v1"):
                detail += "; base_url includes /v1 (https://codestral.mistral.ai/v1)"
            return ProbeResult(False, detail)
        if isinstance(error, AuthError):
            return ProbeResult(
                False, error.message + missing_key_hint(self._settings, KEY_ENV, self.env)
            )
        return super()._probe_failed(error)

    def _stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
        return self._stream_text(path, body, iter_sse_json, _text, error_types=_ERROR_TYPES)


def _text(provider: str, event: dict[str, Any]) -> str:
    # Mistral's error objects are {"object": "error", "message": ..., "type": ...}.
    if event.get("object") == "error":
        message = event.get("message")
        raise BadResponse(provider, f"error in stream: {str(message)[:300] or 'unspecified'}")
    return _delta_text(provider, event)


def _delta_text(provider: str, event: dict[str, Any]) -> str:
    choice = first_choice(provider, event)  # None: a usage-only or keep-alive event
    delta = None if choice is None else choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is None:
        return ""  # the first chunk carries the role and no content
    if isinstance(content, str):
        return content
    # Newer models may send content as a list of typed chunks; only text is an answer.
    if isinstance(content, list):
        return "".join(
            c["text"]
            for c in content
            if isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str)
        )
    raise BadResponse(provider, "'choices[0].delta.content' is not a string")
