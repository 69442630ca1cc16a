"""The wire formats the fake provider speaks, one :class:`Endpoint` per generation route.

Three families, framed the way the real servers frame them:

- ``ollama`` (``/api/generate``, ``/api/chat``): NDJSON, one JSON object per line, the last one
  ``"done": true``; streams unless the body says ``"stream": false``.
- ``openai`` (``/v1/completions``, ``/v1/chat/completions``; vLLM, llama.cpp, LM Studio):
  server-sent events ``data: {...}\\n\\n`` ending with ``data: [DONE]``; streams only on request.
- ``llamacpp`` (``/completion``, ``/infill``): server-sent events without ``[DONE]``, the last
  event ``"stop": true``; streams only on request.

An endpoint reads the request body into :class:`Params`, and turns a :class:`Generation` (the
reply text already cut by stop sequences and limits) into JSON objects: the preamble sent before
the text, one object per text piece, the closing objects, or the whole non-streamed answer.
Token counts are estimates at 4 characters per token, the same rule that applies the limits.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

Family = Literal["ollama", "openai", "llamacpp"]
Json = dict[str, Any]

CHARS_PER_TOKEN = 4


def approx_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Params:
    """What a generation request asks for, whatever its wire format."""

    model: str | None  # None when the body names no model
    stream: bool
    stop: tuple[str, ...]
    max_tokens: int | None
    prompt_tokens: int
    prompt_list: tuple[str, ...] | None = None  # /v1/completions with a list: one choice each


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: Literal["stop", "length"]
    stopping_word: str  # the stop sequence that cut the text, "" if none


@dataclass(frozen=True)
class Generation:
    id: str
    model: str
    created: int  # unix seconds, as OpenAI reports it
    started: float  # time.monotonic() at arrival, for Ollama's durations
    prompt_tokens: int
    choices: tuple[Choice, ...]


def _stops(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str) and item)
    return ()


def _limit(value: object) -> int | None:
    # -1 means "no limit" to Ollama and llama.cpp; 0 and negatives never limit here.
    return value if isinstance(value, int) and value > 0 else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _messages_text(body: Json) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    return "".join(_text(m.get("content", "")) for m in messages if isinstance(m, dict))


def _model(body: Json) -> str | None:
    model = body.get("model")
    return model if isinstance(model, str) else None


def error_body(family: Family, status: int, message: str, *, code: str | None = None) -> Json:
    """The error object each family's servers send; ``code`` is OpenAI's machine-readable one."""
    if family == "ollama":
        return {"error": message}
    if family == "openai":
        if status == 429:
            kind, code = "requests", code or "rate_limit_exceeded"
        elif status >= 500:
            kind = "server_error"
        else:
            kind = "invalid_request_error"
        param = "model" if code == "model_not_found" else None
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    kinds = {401: "authentication_error", 404: "not_found_error", 501: "not_supported_error"}
    kind = kinds.get(status) or (
        "unavailable_error"
        if status == 503
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    return {"error": {"code": status, "message": message, "type": kind}}


class Endpoint(ABC):
    """One generation route: request parsing, and the objects of its answer."""

    family: ClassVar[Family]
    stream_default: ClassVar[bool] = False

    @property
    def content_type(self) -> str:
        return "application/x-ndjson" if self.family == "ollama" else "text/event-stream"

    @property
    def done_marker(self) -> bytes:
        """Written after the closing objects; only the OpenAI-compatible routes have one."""
        return b"data: [DONE]\n\n" if self.family == "openai" else b""

    def frame(self, obj: Json) -> bytes:
        data = json.dumps(obj, separators=(",", ":"))
        return f"{data}\n".encode() if self.family == "ollama" else f"data: {data}\n\n".encode()

    def garbage(self) -> bytes:
        """A line framed correctly whose payload is not JSON."""
        return b'{"response": oops\n' if self.family == "ollama" else b"data: {oops\n\n"

    @abstractmethod
    def params(self, body: Json) -> Params:
        """Raises ValueError for a body the real server would refuse with 400."""

    def preamble(self, gen: Generation) -> list[Json]:
        return []

    @abstractmethod
    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        """The object carrying ``text`` for choice ``index``; ``emitted`` includes it."""

    @abstractmethod
    def closing(self, gen: Generation) -> list[Json]:
        """The objects that end a complete stream (before ``done_marker``)."""

    @abstractmethod
    def whole(self, gen: Generation) -> Json:
        """The single object of a non-streamed answer."""


class _Ollama(Endpoint):
    family = "ollama"
    stream_default = True

    @staticmethod
    def created_at() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _done(self, gen: Generation) -> Json:
        choice = gen.choices[0]
        total_ns = int((time.monotonic() - gen.started) * 1e9)
        return {
            "done": True,
            "done_reason": choice.finish_reason,
            "total_duration": total_ns,
            "load_duration": 1000,
            "prompt_eval_count": gen.prompt_tokens,
            "prompt_eval_duration": 1000,
            "eval_count": approx_tokens(choice.text),
            "eval_duration": total_ns // 2,
        }

    def _options(self, body: Json) -> tuple[tuple[str, ...], int | None]:
        options = body.get("options")
        if options is None:
            return (), None
        if not isinstance(options, dict):
            raise ValueError("'options' must be an object")
        return _stops(options.get("stop")), _limit(options.get("num_predict"))


class OllamaGenerate(_Ollama):
    def params(self, body: Json) -> Params:
        stop, limit = self._options(body)
        prompt = _text(body.get("prompt", "")) + _text(body.get("suffix", ""))
        stream = bool(body.get("stream", self.stream_default))
        return Params(_model(body), stream, stop, limit, approx_tokens(prompt))

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        head = {"model": gen.model, "created_at": self.created_at()}
        return {**head, "response": text, "done": False}

    def closing(self, gen: Generation) -> list[Json]:
        head = {"model": gen.model, "created_at": self.created_at(), "response": ""}
        return [{**head, **self._done(gen), "context": [1, 2, 3]}]

    def whole(self, gen: Generation) -> Json:
        (final,) = self.closing(gen)
        return {**final, "response": gen.choices[0].text}


class OllamaChat(_Ollama):
    def params(self, body: Json) -> Params:
        stop, limit = self._options(body)
        prompt_tokens = approx_tokens(_messages_text(body))
        stream = bool(body.get("stream", self.stream_default))
        return Params(_model(body), stream, stop, limit, prompt_tokens)

    def _message(self, gen: Generation, content: str) -> Json:
        return {
            "model": gen.model,
            "created_at": self.created_at(),
            "message": {"role": "assistant", "content": content},
        }

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        return {**self._message(gen, text), "done": False}

    def closing(self, gen: Generation) -> list[Json]:
        return [{**self._message(gen, ""), **self._done(gen)}]

    def whole(self, gen: Generation) -> Json:
        return {**self._message(gen, gen.choices[0].text), **self._done(gen)}


class _OpenAI(Endpoint):
    family = "openai"

    def _head(self, gen: Generation, obj: str) -> Json:
        return {"id": gen.id, "object": obj, "created": gen.created, "model": gen.model}

    def _usage(self, gen: Generation) -> Json:
        completion = sum(approx_tokens(choice.text) for choice in gen.choices)
        return {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": gen.prompt_tokens + completion,
        }


class OpenAICompletions(_OpenAI):
    def params(self, body: Json) -> Params:
        prompt = body.get("prompt", "")
        prompts = None
        if isinstance(prompt, list):
            if not prompt:
                raise ValueError("'prompt' must not be an empty list")
            prompts = tuple(_text(item) for item in prompt)
            prompt = "".join(prompts)
        return Params(
            _model(body),
            bool(body.get("stream", self.stream_default)),
            _stops(body.get("stop")),
            _limit(body.get("max_tokens")),
            approx_tokens(_text(prompt) + _text(body.get("suffix") or "")),
            prompts,
        )

    def _choice(self, index: int, text: str, finish: str | None) -> Json:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        head = self._head(gen, "text_completion")
        return {**head, "choices": [self._choice(index, text, None)]}

    def closing(self, gen: Generation) -> list[Json]:
        head = self._head(gen, "text_completion")
        return [
            {**head, "choices": [self._choice(index, "", choice.finish_reason)]}
            for index, choice in enumerate(gen.choices)
        ]

    def whole(self, gen: Generation) -> Json:
        choices = [
            self._choice(index, choice.text, choice.finish_reason)
            for index, choice in enumerate(gen.choices)
        ]
        return {**self._head(gen, "text_completion"), "choices": choices, "usage": self._usage(gen)}


class OpenAIChat(_OpenAI):
    def params(self, body: Json) -> Params:
        limit = _limit(body.get("max_completion_tokens")) or _limit(body.get("max_tokens"))
        return Params(
            _model(body),
            bool(body.get("stream", self.stream_default)),
            _stops(body.get("stop")),
            limit,
            approx_tokens(_messages_text(body)),
        )

    def _chunk(self, gen: Generation, delta: Json, finish: str | None) -> Json:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._head(gen, "chat.completion.chunk"), "choices": [choice]}

    def preamble(self, gen: Generation) -> list[Json]:
        return [self._chunk(gen, {"role": "assistant", "content": ""}, None)]

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        return self._chunk(gen, {"content": text}, None)

    def closing(self, gen: Generation) -> list[Json]:
        return [self._chunk(gen, {}, gen.choices[0].finish_reason)]

    def whole(self, gen: Generation) -> Json:
        choice = gen.choices[0]
        message = {"role": "assistant", "content": choice.text}
        choices = [{"index": 0, "message": message, "finish_reason": choice.finish_reason}]
        return {**self._head(gen, "chat.completion"), "choices": choices, "usage": self._usage(gen)}


class LlamaCppCompletion(Endpoint):
    family = "llamacpp"

    def _prompt_text(self, body: Json) -> str:
        return _text(body.get("prompt", ""))

    def params(self, body: Json) -> Params:
        return Params(
            _model(body),
            bool(body.get("stream", self.stream_default)),
            _stops(body.get("stop")),
            _limit(body.get("n_predict")),
            approx_tokens(self._prompt_text(body)),
        )

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        return {
            "index": 0,
            "content": text,
            "tokens": [],
            "stop": False,
            "id_slot": 0,
            "tokens_predicted": approx_tokens(emitted),
            "tokens_evaluated": gen.prompt_tokens,
        }

    def _final(self, gen: Generation, content: str) -> Json:
        choice = gen.choices[0]
        if choice.stopping_word:
            stop_type = "word"
        else:
            stop_type = "limit" if choice.finish_reason == "length" else "eos"
        return {
            "index": 0,
            "content": content,
            "tokens": [],
            "stop": True,
            "id_slot": 0,
            "stop_type": stop_type,
            "model": gen.model,
            "tokens_predicted": approx_tokens(choice.text),
            "tokens_evaluated": gen.prompt_tokens,
            "generation_settings": {},
            "prompt": "",
            "has_new_line": "\n" in choice.text,
            "truncated": False,
            "stopping_word": choice.stopping_word,
            "timings": {"predicted_ms": 1.0},
        }

    def closing(self, gen: Generation) -> list[Json]:
        return [self._final(gen, "")]

    def whole(self, gen: Generation) -> Json:
        return self._final(gen, gen.choices[0].text)


class LlamaCppInfill(LlamaCppCompletion):
    def _prompt_text(self, body: Json) -> str:
        extra = body.get("input_extra") or []
        if not isinstance(extra, list):
            raise ValueError("'input_extra' must be a list")
        parts = [_text(body.get(key, "")) for key in ("input_prefix", "input_suffix", "prompt")]
        parts += [_text(item.get("text", "")) for item in extra if isinstance(item, dict)]
        return "".join(parts)


ENDPOINTS: dict[str, Endpoint] = {
    "/api/generate": OllamaGenerate(),
    "/api/chat": OllamaChat(),
    "/v1/completions": OpenAICompletions(),
    "/v1/chat/completions": OpenAIChat(),
    "/completion": LlamaCppCompletion(),
    "/infill": LlamaCppInfill(),
}


def family_of(path: str) -> Family:
    """Which family answers ``path``, for the shape of its errors."""
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/v1/"):
        return "openai"
    return "llamacpp"
