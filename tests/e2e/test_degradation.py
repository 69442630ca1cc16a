"""A provider that is down, hangs or is cancelled never hangs the editor."""

from __future__ import annotations

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    open_document,
    provider_options,
    server_status,
)
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "


async def test_connection_refused_gives_an_empty_answer(
    fake: FakeProvider, lsp_session: Session, refused_port: int
) -> None:
    options = provider_options(fake)
    options["providers"][0]["base_url"] = f"http://127.0.0.1:{refused_port}"
    async with lsp_session(options) as client:
        uri = open_document(client, TEXT)
        result = await inline(client, uri, end_of(TEXT))
        report = await server_status(client)

    assert not result.items
    assert report["requests"]["error"] == 1
    assert (report["upstream"]["calls"], report["upstream"]["errors"]) == (1, 1)
    assert report["providers"][0]["last_error"] == "ProviderUnavailable"


async def test_a_hanging_provider_is_cut_off_at_the_deadline(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(hang=True))
    async with lsp_session(provider_options(fake, timeout_ms=300)) as client:
        uri = open_document(client, TEXT)
        result = await inline(client, uri, end_of(TEXT))
        report = await server_status(client)
        # A local provider past the deadline may be processing a long prompt: the request is
        # answered, the connection is kept (warming) until its first byte or the warm limit.
        assert not fake.requests[-1].disconnected
    # Shutting down lets go of it, so the provider can stop working on it.
    assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected)

    assert not result.items
    assert report["requests"]["timeout"] == 1
    assert report["providers"][0]["warming"] == 1


async def test_http_errors_and_broken_streams_give_empty_answers(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = "return a + b\n" * 3
    fake.inject(Fault(status=500), times=1)
    fake.inject(Fault(truncate_after=1), times=1)
    fake.inject(Fault(garbage=True), times=1)
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, TEXT)
        results = [await inline(client, uri, end_of(TEXT)) for _ in range(3)]
        healthy = await inline(client, uri, end_of(TEXT))
        report = await server_status(client)

    assert [list(r.items) for r in results] == [[], [], []]
    assert healthy.items[0].insert_text.startswith("return a + b")
    assert report["providers"][0]["failures"] == 3 and report["providers"][0]["calls"] == 4


async def test_cancel_request_answers_and_closes_the_upstream_stream(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(latency_ms=100, chunk_delay_ms=200))
    fake.reply = "x = 1\n" * 50
    async with lsp_session(provider_options(fake, multiline="always")) as client:
        uri = open_document(client, TEXT)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=end_of(TEXT),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        pending = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="to-cancel"
            )
        )
        assert await fake.wait_for_async(lambda f: f.requests and f.requests[-1].chunks_sent > 0)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="to-cancel"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 5)
        assert await fake.wait_for_async(lambda f: f.requests[-1].disconnected)
        report = await server_status(client)

    assert report["requests"]["cancelled"] == 1
    assert not fake.requests[-1].completed


async def test_malformed_requests_get_errors_and_the_server_stays_up(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        # A position far past the end of an unknown document, then a garbage method.
        unknown = await inline(client, "file:///nowhere.py", types.Position(10**6, 10**6))
        with pytest.raises(Exception, match=r"not found|Method Not Found|-32601"):
            await client.protocol.send_request_async("crucible/noSuchMethod", {})
        uri = open_document(client, TEXT)
        past_end = await inline(client, uri, types.Position(500, 500))
        result = await inline(client, uri, end_of(TEXT))

    assert not unknown.items
    assert not past_end.items or past_end.items[0].insert_text
    assert result.items[0].insert_text == "return a + b"
