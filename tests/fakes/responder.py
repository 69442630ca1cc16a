"""How the fake provider answers: routing, faults, generation and streaming.

Runs on the server's thread. A :class:`Responder` is the :class:`LoopbackServer` handler of one
:class:`~tests.fakes.provider.FakeProvider`; it reads the provider's settings (``reply``,
``chunk_size``, ``models``, ``require_api_key``) afresh for every request, so a test may change
them between requests, and appends every request to ``provider.requests`` as soon as it is parsed.

Order of a generation request: record it; take its fault; wait for a generation slot (see
:mod:`tests.fakes.slots`; a client that leaves meanwhile is never served); latency, which stands
for prompt processing and so runs inside the slot; then hang, or the injected error status;
then 400 (Mistral: 422) for a body that is not a JSON object, 401 for a missing or wrong key
(Anthropic: ``x-api-key``, then 400 without ``anthropic-version``), 400/422 for a body the
format refuses, the format's unknown-model error; then the answer, streamed or whole, shaped by
the fault's ``garbage``, ``truncate_after``, ``error_event`` and ``chunk_delay_ms``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from tests.fakes.formats import (
    CHARS_PER_TOKEN,
    ENDPOINTS,
    ERROR_STATUS,
    Choice,
    Endpoint,
    Family,
    Generation,
    Json,
    Params,
    endpoint_for,
    error_body,
    family_of,
)
from tests.fakes.http_server import Exchange
from tests.fakes.records import Fault, FaultQueue, RecordedRequest
from tests.fakes.slots import SlotGate

if TYPE_CHECKING:
    from tests.fakes.provider import FakeProvider

logger = logging.getLogger(__name__)

_FLOOD_BLOCK = b"a" * (64 * 1024)  # one chunk of a flooded body or a giant token
_GIANT_MARK = "GIANT-TOKEN-MARK"  # where a giant token's text goes in its event


def _cut(text: str, stop: tuple[str, ...], max_tokens: int | None) -> Choice:
    """The reply as the request's stop sequences and token limit leave it."""
    hits = [(text.find(word), word) for word in stop if word in text]
    stopping_word = ""
    if hits:
        at, stopping_word = min(hits)
        text = text[:at]
    if max_tokens is not None and len(text) > max_tokens * CHARS_PER_TOKEN:
        return Choice(text[: max_tokens * CHARS_PER_TOKEN], "length", "")
    return Choice(text, "stop", stopping_word)


def _asks_fim(record: RecordedRequest) -> bool:
    """llama.cpp's /infill, or an Ollama generate with a suffix (its FIM)."""
    if record.path == "/infill":
        return True
    return record.path == "/api/generate" and bool(record.body.get("suffix"))


def _ollama_name(name: str) -> str:
    # Ollama resolves a name without a tag to its ":latest" tag.
    return name if ":" in name else f"{name}:latest"


def _unknown_model(family: Family, model: str) -> tuple[int, str, str | None]:
    """(status, message, code) of each family's answer to a model it does not serve."""
    if family == "ollama":
        return 404, f'model "{model}" not found, try pulling it first', None
    if family == "anthropic":
        return 404, f"model: {model}", None
    if family == "mistral":
        return 400, f"Invalid model: {model}", "invalid_model"
    return 404, f"The model `{model}` does not exist", "model_not_found"


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


async def _complete(record: RecordedRequest, last_write: Awaitable[bool]) -> None:
    """Mark ``record`` complete, then make ``last_write``, the one that ends the response.

    In that order so that a client that has read the whole response never finds the record
    behind it (the test reads it from another thread as soon as the bytes arrive); undone if the
    write fails.
    """
    record.completed, record.finished_at = True, time.monotonic()
    if not await last_write:
        record.completed, record.finished_at = False, None


