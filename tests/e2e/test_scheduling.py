"""Keystroke scheduling end to end: latest wins, cancellation, single-flight, stream reuse,
no stale results, micro-batching, and a transport that keeps up with typing."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "


async def test_a_typing_burst_costs_one_call_and_every_request_is_answered(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(latency_ms=80))
    fake.reply = " b"
    # Keys 30 ms apart and a debounce 33 times that: only the last request outlives its
    # debounce, however late a loaded machine delivers a key. (With the adaptive default from
    # debounce_ms = 0, the first pause is debounce_min_ms, 40 ms: a key 10 ms late was a call.)
    options = provider_options(fake, debounce_mode="fixed", debounce_ms=1000)
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, "def add(a, b):\n    "), TEXT)
        pending = []
        for char in "return a +":
            editor.type(char)
            pending.append(editor.request())
            await asyncio.sleep(0.03)
        results = await asyncio.wait_for(asyncio.gather(*pending), 10)
        status = await server_status(client)

    assert len(results) == len(pending)  # every request answered
    assert all(not r.items for r in results[:-1])  # the superseded ones, empty
    assert texts(results[-1]) == [" b"]
    assert len(fake.generation_requests()) == 1
    assert status["requests"]["superseded"] == len(pending) - 1
    assert status["requests"]["served"] == 1


async def test_a_superseded_stream_is_closed_and_the_new_text_is_served(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(chunk_delay_ms=100), times=1)
    fake.reply = lambda request: "return a + b" if "add" in request.body["prompt"] else "pass"
    async with lsp_session(provider_options(fake, multiline="always")) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = editor.request(invoked=True)
        assert await fake.wait_for_async(lambda f: f.requests and f.requests[-1].chunks_sent > 0)
        editor.edit(4, 7, "sub")  # renames the function: not a continuation of the suggestion
        second = editor.request(invoked=True)
        first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert await fake.wait_for_async(lambda f: f.generation_requests()[0].disconnected)

    assert not first_result.items
    assert texts(second_result) == ["pass"]
    assert not fake.generation_requests()[0].completed


async def test_cancel_during_the_debounce_never_reaches_the_provider(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake, debounce_mode="fixed", debounce_ms=2000)
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        pending = editor.request(msg_id="debouncing")
        await asyncio.sleep(0.2)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="debouncing"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 1.5)  # well before the 2 s debounce ends
        await asyncio.sleep(0.1)
        status = await server_status(client)

    assert fake.generation_requests() == []
    assert status["requests"]["cancelled"] == 1


async def test_invoked_requests_skip_the_debounce(fake: FakeProvider, lsp_session: Session) -> None:
    options = provider_options(fake, debounce_mode="fixed", debounce_ms=5000)
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        result = await asyncio.wait_for(editor.request(invoked=True), 4)
        status = await server_status(client)

    assert texts(result) == ["return a + b"]
    assert "debounce" not in status["stages_ms"]


async def test_identical_work_is_sent_upstream_once(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """The editor asks again at the same spot (cursor moved away and back, or a re-trigger):
    the new request joins the stream already running instead of starting another."""
    fake.inject(Fault(latency_ms=300))
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = editor.request(invoked=True)
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 1)
        second = editor.request(invoked=True)
        first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 10)
        status = await server_status(client)

    # Same text, same cursor: nothing the first would answer is stale, so both are answered.
    assert texts(first_result) == texts(second_result) == ["return a + b"]
    assert len(fake.generation_requests()) == 1
    assert status["requests"]["coalesced"] == 1


async def test_typing_through_a_streaming_suggestion_reuses_its_stream(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(chunk_delay_ms=60))
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = editor.request(invoked=True)
        assert await fake.wait_for_async(lambda f: f.requests and f.requests[-1].chunks_sent >= 1)
        editor.type("ret")  # the suggestion starts "return a + b"
        second = editor.request(invoked=True)
        first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 10)
        status = await server_status(client)

    assert not first_result.items
    assert texts(second_result) == ["urn a + b"]
    assert len(fake.generation_requests()) == 1
    assert fake.generation_requests()[0].completed  # read to the end, not abandoned
    assert status["requests"]["reused"] == 1


async def test_a_suggestion_that_no_longer_fits_is_never_shown(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(chunk_delay_ms=60), times=1)
    fake.reply = lambda r: "return a + b" if r.body["prompt"].endswith("    ") else "int(a)"
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = editor.request(invoked=True)
        assert await fake.wait_for_async(lambda f: f.requests and f.requests[-1].chunks_sent >= 1)
        editor.type("print(")  # disagrees with "return a + b"
        second = editor.request(invoked=True)
        first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 10)

    assert not first_result.items
    assert texts(second_result) == ["int(a)"]
    assert len(fake.generation_requests()) == 2


async def test_concurrent_prompts_to_an_openai_provider_are_batched(
    lsp_session: Session,
) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply="return 1") as fake:
        options = provider_options(fake, "openai")
        options["providers"][0]["batch_window_ms"] = 50
        async with lsp_session(options) as client:
            editors = [
                Editor(client, open_document(client, TEXT, name=f"m{i}.py"), TEXT) for i in range(3)
            ]
            results = await asyncio.wait_for(
                asyncio.gather(*(e.request(invoked=True) for e in editors)), 10
            )
            status = await server_status(client)

    assert [texts(r) for r in results] == [["return 1"]] * 3
    [call] = fake.generation_requests()
    assert isinstance(call.body["prompt"], list) and len(call.body["prompt"]) == 3
    assert status["requests"]["batched"] == 3


async def test_memory_stays_flat_over_many_keystrokes(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """pygls 2.1.1 keeps ~2 KB per didChange (~40 MB per 20k keystrokes); the server drops it.
    Each keystroke is typed and then deleted, so the document (and the cost of applying an
    edit to it) stays the same size throughout."""

    def keystrokes(editor: Editor, count: int) -> None:
        for _ in range(count):
            editor.type("y")
            editor.edit(len(editor.text) - 1, len(editor.text), "")

    async with lsp_session(provider_options(fake), args=("--log-level", "WARNING")) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        keystrokes(editor, 1000)  # warm up allocator pools and pygls's lazy structures
        before = (await server_status(client))["memory"]["rss_mb"]
        for _ in range(10):
            keystrokes(editor, 1000)
            await server_status(client)  # a round trip: the server has handled all of them
        after = (await server_status(client))["memory"]["rss_mb"]

    assert after - before < 8, (before, after)  # 20k didChange: the leak would add ~40 MB
