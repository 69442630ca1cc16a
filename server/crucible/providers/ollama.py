"""The Ollama wire format: ``/api/generate`` for FIM, ``/api/chat``, ``/api/tags`` to probe.

Ollama streams NDJSON, one object per line, the last with ``done: true``. FIM goes through the
native ``suffix`` field: given a suffix, Ollama renders the model's own FIM template (so no
``raw``, and no template of ours), which keeps the prompt right for whatever the user pulled.
``/api/generate`` has no field for other files, so ``FimRequest.extra`` is not sent. A model
whose template has no FIM answers 400 "does not support insert": the provider says so once
(``on_notice``) and continues the prefix raw from then on.

Errors are those of ``providers/http.py`` and ``providers/streams.py``: ``ProviderError``
subclasses, never httpx's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import BadRequest, BadResponse, FimUnsupported, ProviderError
from crucible.providers.http_provider import HttpProvider, TextOf
from crucible.providers.listing import ModelListing
from crucible.providers.streams import iter_ndjson

# Ollama's error for a generate with a suffix on a model whose template has no FIM.
_NO_INSERT = "does not support insert"


def _same_model(listed: str, wanted: str) -> bool:
    """Ollama names carry a tag; ``qwen`` and ``qwen:latest`` are the same model."""
    return listed.removesuffix(":latest") == wanted.removesuffix(":latest")


_LISTING = ModelListing(path="api/tags", key="models", field="name", same=_same_model, has="have")


class OllamaProvider(HttpProvider):
    """One model on one Ollama server."""

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        options = _options(request.max_tokens, request.temperature, request.stop)
        fim = {
            "model": self.model,
            "prompt": request.prefix,
            "suffix": request.suffix,
            "stream": True,
            "options": options,
        }
        # A model without FIM support answers 400 "... does not support insert"; then the
        # prefix is continued raw (no chat template around it, or a chat model would chat).
        prefix_only = {"model": self.model, "prompt": request.prefix, "raw": True}
        return self._fim_or_prefix_only(
            lambda: self._stream("api/generate", fim, _generated_text),
            lambda: self._stream(
                "api/generate", {**prefix_only, "stream": True, "options": options}, _generated_text
            ),
        )

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "options": _options(request.max_tokens, request.temperature, request.stop),
        }
        return self._stream("api/chat", body, _message_text)

    async def probe(self) -> ProbeResult:
        return await self._probe_models(_LISTING)

    def _stream(
        self, path: str, body: dict[str, Any], text_of: TextOf
    ) -> AsyncGenerator[str, None]:
        # Closing the stream closes the connection, and Ollama then stops generating for it.
        return self._stream_text(path, body, iter_ndjson, text_of)

    async def _check_status(
        self, response: httpx.Response, error_types: Mapping[str, type[ProviderError]] | None
    ) -> None:
        try:
            await super()._check_status(response, error_types)
        except BadRequest as exc:
            if _NO_INSERT in exc.message:
                raise FimUnsupported(self.name, exc.message) from exc
            raise


def _options(max_tokens: int, temperature: float, stop: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {"num_predict": max_tokens, "temperature": temperature}
    # An explicit stop list replaces the model's own stop parameters (its Modelfile), so the
    # key is only sent when the caller has stops of its own.
    if stop:
        options["stop"] = list(stop)
    return options


def _generated_text(provider: str, obj: dict[str, Any]) -> str:
    text = obj.get("response", "")
    if not isinstance(text, str):
        raise BadResponse(provider, "'response' is not a string")
    return text


def _message_text(provider: str, obj: dict[str, Any]) -> str:
    message = obj.get("message")
    if message is None:
        return ""
    text = message.get("content", "") if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise BadResponse(provider, "'message.content' is not a string")
    return text
