"""The loopback provider speaks each wire format as the real servers do, and misbehaves on demand.

These tests talk to the fake over real HTTP with httpx (what Crucible's providers use) and parse
the real framing (NDJSON lines, SSE ``data:`` lines, Anthropic's named events), so the provider
tests built on the fake test against the same bytes a real Ollama, OpenAI-compatible, llama.cpp,
Anthropic or Codestral server would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

REPLY = "def add(a, b):\n    return a + b\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(reply=REPLY, chunk_size=4) as provider:
        yield provider


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url) as http:
        yield http


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines() if line]


ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
MESSAGES = {
    "model": "test-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` of every event of an Anthropic stream."""
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.endswith("\n\n")
    events = []
    for block in response.text.split("\n\n")[:-1]:
        name, data = block.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def sse_data(response: httpx.Response) -> list[str]:
    """The payload of every ``data:`` line; events are separated by a blank line."""
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.endswith("\n\n")
    events = response.text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event.removeprefix("data: ") for event in events]


# -- wire formats ------------------------------------------------------------------------------


def test_ollama_generate_streams_ndjson_by_default(client: httpx.Client) -> None:
    response = client.post("/api/generate", json={"model": "test-model", "prompt": "x"})

    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    *pieces, final = ndjson(response)
    assert "".join(p["response"] for p in pieces) == REPLY
    assert all(not p["done"] and len(p["response"]) <= 4 for p in pieces)
    assert pieces[0]["model"] == "test-model"
    assert pieces[0]["created_at"].endswith("Z")
    assert final["done"] is True
    assert final["response"] == ""
    assert final["done_reason"] == "stop"
    assert final["context"] == [1, 2, 3]
    assert {"total_duration", "load_duration", "prompt_eval_count", "eval_count"} <= set(final)


def test_ollama_generate_without_stream_answers_one_object(client: httpx.Client) -> None:
    body = {"model": "test-model", "prompt": "x", "stream": False}
    response = client.post("/api/generate", json=body)

    assert "transfer-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    answer = response.json()
    assert answer["response"] == REPLY
    assert answer["done"] is True


def test_ollama_chat_streams_assistant_messages(client: httpx.Client) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    *pieces, final = ndjson(client.post("/api/chat", json=body))

    assert all(p["message"]["role"] == "assistant" and not p["done"] for p in pieces)
    assert "".join(p["message"]["content"] for p in pieces) == REPLY
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done"] is True
    assert final["done_reason"] == "stop"


def test_openai_completions_stream_ends_with_done(client: httpx.Client) -> None:
    body = {"model": "test-model", "prompt": "x", "stream": True}
    *events, done = sse_data(client.post("/v1/completions", json=body))

    assert done == "[DONE]"
    chunks = [json.loads(event) for event in events]
    assert all(c["object"] == "text_completion" and c["id"].startswith("cmpl-") for c in chunks)
    choices = [c["choices"][0] for c in chunks]
    assert "".join(choice["text"] for choice in choices) == REPLY
    assert [choice["finish_reason"] for choice in choices[-2:]] == [None, "stop"]


