"""An inference cluster behind a gateway as the provider (docs/gateways.md): one
OpenAI-compatible base_url serving several models (vLLM behind LiteLLM), a model per role, and
the gateway's rate-limit headers honoured by the pool. The loopback fake plays the gateway: it
serves every model it lists and sends ``x-ratelimit-*`` headers on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    server_status,
    statuses,
    texts,
)
from tests.e2e.test_hover import DIAGNOSTIC, ON_THE_ERROR, hover, send_diagnostics
from tests.e2e.test_hover import TEXT as HOVER_TEXT
from tests.e2e.test_user_feedback import eventually
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

pytestmark = pytest.mark.e2e

CODER, CHAT = "qwen2.5-coder-7b-base", "qwen2.5-coder-32b-instruct"
EXPLANATION = "`radus` is a typo for `radius`."
TEXT = "def add(a, b):\n    "


def answer(record: RecordedRequest) -> str:
    return EXPLANATION if record.path.endswith("/chat/completions") else "return a + b"


@pytest.fixture
def gateway() -> Iterator[FakeProvider]:
    with FakeProvider(model=CODER, reply=answer) as fake:
        fake.models.append(CHAT)  # one endpoint, several models, as a LiteLLM proxy lists them
        yield fake


@pytest.fixture
def local() -> Iterator[FakeProvider]:
    with FakeProvider(model=CODER, reply="return a + b  # local") as fake:
        yield fake


def cluster(gateway: FakeProvider, **extra: Any) -> dict[str, Any]:
    """The docs' configuration: one base_url, a model per role."""
    root = f"{gateway.base_url}/v1"
    return {
        "providers": [
            {"name": "cluster-fim", "kind": "openai", "base_url": root, "model": CODER}
            | {"roles": ["completion"]},
            {"name": "cluster-chat", "kind": "openai", "base_url": root, "model": CHAT}
            | {"roles": ["chat"]},
            *extra.pop("more", []),
        ],
        "completion": {"debounce_ms": 0},
        "cache": {"enabled": False},
        "hover": {"prefetch": "off"},
        **extra,
    }


def with_fallback(gateway: FakeProvider, local: FakeProvider) -> dict[str, Any]:
    fallback = {"name": "local", "kind": "ollama", "base_url": local.base_url, "model": CODER}
    return cluster(gateway, more=[fallback | {"roles": ["completion"], "priority": 1}])


def member(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in status["providers"] if p["name"] == name)


def spent(reset: str) -> Fault:
    return Fault(
        headers=(("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", reset))
    )


async def ask_many(editor: Editor, count: int) -> list[list[str]]:
    answers = []
    for n in range(count):
        editor.type(f"x{n} = {n}\n    ")  # a new spot each time
        answers.append(texts(await asyncio.wait_for(editor.request(invoked=True), 10)))
    return answers


async def test_each_role_is_sent_to_its_own_model_on_one_endpoint(
    gateway: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(cluster(gateway)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        completion = await ask_many(editor, 1)
        uri = open_document(client, HOVER_TEXT, name="area.py")
        send_diagnostics(client, uri, [DIAGNOSTIC])
        explained = await hover(client, uri, ON_THE_ERROR)

    assert completion == [["return a + b"]]
    assert explained is not None and EXPLANATION in explained
    sent = [(r.path, r.body["model"]) for r in gateway.generation_requests()]
    assert sent == [("/v1/completions", CODER), ("/v1/chat/completions", CHAT)]


async def test_a_spent_quota_parks_the_gateway_until_its_reset(
    gateway: FakeProvider, local: FakeProvider, lsp_session: Session
) -> None:
    gateway.inject(spent("30s"), times=1)
    async with lsp_session(with_fallback(gateway, local)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        answers = await ask_many(editor, 3)
        status = await server_status(client)

    # The answer that spent the quota is used; the next ones go to the fallback.
    assert answers == [["return a + b"], ["return a + b  # local"], ["return a + b  # local"]]
    assert len(gateway.generation_requests()) == 1
    parked = member(status, "cluster-fim")
    assert 25 < parked["parked_remaining_s"] <= 30
    assert parked["parked_reason"] == "the gateway's requests quota is spent until its reset"
    assert parked["health"] == "rate_limited"
    assert parked["failures"] == 0  # a spent quota is not a failure: the breaker is untouched


async def test_the_status_bar_waits_for_a_spent_quota_then_is_ready_again(
    gateway: FakeProvider, local: FakeProvider, lsp_session: Session
) -> None:
    gateway.inject(spent("2s"), times=1)
    async with lsp_session(with_fallback(gateway, local)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        await ask_many(editor, 1)
        assert await eventually(lambda: statuses(client)[-1]["state"] == "degraded")
        waiting = statuses(client)[-1]
        # Nothing else happens: the feed looks again at the reset by itself.
        assert await eventually(lambda: statuses(client)[-1]["state"] == "ready")
        after = statuses(client)[-1]

    # Its own words, not "some providers are failing" or a problem's.
    words = "Crucible: waiting for cluster-fim's rate limit (resets at"
    assert waiting["message"].startswith(words)
    assert waiting["message"].endswith("; local serves meanwhile")
    assert {"name": "cluster-fim", "state": "rate_limited"} in waiting["providers"]
    assert {"name": "cluster-fim", "state": "ready"} in after["providers"]


async def test_the_gateway_is_asked_again_once_its_quota_resets(
    gateway: FakeProvider, local: FakeProvider, lsp_session: Session
) -> None:
    gateway.inject(spent("1s"), times=1)
    async with lsp_session(with_fallback(gateway, local)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        before = await ask_many(editor, 2)
        await asyncio.sleep(1.2)
        after = await ask_many(editor, 1)

    assert before == [["return a + b"], ["return a + b  # local"]]
    assert after == [["return a + b"]]
    assert len(gateway.generation_requests()) == 2


async def test_a_429_with_the_gateways_headers_parks_for_the_named_reset(
    gateway: FakeProvider, local: FakeProvider, lsp_session: Session
) -> None:
    headers = (("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "45s"))
    gateway.inject(Fault(status=429, headers=headers), times=1)
    async with lsp_session(with_fallback(gateway, local)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        answers = await ask_many(editor, 3)
        status = await server_status(client)

    assert answers == [["return a + b  # local"]] * 3
    assert len(gateway.generation_requests()) == 1  # not asked again within 45 s
    parked = member(status, "cluster-fim")
    assert 40 < parked["parked_remaining_s"] <= 45
    assert parked["parked_reason"] == "rate limited (HTTP 429, the gateway's tokens quota)"
    assert parked["last_error"] == "RateLimited"
