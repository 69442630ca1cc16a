"""The loopback provider speaks the Tabby API as tabby-agent 1.5 uses it.

tabby-agent (the npm package the peers benchmark drives) asks ``GET /v1/health`` (``POST`` after
a 405), then ``GET /v1beta/server_setting`` from a server at 0.9 or later, and for each
completion one non-streamed ``POST /v1/completions`` with ``{"language", "segments": {"prefix",
"suffix", ...}}`` and ``Authorization: Bearer <token>``; it reads ``{"id", "choices": [{"index",
"text"}]}``. OpenAI's completions share the path: the body tells them apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

REPLY = "return a + b"
TABBY_BODY = {
    "language": "python",
    "segments": {"prefix": "def add(a, b):\n    ", "suffix": "\n", "filepath": "add.py"},
}


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(reply=REPLY) as provider:
        yield provider


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url) as http:
        yield http


def test_completion_answers_segments_with_choices_in_one_json(
    fake: FakeProvider, client: httpx.Client
) -> None:
    answer = client.post("/v1/completions", json=TABBY_BODY)

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"id", "choices"}
    assert body["choices"] == [{"index": 0, "text": REPLY}]
    (record,) = fake.generation_requests()
    assert record.body["segments"]["prefix"] == "def add(a, b):\n    "
    assert record.completed


def test_the_reply_callable_sees_the_segments() -> None:
    def reply(record: RecordedRequest) -> str:
        return f"<{record.body['segments']['prefix']}|{record.body['segments']['suffix']}>"

    with FakeProvider(reply=reply) as fake, httpx.Client(base_url=fake.base_url) as client:
        body = {"language": "go", "segments": {"prefix": "a", "suffix": "b"}}
        answer = client.post("/v1/completions", json=body).json()

    assert answer["choices"][0]["text"] == "<a|b>"


def test_an_openai_body_on_the_same_path_is_still_openai(client: httpx.Client) -> None:
    openai = client.post("/v1/completions", json={"model": "test-model", "prompt": "x"}).json()

    assert openai["object"] == "text_completion"
    assert openai["choices"][0]["text"] == REPLY


def test_segments_without_a_prefix_are_refused_with_422(client: httpx.Client) -> None:
    refused = client.post("/v1/completions", json={"language": "python", "segments": {}})

    assert refused.status_code == 422


def test_latency_delays_the_answer_like_the_other_formats(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.inject(Fault(latency_ms=600), times=1)

    started = time.monotonic()
    client.post("/v1/completions", json=TABBY_BODY)
    slow = time.monotonic() - started
    started = time.monotonic()
    client.post("/v1/completions", json=TABBY_BODY)
    fast = time.monotonic() - started

    assert slow >= 0.6  # a sleep never ends early, whatever the load
    # Once: the second is not delayed. Its outcomes are ~0 s and 0.6 s; half-way is the bound.
    assert fast < 0.3


def test_health_by_get_or_post_and_the_server_setting(client: httpx.Client) -> None:
    health = client.get("/v1/health").json()

    assert health["model"] == "test-model"
    assert health["device"] == "cpu"
    assert health["version"]["git_describe"].startswith("v0.")
    assert client.post("/v1/health").json() == health
    setting = client.get("/v1beta/server_setting").json()
    assert setting == {"disable_client_side_telemetry": True}


def test_a_required_key_is_a_bearer_token() -> None:
    with (
        FakeProvider(require_api_key="tabby-token") as fake,
        httpx.Client(base_url=fake.base_url) as client,
    ):
        assert client.get("/v1/health").status_code == 401
        assert client.post("/v1/completions", json=TABBY_BODY).status_code == 401
        key = {"Authorization": "Bearer tabby-token"}
        assert client.get("/v1/health", headers=key).status_code == 200
        assert client.post("/v1/completions", json=TABBY_BODY, headers=key).status_code == 200