def test_openai_completions_prompt_list_gives_indexed_interleaved_choices(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.reply = lambda request: f"<{request.body['prompt']}>"
    body = {"model": "test-model", "prompt": ["first", "second"], "stream": True}
    *events, done = sse_data(client.post("/v1/completions", json=body))

    choices = [json.loads(event)["choices"][0] for event in events]
    assert [choice["index"] for choice in choices[:2]] == [0, 1]
    texts = {0: "", 1: ""}
    for choice in choices:
        texts[choice["index"]] += choice["text"]
    assert texts == {0: "<first>", 1: "<second>"}
    assert done == "[DONE]"

    whole = client.post("/v1/completions", json={**body, "stream": False}).json()
    assert [(c["index"], c["text"]) for c in whole["choices"]] == [(0, "<first>"), (1, "<second>")]


def test_openai_completions_without_stream_has_usage(client: httpx.Client) -> None:
    answer = client.post("/v1/completions", json={"model": "test-model", "prompt": "x"}).json()

    assert answer["object"] == "text_completion"
    assert answer["choices"] == [
        {"text": REPLY, "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_openai_chat_streams_role_then_deltas(client: httpx.Client) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    *events, done = sse_data(client.post("/v1/chat/completions", json=body))

    chunks = [json.loads(event) for event in events]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    first, *middle, last = [c["choices"][0] for c in chunks]
    assert first["delta"] == {"role": "assistant", "content": ""}
    assert "".join(choice["delta"]["content"] for choice in middle) == REPLY
    assert last == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert done == "[DONE]"


def test_openai_chat_without_stream(client: httpx.Client) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    answer = client.post("/v1/chat/completions", json=body).json()

    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert "usage" in answer


def test_llamacpp_infill_streams_without_done_marker(client: httpx.Client) -> None:
    body = {
        "input_prefix": "def add(",
        "input_suffix": "\n",
        "input_extra": [{"filename": "util.py", "text": "x = 1\n"}],
        "n_predict": 64,
        "stream": True,
        "cache_prompt": True,
    }
    events = [json.loads(event) for event in sse_data(client.post("/infill", json=body))]

    *pieces, final = events
    assert "".join(p["content"] for p in pieces) == REPLY
    assert all(p["stop"] is False and p["id_slot"] == 0 for p in pieces)
    assert [p["tokens_predicted"] for p in pieces] == sorted(p["tokens_predicted"] for p in pieces)
    assert final["stop"] is True
    assert final["content"] == ""
    assert final["stop_type"] == "eos"
    assert final["model"] == "test-model"


def test_llamacpp_completion_without_stream_and_any_model(client: httpx.Client) -> None:
    body = {"prompt": "x", "model": "whatever", "n_predict": 64}
    answer = client.post("/completion", json=body).json()

    assert answer["content"] == REPLY
    assert answer["stop"] is True
    assert answer["has_new_line"] is True


def test_anthropic_messages_stream_named_events_ending_with_message_stop(
    client: httpx.Client,
) -> None:
    body = {**MESSAGES, "stream": True, "system": "Be brief."}
    events = sse_events(client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS))

    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert (start["role"], start["content"], start["model"]) == ("assistant", [], "test-model")
    assert start["id"].startswith("msg_")
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" and len(d["text"]) <= 4 for d in deltas)
    assert "".join(d["text"] for d in deltas) == REPLY
    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert message_delta["usage"]["output_tokens"] > 0
    assert "[DONE]" not in client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS).text


def test_anthropic_messages_without_stream_answer_one_message(client: httpx.Client) -> None:
    answer = client.post("/v1/messages", json=MESSAGES, headers=ANTHROPIC_HEADERS).json()

    assert answer["type"] == "message" and answer["role"] == "assistant"
    assert answer["content"] == [{"type": "text", "text": REPLY}]
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("end_turn", None)
    assert answer["usage"]["input_tokens"] > 0 and answer["usage"]["output_tokens"] > 0

    limited = {**MESSAGES, "max_tokens": 2, "stop_sequences": ["zzz"]}
    answer = client.post("/v1/messages", json=limited, headers=ANTHROPIC_HEADERS).json()
    assert (answer["content"][0]["text"], answer["stop_reason"]) == (REPLY[:8], "max_tokens")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"messages": [{"role": "system", "content": "x"}]},
            'Unexpected role "system"',
            id="system-role",
        ),
        pytest.param({"max_tokens": None}, "max_tokens: Field required", id="no-max-tokens"),
        pytest.param({"messages": []}, "at least one message", id="no-messages"),
        pytest.param(
            {"stop_sequences": ["\n\n"]},
            "each stop sequence must contain non-whitespace",
            id="whitespace-stop",
        ),
        pytest.param({"temperature": 1.5}, "less than or equal to 1", id="temperature"),
    ],
)
def test_anthropic_refuses_what_the_api_refuses(
    client: httpx.Client, change: dict[str, Any], message: str
) -> None:
    body = {k: v for k, v in {**MESSAGES, **change}.items() if v is not None}
    refused = client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert refused.status_code == 400
    error = refused.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_anthropic_wants_its_version_header_and_x_api_key() -> None:
    with (
        FakeProvider(require_api_key="sk-ant") as fake,
        httpx.Client(base_url=fake.base_url) as client,
    ):
        missing = client.post("/v1/messages", json=MESSAGES, headers=ANTHROPIC_HEADERS)
        assert missing.status_code == 401
        assert missing.json()["error"] == {
            "type": "authentication_error",
            "message": "x-api-key header is required",
        }
        bearer = {**ANTHROPIC_HEADERS, "Authorization": "Bearer sk-ant"}
        assert client.post("/v1/messages", json=MESSAGES, headers=bearer).status_code == 401
        wrong = {**ANTHROPIC_HEADERS, "x-api-key": "sk-nope"}
        refused = client.post("/v1/messages", json=MESSAGES, headers=wrong)
        assert refused.json()["error"]["message"] == "invalid x-api-key"
        no_version = client.post("/v1/messages", json=MESSAGES, headers={"x-api-key": "sk-ant"})
        assert no_version.status_code == 400
        assert no_version.json()["error"]["message"] == "anthropic-version: header is required"
        right = {**ANTHROPIC_HEADERS, "x-api-key": "sk-ant"}
        assert client.post("/v1/messages", json=MESSAGES, headers=right).status_code == 200
        assert client.get("/v1/models/test-model", headers=right).status_code == 200


