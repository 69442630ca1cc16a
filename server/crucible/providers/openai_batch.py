"""Micro-batched FIM for the OpenAI-compatible wire format: many prompts, one ``completions`` call.

Single responsibility: turn the concurrent FIM calls of one provider into batched calls
(``"prompt": [p0, p1, …]``, which vLLM and llama.cpp's server accept) and demultiplex the one
shared SSE stream back into a text stream per call, by ``choices[i].index``. Grouping in time
is ``scheduling/batcher.py``'s; the rendering of each prompt is ``openai.py``'s.

- Only calls with equal sampling parameters (``max_tokens``, ``temperature``, ``stop``) share a
  batch: the wire format takes one set per call.
- A batch of one sends ``prompt`` as a plain string: the request is then exactly the unbatched
  one, which every compatible server accepts.
- Each caller's stream yields its own choice's text and ends at that choice's
  ``finish_reason`` (or at ``[DONE]``). A caller that stops early only detaches; when every
  caller of a batch has stopped, the flush is cancelled and the HTTP response closed at once,
  so the server stops generating.

The call itself (headers, status, error mapping, framing) is the provider's
(``HttpProvider._events``), as for every other request.

Errors: those of ``providers/http.py`` (HTTP status, transport, timeout, malformed JSON) and
``providers/streams.py`` (a broken stream, a stream without ``[DONE]``), plus ``BadResponse``
for a choice ``index`` that names no prompt of the batch; each reaches every caller of the
batch whose text had not ended yet.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeAlias

from crucible.config.settings import ProviderSettings
from crucible.providers.errors import BadResponse
from crucible.scheduling.batcher import MicroBatcher, Submission

# The events of one streamed ``completions`` call of this body: the provider's own request
# (``HttpProvider._events``: its headers, its status check, its error mapping).
CompletionEvents: TypeAlias = Callable[[dict[str, Any]], AsyncGenerator[dict[str, Any], None]]


@dataclass(frozen=True, slots=True)
class Sampling:
    """The parameters a batched call shares: calls with equal ones may share a batch."""

    max_tokens: int
    temperature: float
    stop: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Prompt:
    text: str
    sampling: Sampling


class BatchedCompletions:
    """The FIM calls of one provider, micro-batched into ``completions`` calls."""

    def __init__(
        self,
        settings: ProviderSettings,
        events: CompletionEvents,
        on_batch: Callable[[tuple[float, ...]], None],
    ) -> None:
        self._settings = settings
        self._events = events
        # Told, as each call goes out, how long each of its prompts waited for it (ms).
        self._on_batch = on_batch
        self._batcher: MicroBatcher[_Prompt, str] = MicroBatcher(
            self._send,
            window_s=settings.batch_window_ms / 1000,
            max_size=settings.batch_max,
            key=lambda prompt: prompt.sampling,
        )

    def stream(self, prompt: str, sampling: Sampling) -> AsyncGenerator[str, None]:
        """The completion of ``prompt``, chunk by chunk; close it to stop reading."""
        return self._batcher.stream(_Prompt(prompt, sampling))

    async def _send(self, submissions: list[Submission[_Prompt, str]]) -> None:
        """One call for the whole batch; each choice's text goes to its submitter."""
        name = self._settings.name
        sampling = submissions[0].item.sampling  # the batcher's key: the same for every one
        prompts = [submission.item.text for submission in submissions]
        body: dict[str, Any] = {
            "model": self._settings.model,
            "prompt": prompts[0] if len(prompts) == 1 else prompts,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "stop": list(sampling.stop),
            "stream": True,
        }
        self._on_batch(tuple(submission.waited_s * 1000 for submission in submissions))
        async with aclosing(self._events(body)) as events:
            async for event in events:
                for index, text, finished in _choices(name, event):
                    if index >= len(submissions):
                        raise BadResponse(name, f"choice index {index} names no prompt")
                    if text:
                        submissions[index].send(text)
                    if finished:
                        submissions[index].finish()


def _choices(provider: str, event: dict[str, Any]) -> list[tuple[int, str, bool]]:
    """(index, text, whether it carries a finish_reason) for each choice of one event."""
    choices = event.get("choices") or []  # events without choices: usage, keep-alive
    if not isinstance(choices, list):
        raise BadResponse(provider, "'choices' is not a list")
    found = []
    for choice in choices:
        if not isinstance(choice, dict):
            raise BadResponse(provider, "'choices' is not a list of objects")
        index, text = choice.get("index"), choice.get("text") or ""
        # bool is an int to Python, never an index to a server.
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BadResponse(provider, "a choice has no valid 'index'")
        if not isinstance(text, str):
            raise BadResponse(provider, f"'choices[{index}].text' is not a string")
        found.append((index, text, choice.get("finish_reason") is not None))
    return found