class Responder:
    """The LoopbackServer handler of a FakeProvider: called once per request, concurrently."""

    def __init__(self, provider: FakeProvider, faults: FaultQueue, slots: SlotGate) -> None:
        self._provider = provider
        self._faults = faults
        self._slots = slots
        self._ids = itertools.count(1)

    async def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        body: Any = None
        bad_json = False
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                bad_json = True
        record = RecordedRequest(
            request.method, request.path, dict(request.headers), body, time.monotonic()
        )
        self._provider.requests.append(record)  # list.append is atomic: no lock needed
        try:
            endpoint = endpoint_for(request.path, body)
            if endpoint is not None and request.method == "POST":
                await self._generate(exchange, record, endpoint, bad_json)
            else:
                await self._serve_info(exchange, record)
        except Exception:
            # A bug here or in a reply callable: say so in the test log, answer 500 if we still can.
            logger.exception("fake provider failed on %s %s", request.method, request.path)
            if not exchange.started:
                await exchange.send(500, b'{"error":"fake provider error"}', "application/json")
            await exchange.drop()
        finally:
            # A connection the server ended (truncation, stop()) is not the client leaving.
            gone = exchange.gone.is_set() and not exchange.dropped
            record.disconnected = gone and not record.completed
            if record.finished_at is None:
                record.finished_at = time.monotonic()

    async def _send_json(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        status: int,
        obj: Json,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(obj).encode()
        await _complete(record, exchange.send(status, body, "application/json", headers))

    async def _send_error(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        family = family_of(record.path, record.headers)
        obj = error_body(family, status, message, code=code)
        await self._send_json(exchange, record, status, obj, headers)

    def _refusal(self, record: RecordedRequest) -> tuple[int, str, str | None] | None:
        """(status, message, code) when the request's headers are refused, else None.

        With ``require_api_key`` the /v1 routes want the key: Anthropic's as ``x-api-key``,
        the others' as ``Authorization: Bearer``. Anthropic also wants ``anthropic-version``.
        """
        family = family_of(record.path, record.headers)
        key = self._provider.require_api_key
        if family == "anthropic":
            given = record.headers.get("x-api-key")
            if key is not None and given is None:
                return 401, "x-api-key header is required", None
            if key is not None and given != key:
                return 401, "invalid x-api-key", None
            if "anthropic-version" not in record.headers:
                return 400, "anthropic-version: header is required", None
            return None
        if key is None or family not in ("openai", "mistral"):
            return None
        if record.headers.get("authorization") == f"Bearer {key}":
            return None
        if family == "mistral":
            return 401, "Unauthorized", None
        return 401, "Incorrect API key provided", "invalid_api_key"

    async def _refuse_unauthorized(self, exchange: Exchange, record: RecordedRequest) -> bool:
        refusal = self._refusal(record)
        if refusal is None:
            return False
        status, message, code = refusal
        await self._send_error(exchange, record, status, message, code=code)
        return True

    async def _serve_info(self, exchange: Exchange, record: RecordedRequest) -> None:
        """Everything but generation: model lists, health, version; 404 and 405."""
        if await self._refuse_unauthorized(exchange, record):
            return
        family = family_of(record.path, record.headers)
        flood = self._provider.info_flood_bytes
        if flood is not None and record.method == "GET" and record.path not in ENDPOINTS:
            if await exchange.start_stream(200, "application/json") and await self._flood(
                exchange, record, b'{"models": ["', flood
            ):
                await _complete(record, exchange.end_stream(b'"]}'))
            return
        if record.path.startswith("/v1/models/") and record.method == "GET":
            await self._serve_model(exchange, record, family)
            return
        if record.path == "/v1/health" and record.method in ("GET", "POST"):
            # Tabby's health route answers both; tabby-agent asks with GET, POST after a 405.
            await self._send_json(exchange, record, 200, self._tabby_health())
            return
        getters: dict[str, Callable[[], Json]] = {
            "/api/tags": self._ollama_tags,
            "/api/version": lambda: {"version": "0.12.0"},
            "/v1/models": (
                self._anthropic_models if family == "anthropic" else self._openai_models
            ),
            "/health": lambda: {"status": "ok"},
            "/props": self._llamacpp_props,
            # Tabby's server settings, which tabby-agent reads after a health check from a
            # server at 0.9 or later: telemetry off, so nothing is sent to Tabby's servers.
            "/v1beta/server_setting": lambda: {"disable_client_side_telemetry": True},
        }
        getter = getters.get(record.path)
        if getter is not None and record.method == "GET":
            await self._send_json(exchange, record, 200, getter())
        elif getter is not None or record.path in ENDPOINTS:
            await self._send_json(exchange, record, 405, {"error": "method not allowed"})
        elif family == "anthropic":
            await self._send_error(exchange, record, 404, "Not Found")
        else:
            await self._send_json(exchange, record, 404, {"error": f"not found: {record.path}"})

    async def _serve_model(
        self, exchange: Exchange, record: RecordedRequest, family: Family
    ) -> None:
        """``GET /v1/models/{id}``: one model (Anthropic and OpenAI both have it), or 404."""
        model = unquote(record.path.removeprefix("/v1/models/"))
        if model not in self._provider.models:
            if family == "anthropic":
                await self._send_error(exchange, record, 404, f"model: {model}")
            else:
                message = f"The model '{model}' does not exist"
                await self._send_error(exchange, record, 404, message, code="model_not_found")
            return
        card = self._anthropic_model(model) if family == "anthropic" else self._openai_model(model)
        await self._send_json(exchange, record, 200, card)

    def _ollama_tags(self) -> Json:
        return {
            "models": [
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2026-01-01T00:00:00.000000Z",
                    "size": 1234,
                    "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                    "details": {
                        "family": "qwen2",
                        "parameter_size": "1.5B",
                        "quantization_level": "Q4_K_M",
                        "format": "gguf",
                    },
                }
                for name in self._provider.models
            ]
        }

    @staticmethod
    def _openai_model(model: str) -> Json:
        return {"id": model, "object": "model", "created": 0, "owned_by": "fake"}

    def _openai_models(self) -> Json:
        return {"object": "list", "data": [self._openai_model(m) for m in self._provider.models]}

    @staticmethod
    def _anthropic_model(model: str) -> Json:
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "2026-01-01T00:00:00Z",
        }

    def _anthropic_models(self) -> Json:
        models = self._provider.models
        return {
            "data": [self._anthropic_model(m) for m in models],
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }

    def _llamacpp_props(self) -> Json:
        return {
            "default_generation_settings": {},
            "total_slots": self._provider.slots or 1,
            "model_path": f"/models/{self._provider.models[0]}.gguf",
        }

    def _tabby_health(self) -> Json:
        """Tabby's ``HealthState``: tabby-agent is "ready" once it has ``model`` and ``device``."""
        return {
            "model": self._provider.models[0],
            "device": "cpu",
            "arch": "x86_64",
            "cpu_info": "fake",
            "cpu_count": 1,
            "cuda_devices": [],
            "version": {
                "build_date": "2026-01-01",
                "build_timestamp": "2026-01-01T00:00:00Z",
                "git_sha": "0" * 40,
                "git_describe": "v0.11.1",
            },
        }

    def _knows_model(self, family: Family, model: str) -> bool:
        if family == "ollama":
            return _ollama_name(model) in {_ollama_name(m) for m in self._provider.models}
        return model in self._provider.models

    async def _generate(
        self, exchange: Exchange, record: RecordedRequest, endpoint: Endpoint, bad_json: bool
    ) -> None:
        # Every generation POST takes its fault first: faults stand for the network and the
        # server's state, which a malformed or unauthorized request meets too.
        fault = self._faults.take()
        if not await self._slots.acquire(exchange.gone):
            return  # the client left while queued: never generated, recorded as disconnected
        record.admitted_at = time.monotonic()
        try:
            await self._answer_generation(exchange, record, endpoint, bad_json, fault)
        finally:
            self._slots.release()

    async def _answer_generation(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        endpoint: Endpoint,
        bad_json: bool,
        fault: Fault,
    ) -> None:
        """Everything after the slot is held: latency, faults, validation, the answer."""
        if not await exchange.pause(fault.latency_ms / 1000):
            return
        if fault.hang:
            await exchange.wait_gone()
            return
        if fault.status is not None:
            headers = dict(fault.headers) or None
            if fault.retry_after is not None:
                headers = {**(headers or {}), "Retry-After": _seconds(fault.retry_after)}
            message = f"injected fault: HTTP {fault.status}"
            await self._send_error(exchange, record, fault.status, message, headers=headers)
            return
        invalid = endpoint.invalid_status
        if bad_json or not isinstance(record.body, dict):
            await self._send_error(exchange, record, invalid, "request body is not a JSON object")
            return
        if await self._refuse_unauthorized(exchange, record):
            return
        try:
            params = endpoint.params(record.body)
        except ValueError as exc:
            await self._send_error(exchange, record, invalid, str(exc))
            return
        model = params.model or self._provider.models[0]
        if endpoint.family != "llamacpp" and not self._knows_model(endpoint.family, model):
            status, message, code = _unknown_model(endpoint.family, model)
            await self._send_error(exchange, record, status, message, code=code)
            return
        if not self._provider.fim_supported and _asks_fim(record):
            # What the real servers answer for a model without fill-in-the-middle tokens.
            if record.path == "/infill":
                message = "Infill is not supported by this model"
                await self._send_error(exchange, record, 501, message)
            else:
                message = f"registry.ollama.ai/library/{model} does not support insert"
                await self._send_error(exchange, record, 400, message)
            return
        generation = self._generation(record, endpoint, params, model)
        if params.stream:
            await self._stream(exchange, record, endpoint, generation, fault)
        else:
            await self._answer_whole(exchange, record, endpoint, generation, fault)

    def _generation(
        self, record: RecordedRequest, endpoint: Endpoint, params: Params, model: str
    ) -> Generation:
        if params.prompt_list is None:
            texts = [self._reply_text(record)]
        else:
            # Each prompt of a list gets its own reply: the callable sees the request as if the
            # body held that prompt alone.
            texts = [
                self._reply_text(replace(record, body={**record.body, "prompt": prompt}))
                for prompt in params.prompt_list
            ]
        return Generation(
            id=f"{endpoint.id_prefix}{next(self._ids)}",
            model=model,
            created=int(time.time()),
            started=record.received_at,
            prompt_tokens=params.prompt_tokens,
            choices=tuple(_cut(text, params.stop, params.max_tokens) for text in texts),
        )

    def _reply_text(self, record: RecordedRequest) -> str:
        reply = self._provider.reply
        return reply if isinstance(reply, str) else reply(record)

    async def _answer_whole(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        endpoint: Endpoint,
        generation: Generation,
        fault: Fault,
    ) -> None:
        if fault.error_event is not None:
            status = ERROR_STATUS.get(fault.error_event, 500)
            message = f"injected fault: {fault.error_event}"
            await self._send_error(exchange, record, status, message)
            return
        if fault.garbage:
            body = endpoint.garbage()
        else:
            body = json.dumps(endpoint.whole(generation)).encode()
        headers = dict(fault.headers) or None
        if fault.truncate_after is not None:
            await exchange.send(200, body, "application/json", headers, cut_at=len(body) // 2)
        else:
            await _complete(record, exchange.send(200, body, "application/json", headers))

    async def _stream(
        self,
        exchange: Exchange,
        record: RecordedRequest,
        endpoint: Endpoint,
        generation: Generation,
        fault: Fault,
    ) -> None:
        if not await exchange.start_stream(200, endpoint.content_type, dict(fault.headers) or None):
            return
        if fault.flood_bytes is not None:
            head = b"" if endpoint.family == "ollama" else b"data: "
            if await self._flood(exchange, record, head, fault.flood_bytes):
                await _complete(record, exchange.end_stream())
            return
        if fault.garbage:
            # Correct HTTP framing around a payload that is not JSON, and no format terminator.
            await _complete(record, exchange.end_stream(endpoint.garbage()))
            return
        for obj in endpoint.preamble(generation):
            if not await exchange.send_chunk(endpoint.frame(obj)):
                return
        if fault.giant_token is not None:
            event = endpoint.frame(endpoint.piece(generation, 0, _GIANT_MARK, _GIANT_MARK))
            head, _, tail = event.partition(_GIANT_MARK.encode())
            if not await self._flood(exchange, record, head, fault.giant_token):
                return
            if not await exchange.send_chunk(tail):
                return
        pieces = self._pieces(generation)
        if fault.truncate_after is not None:
            pieces = pieces[: fault.truncate_after]
        elif fault.error_event is not None:
            pieces = pieces[: fault.error_after]
        delay = fault.chunk_delay_ms / 1000
        for number, (index, text, emitted) in enumerate(pieces):
            if number and not await exchange.pause(delay):
                return
            piece = endpoint.piece(generation, index, text, emitted)
            record.chunks_sent += 1  # counted before it goes, like completion (see _complete)
            if not await exchange.send_chunk(endpoint.frame(piece)):
                record.chunks_sent -= 1
                return
        if fault.truncate_after is not None:
            await exchange.drop()
            return
        if fault.error_event is not None:
            event = endpoint.error_event(fault.error_event, f"injected fault: {fault.error_event}")
            if await exchange.pause(delay):
                await _complete(record, exchange.end_stream(event))
            return
        closing = b"".join(endpoint.frame(obj) for obj in endpoint.closing(generation))
        if await exchange.pause(delay):
            await _complete(record, exchange.end_stream(closing + endpoint.done_marker))

    @staticmethod
    async def _flood(exchange: Exchange, record: RecordedRequest, head: bytes, size: int) -> bool:
        """``head``, then ``size`` bytes of ``a`` with no line break; False if the client left."""
        if head and not await exchange.send_chunk(head):
            return False
        sent = 0
        while sent < size:
            block = _FLOOD_BLOCK[: size - sent]
            record.chunks_sent += 1
            if not await exchange.send_chunk(block):
                record.chunks_sent -= 1
                return False
            sent += len(block)
        return True

    def _pieces(self, generation: Generation) -> list[tuple[int, str, str]]:
        """(choice index, text, text emitted so far) in send order, choices interleaved."""
        size = max(1, self._provider.chunk_size)
        longest = max(len(choice.text) for choice in generation.choices)
        return [
            (index, choice.text[start : start + size], choice.text[: start + size])
            for start in range(0, longest, size)
            for index, choice in enumerate(generation.choices)
            if start < len(choice.text)
        ]