def test_anthropic_model_routes(client: httpx.Client) -> None:
    listing = client.get("/v1/models", headers=ANTHROPIC_HEADERS).json()
    assert listing == {
        "data": [
            {
                "type": "model",
                "id": "test-model",
                "display_name": "test-model",
                "created_at": "2026-01-01T00:00:00Z",
            }
        ],
        "has_more": False,
        "first_id": "test-model",
        "last_id": "test-model",
    }
    one = client.get("/v1/models/test-model", headers=ANTHROPIC_HEADERS).json()
    assert one == listing["data"][0]
    missing = client.get("/v1/models/claude-nope", headers=ANTHROPIC_HEADERS)
    assert missing.status_code == 404
    assert missing.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-nope"},
    }
    # Without Anthropic's headers the same routes answer the OpenAI way.
    assert client.get("/v1/models").json()["object"] == "list"
    assert client.get("/v1/models/test-model").json()["owned_by"] == "fake"
    assert client.get("/v1/models/nope").json()["error"]["code"] == "model_not_found"


FIM_BODY = {"model": "test-model", "prompt": "def add(", "suffix": "\n", "max_tokens": 64}


def test_mistral_fim_streams_chat_chunks_ending_with_done(client: httpx.Client) -> None:
    *events, done = sse_data(client.post("/v1/fim/completions", json={**FIM_BODY, "stream": True}))

    assert done == "[DONE]"
    chunks = [json.loads(event) for event in events]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    first, *middle, last = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == REPLY
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["total_tokens"] > 0


def test_mistral_fim_without_stream(client: httpx.Client) -> None:
    answer = client.post("/v1/fim/completions", json=FIM_BODY).json()

    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
    assert "usage" in answer


def test_mistral_refuses_unknown_fields_and_models_its_own_way(client: httpx.Client) -> None:
    extra = client.post("/v1/fim/completions", json={**FIM_BODY, "input_extra": []})
    assert extra.status_code == 422
    assert extra.json()["message"]["detail"][0]["loc"] == ["body", "input_extra"]
    assert extra.json()["message"]["detail"][0]["msg"] == "Extra inputs are not permitted"
    no_prompt = client.post("/v1/fim/completions", json={"model": "test-model"})
    assert no_prompt.status_code == 422

    unknown = client.post("/v1/fim/completions", json={**FIM_BODY, "model": "nope"})
    assert unknown.status_code == 400
    assert unknown.json() == {
        "object": "error",
        "message": "Invalid model: nope",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }


def test_mistral_wants_a_bearer_key() -> None:
    with (
        FakeProvider(require_api_key="mk") as fake,
        httpx.Client(base_url=fake.base_url) as client,
    ):
        refused = client.post("/v1/fim/completions", json=FIM_BODY)
        assert refused.status_code == 401
        assert refused.json()["message"] == "Unauthorized"
        key = {"Authorization": "Bearer mk"}
        assert client.post("/v1/fim/completions", json=FIM_BODY, headers=key).status_code == 200


