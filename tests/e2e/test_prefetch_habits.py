"""Prefetch earns its calls (issue 16), through the real server: a user who never accepts a
suggestion gets no prefetch at all (each chance is measured, with no call), one who accepts
every suggestion gets them from the first acceptance on, and crucible/status says how many were
started, used, wasted, skipped and measured."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider, RecordedRequest

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    total = a"


def _next_term(record: RecordedRequest) -> str:
    """A model that always suggests one more term for the line being written."""
    prompt = record.body.get("prompt", "") if isinstance(record.body, dict) else ""
    line = prompt.rsplit("\n", 1)[-1]
    return f" + v{line.count('+')}"


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply=_next_term) as provider:
        yield provider


async def _ask(editor: Editor) -> list[str]:
    return texts(await asyncio.wait_for(editor.request(), 10))


async def _settle(client: LanguageClient) -> None:
    """Until no stream runs and no prefetch is pending a start: each step begins from rest,
    as a user who reads the suggestion before acting."""
    for _ in range(500):
        scheduling = (await server_status(client))["scheduling"]
        if scheduling["in_flight"] == 0 and scheduling["background_tasks"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not settle")


async def test_a_user_who_never_accepts_gets_prefetches_stopped(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake, cache={"prefetch": "on"})
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        for step in range(8):
            if step:
                editor.type(f"\n    x{step} = a")  # something else than the suggestion
            assert await _ask(editor)
            await _settle(client)
        status = await server_status(client)

    prefetch = status["prefetch"]
    # No use measured: every chance is measured instead of sent (the last one still pending).
    assert (prefetch["started"], prefetch["used"], prefetch["wasted"]) == (0, 0, 0)
    assert (prefetch["skipped"], prefetch["measured_wasted"]) == (8, 7)
    assert prefetch["explored"] == 0 and prefetch["hit_rate"] is None
    assert prefetch["prefetching"] is False
    assert status["requests"].get("prefetched", 0) == 0
    assert len(fake.generation_requests()) == 8  # one per step, nothing else


async def test_a_user_who_accepts_every_suggestion_keeps_prefetches(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake, cache={"prefetch": "on"})
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        shown = await _ask(editor)
        await _settle(client)
        for _ in range(8):
            editor.type(shown[0])  # accept it (an insertion, as an editor sends it)
            shown = await _ask(editor)
            await _settle(client)
        status = await server_status(client)

    prefetch = status["prefetch"]
    assert shown == [" + v8"]
    # The first accept is measured (a call of its own); every later one was answered by the
    # prefetch of it: no call of its own.
    assert prefetch["measured_used"] == 1 and prefetch["skipped"] == 1
    assert (prefetch["started"], prefetch["used"], prefetch["wasted"]) == (8, 7, 0)
    assert prefetch["pending"] == 1  # the last one, for an accept still to come
    assert prefetch["hit_rate"] == 1.0
    assert prefetch["languages"]["python"]["prefetching"] is True
    assert status["requests"]["cache_hit"] == 7
    assert len(fake.generation_requests()) == 2 + 8
