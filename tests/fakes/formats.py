"""The wire formats the fake provider speaks, one :class:`Endpoint` per generation route.

Six families, framed the way the real servers frame them:

- ``ollama`` (``/api/generate``, ``/api/chat``): NDJSON, one JSON object per line, the last one
  ``"done": true``; streams unless the body says ``"stream": false``.
- ``openai`` (``/v1/completions``, ``/v1/chat/completions``; vLLM, llama.cpp, LM Studio):
  server-sent events ``data: {...}\\n\\n`` ending with ``data: [DONE]``; streams only on request.
- ``llamacpp`` (``/completion``, ``/infill``): server-sent events without ``[DONE]``, the last
  event ``"stop": true``; streams only on request.
- ``anthropic`` (``/v1/messages``, and ``/v1/models`` asked with Anthropic's headers): named
  server-sent events (``event: content_block_delta`` …) ending with ``message_stop``, no
  ``[DONE]``; errors ``{"type": "error", "error": {"type", "message"}}``; streams only on
  request. Like the API it refuses a ``system`` role in ``messages``, a missing ``max_tokens``
  and whitespace-only stop sequences (400).
- ``mistral`` (``/v1/fim/completions``, Codestral): server-sent events of chat-completion
  chunks ending with ``data: [DONE]``; errors ``{"object": "error", "message", "type"}``, an
  unknown model is 400 ``invalid_model``, and like the API (FastAPI) it refuses fields it does
  not know with 422; streams only on request. Its chat route is the OpenAI one.
- ``tabby`` (Tabby's ``/v1/completions``, what tabby-agent sends): ``{"language", "segments":
  {"prefix", "suffix", ...}}`` in, ``{"id", "choices": [{"index", "text"}]}`` out, never
  streamed (the Tabby server's completion route has no stream). It shares its path with
  OpenAI's completions: :func:`endpoint_for` tells them apart by the body (``segments`` and no
  ``prompt``). A body without a string ``segments.prefix`` is 422, as Tabby's JSON extractor
  answers it.

An endpoint reads the request body into :class:`Params`, and turns a :class:`Generation` (the
reply text already cut by stop sequences and limits) into JSON objects: the preamble sent before
the text, one object per text piece, the closing objects, or the whole non-streamed answer.
Token counts are estimates at 4 characters per token, the same rule that applies the limits.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

Family = Literal["ollama", "openai", "llamacpp", "anthropic", "mistral", "tabby"]
Json = dict[str, Any]

CHARS_PER_TOKEN = 4

# Anthropic's error types by HTTP status (its errors page), and back: an error type injected
# mid-stream (Fault.error_event) is answered with its status when the answer is not streamed.
ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_STATUS: dict[str, int] = {kind: status for status, kind in ANTHROPIC_ERROR_TYPES.items()}


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
    """The error object each family's servers send; ``code`` is OpenAI's machine-readable one
    (for ``mistral``, ``invalid_model`` gives Mistral's unknown-model error)."""
    if family == "ollama":
        return {"error": message}
    if family == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}
    if family == "mistral":
        if status in (401, 429):  # answered by Mistral's gateway, in its own shape
            return {"message": message, "request_id": "fake-request-id"}
        if status == 422:  # FastAPI's validation error, wrapped in Mistral's error object
            # "body.stop: Input should be …" is FastAPI's loc ["body", "stop"] and its msg.
            where, sep, msg = message.partition(": ")
            loc = where.split(".") if sep and where.startswith("body") else ["body"]
            msg = msg if sep and where.startswith("body") else message
            detail = [{"type": "value_error", "loc": loc, "msg": msg, "input": None}]
            return {
                "object": "error",
                "message": {"detail": detail},
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        if code == "invalid_model":
            return {
                "object": "error",
                "message": message,
                "type": "invalid_model",
                "param": None,
                "code": "1500",
            }
        kind = "internal_server_error" if status >= 500 else "invalid_request_error"
        return {"object": "error", "message": message, "type": kind, "param": None, "code": None}
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
    id_prefix: ClassVar[str] = "cmpl-"
    invalid_status: ClassVar[int] = 400  # the status of a body the server refuses

    @property
    def content_type(self) -> str:
        return "application/x-ndjson" if self.family == "ollama" else "text/event-stream"

    @property
    def done_marker(self) -> bytes:
        """Written after the closing objects; only the OpenAI-style routes have one."""
        return b"data: [DONE]\n\n" if self.family in ("openai", "mistral") else b""

    def frame(self, obj: Json) -> bytes:
        data = json.dumps(obj, separators=(",", ":"))
        return f"{data}\n".encode() if self.family == "ollama" else f"data: {data}\n\n".encode()

    def garbage(self) -> bytes:
        """A line framed correctly whose payload is not JSON."""
        return b'{"response": oops\n' if self.family == "ollama" else b"data: {oops\n\n"

    def error_event(self, error_type: str, message: str) -> bytes:
        """The family's error object, framed as one more event of a stream already under way
        (its HTTP status was 200): what a server sends when generation fails midway."""
        status = ERROR_STATUS.get(error_type, 500)
        return self.frame(error_body(self.family, status, message))

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
    family: ClassVar[Family] = "openai"

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
    id_prefix = "chatcmpl-"

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


class MistralFim(OpenAIChat):
    """Codestral's ``/v1/fim/completions``: FIM in, chat-completion chunks out."""

    family = "mistral"
    id_prefix = "fim-"
    invalid_status = 422
    FIELDS = frozenset(
        {
            "model",
            "prompt",
            "suffix",
            "temperature",
            "top_p",
            "max_tokens",
            "min_tokens",
            "stream",
            "stop",
            "random_seed",
            "metadata",
        }
    )

    def params(self, body: Json) -> Params:
        unknown = sorted(set(body) - self.FIELDS)
        if unknown:
            raise ValueError(f"body.{unknown[0]}: Extra inputs are not permitted")
        if not isinstance(body.get("model"), str):
            raise ValueError("body.model: Field required")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError("body.prompt: Field required")
        suffix = body.get("suffix") or ""
        return Params(
            _model(body),
            bool(body.get("stream", self.stream_default)),
            _stops(body.get("stop")),
            _limit(body.get("max_tokens")),
            approx_tokens(prompt + _text(suffix)),
        )

    def closing(self, gen: Generation) -> list[Json]:
        # Mistral puts the usage in the last chunk, with the finish reason.
        last = self._chunk(gen, {"content": ""}, gen.choices[0].finish_reason)
        return [{**last, "usage": self._usage(gen)}]


class AnthropicMessages(Endpoint):
    """``/v1/messages``: the Messages API, its named events and its validation."""

    family = "anthropic"
    id_prefix = "msg_fake"

    def frame(self, obj: Json) -> bytes:
        data = json.dumps(obj, separators=(",", ":"))
        return f"event: {obj['type']}\ndata: {data}\n\n".encode()

    def garbage(self) -> bytes:
        return b"event: content_block_delta\ndata: {oops\n\n"

    def error_event(self, error_type: str, message: str) -> bytes:
        return self.frame({"type": "error", "error": {"type": error_type, "message": message}})

    def params(self, body: Json) -> Params:
        model = _model(body)
        if model is None:
            raise ValueError("model: Field required")
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise ValueError("max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages: at least one message is required")
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                raise ValueError(
                    'messages: Unexpected role "system". The Messages API accepts a top-level'
                    ' `system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise ValueError("messages: each message needs a role, user or assistant")
        stop = body.get("stop_sequences", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ValueError("stop_sequences: Input should be a valid list of strings")
        if not all(s.strip() for s in stop):
            raise ValueError("stop_sequences: each stop sequence must contain non-whitespace")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise ValueError("temperature: Input should be less than or equal to 1")
        text = _blocks_text(body.get("system", "")) + "".join(
            _blocks_text(m.get("content", "")) for m in messages
        )
        stream = bool(body.get("stream", self.stream_default))
        return Params(model, stream, tuple(stop), _limit(max_tokens), approx_tokens(text))

    @staticmethod
    def _stop(gen: Generation) -> Json:
        choice = gen.choices[0]
        if choice.finish_reason == "length":
            return {"stop_reason": "max_tokens", "stop_sequence": None}
        if choice.stopping_word:
            return {"stop_reason": "stop_sequence", "stop_sequence": choice.stopping_word}
        return {"stop_reason": "end_turn", "stop_sequence": None}

    def _message(self, gen: Generation, content: list[Json], output_tokens: int) -> Json:
        return {
            "id": gen.id,
            "type": "message",
            "role": "assistant",
            "model": gen.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": gen.prompt_tokens, "output_tokens": output_tokens},
        }

    def preamble(self, gen: Generation) -> list[Json]:
        return [
            {"type": "message_start", "message": self._message(gen, [], 1)},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
        ]

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        delta = {"type": "text_delta", "text": text}
        return {"type": "content_block_delta", "index": 0, "delta": delta}

    def closing(self, gen: Generation) -> list[Json]:
        output_tokens = approx_tokens(gen.choices[0].text)
        return [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": self._stop(gen),
                "usage": {"output_tokens": output_tokens},
            },
            {"type": "message_stop"},
        ]

    def whole(self, gen: Generation) -> Json:
        choice = gen.choices[0]
        content = [{"type": "text", "text": choice.text}]
        return {**self._message(gen, content, approx_tokens(choice.text)), **self._stop(gen)}


def _blocks_text(content: object) -> str:
    """Anthropic content: a string, or a list of blocks of which text blocks count."""
    if isinstance(content, list):
        return "".join(_text(block.get("text", "")) for block in content if isinstance(block, dict))
    return _text(content)


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


class TabbyCompletions(Endpoint):
    """Tabby's ``/v1/completions``: segments in, choices out, one JSON answer (no stream).

    The request names no model and no token limit: the Tabby server decides both, so the
    fake's first model answers and only the reply's own length limits it.
    """

    family = "tabby"
    invalid_status = 422

    def params(self, body: Json) -> Params:
        segments = body.get("segments")
        if not isinstance(segments, dict) or not isinstance(segments.get("prefix"), str):
            raise ValueError("segments.prefix: missing field `prefix`")
        suffix = segments.get("suffix") or ""
        return Params(None, False, (), None, approx_tokens(segments["prefix"] + _text(suffix)))

    def piece(self, gen: Generation, index: int, text: str, emitted: str) -> Json:
        return {"id": gen.id, "choices": [{"index": index, "text": text}]}

    def closing(self, gen: Generation) -> list[Json]:
        return []

    def whole(self, gen: Generation) -> Json:
        choices = [{"index": index, "text": c.text} for index, c in enumerate(gen.choices)]
        return {"id": gen.id, "choices": choices}


TABBY_COMPLETIONS = TabbyCompletions()

ENDPOINTS: dict[str, Endpoint] = {
    "/api/generate": OllamaGenerate(),
    "/api/chat": OllamaChat(),
    "/v1/completions": OpenAICompletions(),
    "/v1/chat/completions": OpenAIChat(),
    "/v1/fim/completions": MistralFim(),
    "/v1/messages": AnthropicMessages(),
    "/completion": LlamaCppCompletion(),
    "/infill": LlamaCppInfill(),
}


def endpoint_for(path: str, body: object) -> Endpoint | None:
    """The generation route that answers a POST to ``path`` with ``body`` (parsed JSON), if any.

    ``/v1/completions`` is OpenAI's and Tabby's: a body with ``segments`` and no ``prompt`` is
    Tabby's (tabby-agent sends that), any other body OpenAI's.
    """
    if (
        path == "/v1/completions"
        and isinstance(body, dict)
        and "segments" in body
        and "prompt" not in body
    ):
        return TABBY_COMPLETIONS
    return ENDPOINTS.get(path)


def family_of(path: str, headers: Mapping[str, str]) -> Family:
    """Which family answers ``path``, for the shape of its errors and its authentication.

    Anthropic and OpenAI share ``/v1/models``: a request carrying Anthropic's headers (the API
    requires ``anthropic-version`` on every request) is answered the Anthropic way.
    """
    if path.startswith("/api/"):
        return "ollama"
    if not path.startswith("/v1/"):
        return "llamacpp"
    if path == "/v1/messages" or "anthropic-version" in headers or "x-api-key" in headers:
        return "anthropic"
    if path.startswith("/v1/fim/"):
        return "mistral"
    return "openai"