StopCase = tuple[str, dict[str, Any], Callable[[dict[str, Any]], str]]
STOP_CASES: list[StopCase] = [
    (
        "/api/generate",
        {"prompt": "x", "stream": False, "options": {"stop": ["\n"]}},
        lambda answer: answer["response"],
    ),
    (
        "/api/chat",
        {"messages": [], "stream": False, "options": {"stop": ["\n"]}},
        lambda answer: answer["message"]["content"],
    ),
    ("/v1/completions", {"prompt": "x", "stop": "\n"}, lambda a: a["choices"][0]["text"]),
    (
        "/v1/chat/completions",
        {"messages": [], "stop": ["\n", "add"]},
        lambda answer: answer["choices"][0]["message"]["content"],
    ),
    ("/completion", {"prompt": "x", "stop": ["\n"]}, lambda answer: answer["content"]),
    ("/infill", {"input_prefix": "", "stop": ["\n"]}, lambda answer: answer["content"]),
    (
        "/v1/messages",
        {**MESSAGES, "stop_sequences": ["\n    return"]},
        lambda answer: answer["content"][0]["text"],
    ),
    (
        "/v1/fim/completions",
        {"prompt": "x", "stop": ["\n"]},
        lambda answer: answer["choices"][0]["message"]["content"],
    ),
]


@pytest.mark.parametrize(("path", "body", "text_of"), STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_stop_sequences_cut_the_reply_in_every_format(
    client: httpx.Client, path: str, body: dict[str, Any], text_of: Callable[[Any], str]
) -> None:
    headers = ANTHROPIC_HEADERS if path == "/v1/messages" else None
    answer = client.post(path, json={"model": "test-model", **body}, headers=headers).json()

    expected = "def " if path == "/v1/chat/completions" else "def add(a, b):"
    assert text_of(answer) == expected


def test_token_limit_cuts_at_four_characters_per_token(client: httpx.Client) -> None:
    answer = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).json()
    assert answer["choices"][0]["text"] == REPLY[:8]
    assert answer["choices"][0]["finish_reason"] == "length"

    body = {"prompt": "x", "n_predict": 2, "stream": True}
    *_, final = [json.loads(e) for e in sse_data(client.post("/completion", json=body))]
    assert final["stop_type"] == "limit"


# -- models, keys, info routes -------------------------------------------------------------------


def test_unknown_model_is_refused_in_each_family_shape(client: httpx.Client) -> None:
    ollama = client.post("/api/generate", json={"model": "nope", "prompt": "x"})
    assert ollama.status_code == 404
    assert ollama.json() == {"error": 'model "nope" not found, try pulling it first'}

    openai = client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert openai.status_code == 404
    assert openai.json()["error"] == {
        "message": "The model `nope` does not exist",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_anthropic_stop_sequence_is_reported(client: httpx.Client) -> None:
    body = {**MESSAGES, "stop_sequences": ["add"]}
    answer = client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS).json()
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("stop_sequence", "add")


def test_ollama_resolves_a_name_without_tag_to_latest(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.models = ["qwen:latest"]
    body = {"model": "qwen", "prompt": "x", "stream": False}
    assert client.post("/api/generate", json=body).status_code == 200


def test_api_key_is_required_on_v1_routes_only() -> None:
    with (
        FakeProvider(require_api_key="sekrit") as fake,
        httpx.Client(base_url=fake.base_url) as client,
    ):
        refused = client.get("/v1/models")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.json()["error"]["message"] == "Incorrect API key provided"

        key = {"Authorization": "Bearer sekrit"}
        assert client.get("/v1/models", headers=key).status_code == 200
        body = {"model": "test-model", "prompt": "x"}
        assert client.post("/v1/completions", json=body).status_code == 401
        assert client.post("/v1/completions", json=body, headers=key).status_code == 200
        assert client.get("/api/tags").status_code == 200
        assert fake.requests[0].headers.get("authorization") is None


def test_info_routes(client: httpx.Client) -> None:
    tags = client.get("/api/tags").json()["models"]
    assert [(m["name"], m["model"]) for m in tags] == [("test-model", "test-model")]
    assert tags[0]["digest"].startswith("sha256:")
    assert tags[0]["details"]["format"] == "gguf"
    assert client.get("/api/version").json() == {"version": "0.12.0"}
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in models["data"]] == [("test-model", "fake")]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/props").json()["model_path"] == "/models/test-model.gguf"


