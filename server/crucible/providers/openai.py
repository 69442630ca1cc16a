"""The OpenAI-compatible wire format: ``completions`` for FIM, ``chat/completions``, ``models``.

Spoken by vLLM, llama.cpp's ``/v1``, LM Studio, LiteLLM and hosted APIs alike. ``base_url``
includes ``/v1``, as the OpenAI SDK takes it, so paths here are relative (``completions``) and
httpx appends them to the base path. The legacy completions endpoint has no portable FIM field
(llama.cpp ignores ``suffix``), so the model family's FIM template is rendered into ``prompt``
and its special tokens are sent as stop sequences.

Streams are server-sent events ending with ``data: [DONE]``; a stream that closes without it
is a ``BadResponse``. Other errors are those of ``providers/http.py`` and
``providers/streams.py``. The chat streaming code is shared with ``llamacpp.py``, whose server
speaks this format for chat.

With ``batch_window_ms > 0`` FIM calls are micro-batched (``openai_batch.py``): concurrent
prompts with equal sampling parameters go out as one call with a prompt list. Chat is never
batched. ``on_batch``, when set, is told how long each prompt of a batched call waited for it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx

from crucible.config.settings import ProviderSettings
from crucible.context.fim import resolve_template
from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import BadResponse, ProviderError
from crucible.providers.http import (
    HttpProvider,
)
from crucible.providers.openai_batch import BatchedCompletions, Sampling
from crucible.providers.streams import stream_sse


class OpenAIProvider(HttpProvider):
    """One model behind an OpenAI-compatible API."""

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient | None = None) -> None:
        # Resolved first: an unknown template name raises ValueError before a pool is opened.
        self._template = resolve_template(settings.fim_template, settings.model)
        super().__init__(settings, client)
        # Set by the composition root for telemetry: called once per batched call with how
        # long each of its prompts waited in the batch window (ms; one entry per prompt, a
        # batch of one included). Never called without batching.
        self.on_batch: Callable[[tuple[float, ...]], None] | None = None
        self._batches = (
            BatchedCompletions(self._client, settings, self._batched)
            if settings.batch_window_ms > 0
            else None
        )

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        template = self._template
        prompt = template.render(
            request.prefix, request.suffix, path=request.path, extra=request.extra
        )
        # The family's own tokens first; dict.fromkeys drops repeats and keeps the order.
        stop = tuple(dict.fromkeys(template.stop + request.stop))
        if self._batches is not None:
            sampling = Sampling(request.max_tokens, request.temperature, stop)
            return self._batches.stream(prompt, sampling)
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(stop),
            "stream": True,
        }
        return stream_sse(self._client, self._settings, "completions", body, _completion_text)

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        return stream_openai_chat(self._client, self._settings, "chat/completions", request)

    async def probe(self) -> ProbeResult:
        try:
            listing = await self._get_object("models")
        except ProviderError as exc:
            return ProbeResult(False, exc.message)
        data = listing.get("data")
        models = data if isinstance(data, list) else []
        ids = [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if not ids:
            return ProbeResult(False, "the server lists no models")
        if self.model in ids:
            return ProbeResult(True, f"ok: model {self.model} available", model_present=True)
        # Servers of one model (llama.cpp, some vLLM setups) answer to any name, so an unlisted
        # name is reported, not failed.
        return ProbeResult(
            True,
            f"ok: server answers, but model {self.model} is not listed (has: {', '.join(ids)})",
            model_present=False,
        )

    def _batched(self, waits_ms: tuple[float, ...]) -> None:
        # Looked up per call, so that the hook may be set after construction.
        if self.on_batch is not None:
            self.on_batch(waits_ms)


def stream_openai_chat(
    client: httpx.AsyncClient, settings: ProviderSettings, path: str, request: ChatRequest
) -> AsyncGenerator[str, None]:
    """Stream a chat answer from an OpenAI-compatible ``chat/completions`` route at ``path``."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        # max_tokens, not max_completion_tokens: every compatible server understands it.
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": True,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    return stream_sse(client, settings, path, body, _delta_text)


def _first_choice(provider: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """``choices[0]``; None for events without choices (usage, keep-alive)."""
    choices = event.get("choices")
    if not choices:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadResponse(provider, "'choices' is not a list of objects")
    first: dict[str, Any] = choices[0]
    return first


def _completion_text(provider: str, event: dict[str, Any]) -> str:
    choice = _first_choice(provider, event)
    text = "" if choice is None else choice.get("text") or ""
    if not isinstance(text, str):
        raise BadResponse(provider, "'choices[0].text' is not a string")
    return text


def _delta_text(provider: str, event: dict[str, Any]) -> str:
    choice = _first_choice(provider, event)
    delta = None if choice is None else choice.get("delta")
    # The first delta of a chat stream carries the role and a null content.
    text = delta.get("content") or "" if isinstance(delta, dict) else ""
    if not isinstance(text, str):
        raise BadResponse(provider, "'choices[0].delta.content' is not a string")
    return text
