"""The OpenAI-compatible wire format: ``completions`` for FIM, ``chat/completions``, ``models``.

Spoken by vLLM, llama.cpp's ``/v1``, LM Studio, LiteLLM and hosted APIs alike. ``base_url``
includes ``/v1``, as the OpenAI SDK takes it, so paths here are relative (``completions``) and
httpx appends them to the base path. The legacy completions endpoint has no portable FIM field
(llama.cpp ignores ``suffix``), so the model family's FIM template is rendered into ``prompt``
and its special tokens are sent as stop sequences.

Streams are server-sent events ending with ``data: [DONE]``; a stream that closes without it
is a ``BadResponse``. Other errors are those of ``providers/http.py`` and
``providers/streams.py``. The chat body and its text (``chat_body``, ``delta_text``) are shared
with ``llamacpp.py``, whose server speaks this format for chat, and ``first_choice`` with
``codestral.py``, whose events have this shape.

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
from crucible.providers.errors import BadResponse
from crucible.providers.http_provider import HttpProvider
from crucible.providers.listing import ModelListing
from crucible.providers.openai_batch import BatchedCompletions, Sampling
from crucible.providers.streams import iter_sse_json

# Servers of one model (llama.cpp, some vLLM setups) answer to any name, so an unlisted name is
# reported, not failed.
_LISTING = ModelListing(path="models", answers_any_name=True)


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
            BatchedCompletions(settings, self._completion_events, self._batched)
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
        return self._stream_text("completions", body, iter_sse_json, _completion_text)

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        body = chat_body(self.model, request)
        return self._stream_text("chat/completions", body, iter_sse_json, delta_text)

    async def probe(self) -> ProbeResult:
        return await self._probe_models(_LISTING)

    def _completion_events(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The events of one (batched) ``completions`` call."""
        return self._events("completions", body, iter_sse_json)

    def _batched(self, waits_ms: tuple[float, ...]) -> None:
        # Looked up per call, so that the hook may be set after construction.
        if self.on_batch is not None:
            self.on_batch(waits_ms)


def chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The body of a streamed OpenAI-compatible ``chat/completions`` call."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        # max_tokens, not max_completion_tokens: every compatible server understands it.
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": True,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    return body


def first_choice(provider: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """``choices[0]`` of an OpenAI-style event; None for events without choices (usage,
    keep-alive)."""
    choices = event.get("choices")
    if not choices:
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise BadResponse(provider, "'choices' is not a list of objects")
    first: dict[str, Any] = choices[0]
    return first


def _completion_text(provider: str, event: dict[str, Any]) -> str:
    choice = first_choice(provider, event)
    text = "" if choice is None else choice.get("text") or ""
    if not isinstance(text, str):
        raise BadResponse(provider, "'choices[0].text' is not a string")
    return text


def delta_text(provider: str, event: dict[str, Any]) -> str:
    """The text of a chat chunk (``choices[0].delta.content``)."""
    choice = first_choice(provider, event)
    delta = None if choice is None else choice.get("delta")
    # The first delta of a chat stream carries the role and a null content.
    text = delta.get("content") or "" if isinstance(delta, dict) else ""
    if not isinstance(text, str):
        raise BadResponse(provider, "'choices[0].delta.content' is not a string")
    return text