def test_unknown_path_wrong_method_and_bad_json(fake: FakeProvider, client: httpx.Client) -> None:
    assert client.get("/nowhere").status_code == 404
    assert client.get("/api/generate").status_code == 405
    bad = client.post("/v1/completions", content=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert fake.requests[-1].body is None
    assert [r.path for r in fake.generation_requests()] == ["/v1/completions"]


def test_keep_alive_serves_requests_on_one_connection(fake: FakeProvider) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        body = json.dumps({"model": "test-model", "prompt": "x", "stream": True})
        sockets, answers = [], []
        for _ in range(3):
            connection.request("POST", "/api/generate", body=body)
            answers.append(connection.getresponse().read())
            sockets.append(connection.sock)
        assert sockets[0] is sockets[1] is sockets[2]
        assert all(json.loads(a.splitlines()[-1])["done"] for a in answers)
        assert all(r.completed for r in fake.requests)
    finally:
        connection.close()


# -- faults ---------------------------------------------------------------------------------------


def test_latency_delays_the_first_byte_once(fake: FakeProvider, client: httpx.Client) -> None:
    fake.inject(Fault(latency_ms=600), times=1)
    body = {"model": "test-model", "prompt": "x", "stream": False}

    started = time.monotonic()
    client.post("/api/generate", json=body)
    slow = time.monotonic() - started
    started = time.monotonic()
    client.post("/api/generate", json=body)
    fast = time.monotonic() - started

    assert slow >= 0.6  # a sleep never ends early, whatever the load
    # Once: the second is not delayed. Its outcomes are ~0 s and 0.6 s; half-way is the bound.
    assert fast < 0.3


def test_status_429_with_retry_after_in_the_family_error_shape(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.inject(Fault(status=429, retry_after=2), times=1)
    body = {"model": "test-model", "prompt": "x"}

    limited = client.post("/v1/completions", json=body)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert set(limited.json()["error"]) >= {"message", "type", "code"}
    assert client.post("/v1/completions", json=body).status_code == 200


def test_faults_queue_in_order_and_clear(fake: FakeProvider, client: httpx.Client) -> None:
    fake.inject(Fault(status=500), times=1)
    fake.inject(Fault(status=503), times=2)
    fake.inject(Fault(status=502))
    body = {"prompt": "x"}
    statuses = [client.post("/completion", json=body).status_code for _ in range(5)]
    assert statuses == [500, 503, 503, 502, 502]
    assert client.post("/completion", json=body).json()["error"]["type"] == "server_error"

    client.get("/health")  # only generation requests use faults up
    fake.clear_faults()
    assert client.post("/completion", json=body).status_code == 200

    fake.inject(Fault(status=503))
    fake.reset()
    assert fake.requests == []
    assert client.post("/completion", json=body).status_code == 200


ErrorCase = tuple[str, dict[str, Any], dict[str, str] | None, Callable[[str], Any]]
ERROR_EVENT_CASES: list[ErrorCase] = [
    ("/api/generate", {"prompt": "x"}, None, lambda last: json.loads(last)["error"]),
    (
        "/v1/completions",
        {"prompt": "x", "stream": True},
        None,
        lambda last: json.loads(last.removeprefix("data: "))["error"]["message"],
    ),
    (
        "/infill",
        {"input_prefix": "x", "stream": True},
        None,
        lambda last: json.loads(last.removeprefix("data: "))["error"]["message"],
    ),
    (
        "/v1/fim/completions",
        {"prompt": "x", "stream": True},
        None,
        lambda last: json.loads(last.removeprefix("data: "))["message"],
    ),
    (
        "/v1/messages",
        {**MESSAGES, "stream": True},
        ANTHROPIC_HEADERS,
        lambda last: (
            last.split("\n")[0],
            json.loads(last.split("\n")[1].removeprefix("data: "))["error"],
        ),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "error_of"),
    ERROR_EVENT_CASES,
    ids=[c[0] for c in ERROR_EVENT_CASES],
)
def test_error_event_ends_a_started_stream_in_the_family_shape(
    fake: FakeProvider,
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    error_of: Callable[[str], Any],
) -> None:
    fake.inject(Fault(error_event="overloaded_error", error_after=2), times=1)
    response = client.post(path, json={"model": "test-model", **body}, headers=headers)

    assert response.status_code == 200
    separator = "\n" if path.startswith("/api/") else "\n\n"
    last = response.text.rstrip("\n").split(separator)[-1]
    error = error_of(last)
    if path == "/v1/messages":
        assert error == (
            "event: error",
            {"type": "overloaded_error", "message": "injected fault: overloaded_error"},
        )
    else:
        assert error == "injected fault: overloaded_error"
    assert "[DONE]" not in response.text
    record = fake.requests[-1]
    assert (record.chunks_sent, record.completed) == (2, True)


def test_error_event_without_stream_is_its_http_status(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.inject(Fault(error_event="overloaded_error"), times=1)
    answer = client.post("/v1/messages", json=MESSAGES, headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 529
    assert answer.json()["error"]["type"] == "overloaded_error"


def test_truncate_drops_the_stream_without_terminator(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.inject(Fault(truncate_after=2), times=1)
    body = {"model": "test-model", "prompt": "x", "stream": True}
    lines: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        lines.extend(response.iter_lines())

    data = [line.removeprefix("data: ") for line in lines if line]
    assert len(data) == 2
    assert "[DONE]" not in data
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data)
    record = fake.requests[-1]
    assert (record.chunks_sent, record.completed, record.disconnected) == (2, False, False)


def test_truncate_cuts_a_whole_answer_short_of_its_content_length(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.inject(Fault(truncate_after=0), times=1)

    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/completion", json={"prompt": "x"})
    assert not fake.requests[-1].completed


def test_garbage_sends_a_line_that_is_not_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.inject(Fault(garbage=True), times=1)
    body = {"model": "test-model", "prompt": "x"}
    lines = client.post("/api/generate", json=body).text.splitlines()

    assert len(lines) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_hang_until_the_client_times_out_is_recorded_as_disconnect(
    fake: FakeProvider,
) -> None:
    fake.inject(Fault(hang=True), times=1)
    timeout = httpx.Timeout(5.0, read=0.1)
    with httpx.Client(base_url=fake.base_url, timeout=timeout) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/generate", json={"model": "test-model", "prompt": "x"})

        assert fake.wait_for(lambda f: f.requests[-1].finished_at is not None, timeout=2)
        record = fake.requests[-1]
        assert (record.disconnected, record.completed, record.chunks_sent) == (True, False, 0)


def test_stop_does_not_wait_for_a_hung_request() -> None:
    fake = FakeProvider().start()
    fake.inject(Fault(hang=True))
    request = b"POST /infill HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(request)
        assert fake.wait_for(lambda f: len(f.requests) == 1)

        started = time.monotonic()
        fake.stop()
        # Its outcomes: ~0 s (aborting the socket wakes the hung handler) or 2 s (the grace
        # LoopbackServer gives its handlers before cancelling them); half-way is the bound.
        assert time.monotonic() - started < 1
        assert sock.recv(100) == b""  # the server closed the connection, sending nothing

    record = fake.requests[0]
    assert record.finished_at is not None
    assert not record.disconnected  # the server, not the client, ended it


async def test_early_client_close_is_recorded_with_chunks_sent(fake: FakeProvider) -> None:
    fake.reply = "x" * 200  # 50 chunks, a second at 20 ms each
    fake.inject(Fault(chunk_delay_ms=20), times=1)
    body = {"model": "test-model", "prompt": "x"}

    async with (
        httpx.AsyncClient(base_url=fake.base_url) as client,
        client.stream("POST", "/api/generate", json=body) as response,
    ):
        async for line in response.aiter_lines():
            assert json.loads(line)["response"] == "xxxx"
            break

    def finished(f: FakeProvider) -> bool:
        return f.requests[-1].finished_at is not None

    assert await fake.wait_for_async(finished, timeout=2)
    record: RecordedRequest = fake.requests[-1]
    assert record.disconnected is True
    assert record.completed is False
    assert 1 <= record.chunks_sent < 10


# -- generation slots ----------------------------------------------------------------------------

GENERATE = {"model": "test-model", "prompt": "x", "stream": False}


async def _generate_all(fake: FakeProvider, count: int) -> list[RecordedRequest]:
    """``count`` concurrent /api/generate calls, arriving in order; their records once answered."""

    async def one(client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/generate", json=GENERATE)).status_code == 200

    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        tasks = []
        for sent in range(1, count + 1):
            tasks.append(asyncio.create_task(one(client)))
            # Let each request reach the server before the next one, so arrival order is known.
            assert await fake.wait_for_async(_arrived(sent))
        await asyncio.gather(*tasks)
    return fake.generation_requests()


def _arrived(count: int) -> Callable[[FakeProvider], bool]:
    return lambda f: len(f.requests) == count


def _holding_a_slot(f: FakeProvider) -> bool:
    return bool(f.requests) and f.requests[0].admitted_at is not None


def _admitted(record: RecordedRequest) -> float:
    assert record.admitted_at is not None
    return record.admitted_at


def _finished(record: RecordedRequest) -> float:
    assert record.finished_at is not None
    return record.finished_at


async def test_slots_serve_n_at_a_time_in_arrival_order(fake: FakeProvider) -> None:
    fake.slots = 2
    fake.inject(Fault(latency_ms=60))

    records = await _generate_all(fake, 5)

    assert fake.max_concurrent_seen == 2
    admitted = [_admitted(r) for r in records]
    assert admitted == sorted(admitted)  # FIFO: admitted in arrival order
    # The third waits for a slot: admitted only once one of the first two has finished.
    assert admitted[2] >= min(_finished(r) for r in records[:2])
    # Latency stands for prompt processing: it runs inside the slot, after admission.
    assert all(_finished(r) - _admitted(r) >= 0.06 for r in records)


async def test_without_slots_every_request_is_served_at_once(fake: FakeProvider) -> None:
    # Each holds its place until its client leaves, so all four are in the fake together
    # however long they take to arrive (with a latency, a slow machine let the first finish
    # before the last came); a slot limit would keep the others waiting, not generating.
    fake.inject(Fault(hang=True))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        posts = [asyncio.create_task(client.post("/api/generate", json=GENERATE)) for _ in "abcd"]
        assert await fake.wait_for_async(lambda f: f.generating == 4)
        assert all(r.admitted_at is not None for r in fake.generation_requests())
        for post in posts:
            post.cancel()
        await asyncio.gather(*posts, return_exceptions=True)

    assert fake.max_concurrent_seen == 4
    assert await fake.wait_for_async(lambda f: f.generating == 0)
    fake.reset()
    assert fake.max_concurrent_seen == 0


async def test_a_client_leaving_the_queue_is_never_generated(fake: FakeProvider) -> None:
    fake.slots = 1
    fake.inject(Fault(hang=True), times=1)  # the first request holds the only slot
    fast = httpx.Timeout(5.0, read=0.1)
    async with httpx.AsyncClient(base_url=fake.base_url) as holder:
        holding = asyncio.create_task(holder.post("/api/generate", json=GENERATE))
        assert await fake.wait_for_async(_holding_a_slot)
        async with httpx.AsyncClient(base_url=fake.base_url, timeout=fast) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/api/generate", json=GENERATE)
        assert await fake.wait_for_async(lambda f: f.requests[1].finished_at is not None)
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        assert (await client.post("/api/generate", json=GENERATE)).status_code == 200

    first, queued, last = fake.generation_requests()
    assert (queued.disconnected, queued.admitted_at, queued.chunks_sent) == (True, None, 0)
    assert first.disconnected and last.completed
    assert fake.max_concurrent_seen == 1


async def test_raising_slots_admits_queued_requests_at_once(fake: FakeProvider) -> None:
    fake.slots = 1
    fake.inject(Fault(hang=True), times=1)
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        holding = asyncio.create_task(client.post("/api/generate", json=GENERATE))
        assert await fake.wait_for_async(_holding_a_slot)
        queued = asyncio.create_task(client.post("/api/generate", json=GENERATE))
        assert await fake.wait_for_async(_arrived(2))
        assert not queued.done()

        fake.slots = 2
        assert (await asyncio.wait_for(queued, 2)).status_code == 200
        assert fake.max_concurrent_seen == 2
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="slots"):
        FakeProvider(slots=0)
    fake = FakeProvider(slots=3)
    assert fake.slots == 3
    with pytest.raises(ValueError, match="slots"):
        fake.slots = -1


def test_standalone_command_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "tests.fakes.provider", "--port", "0", "--reply", "hi"]
    command += ["--slots", "3"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        with httpx.Client(base_url=base_url) as client:
            body = {"model": "test-model", "prompt": "x", "stream": False}
            assert client.post("/api/generate", json=body).json()["response"] == "hi"
            assert client.get("/props").json()["total_slots"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
