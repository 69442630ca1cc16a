"""Closed documents leave nothing behind, end to end: documents opened, typed in, completed
(with prefetch), given diagnostics (with hover prefetch) and closed, one of them while its
request was still in flight; then ``crucible/status`` counts no per-document state, and a new
document finds none of them as a neighbour."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Editor,
    Session,
    end_of,
    inline,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

DOCUMENTS = 6
ERROR = {
    "range": {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 6}},
    "severity": 1,
    "source": "Pyflakes",
    "message": "undefined name",
}


def close(client: LanguageClient, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri))
    )


def per_document(status: dict[str, Any]) -> dict[str, int]:
    """What ``crucible/status`` counts per document, or of work that documents started."""
    scheduling, hover = status["scheduling"], status["hover"]
    return {
        "documents": scheduling["documents"],
        "pending_documents": scheduling["pending_documents"],
        "in_flight": scheduling["in_flight"],
        "prefetches": scheduling["background_tasks"],
        "type_through_anchors": status["cache"]["type_through_anchors"],
        "diagnostics_documents": hover["diagnostics"]["documents"],
        "hover_prefetches": hover["background_tasks"],
    }


async def test_closed_documents_leave_no_per_document_state(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = {
        **provider_options(fake, "llamacpp", cache={"prefetch": "on"}),
        "hover": {"prefetch": "on"},
    }
    async with lsp_session(options) as client:
        # A suggestion accepted first, so that prefetch pays (issue 16: no prefetch before a
        # use is measured); that document is closed before the others are opened.
        text = "def g(a, b):\n    "
        accepted = Editor(client, open_document(client, text, name="accepted.py"), text)
        shown = texts(await asyncio.wait_for(accepted.request(), 10))
        accepted.type(shown[0])
        await asyncio.wait_for(accepted.request(), 10)
        close(client, accepted.uri)
        uris: list[str] = []
        for n in range(DOCUMENTS):
            text = f"def f{n}(a, b):\n    "
            editor = Editor(client, open_document(client, text, name=f"doc{n}.py"), text)
            editor.type("ret")
            await asyncio.wait_for(editor.request(), 10)
            client.protocol.notify(
                "crucible/didChangeDiagnostics",
                {
                    "textDocument": {"uri": editor.uri, "version": editor.version},
                    "diagnostics": [ERROR],
                },
            )
            uris.append(editor.uri)
        # One more, closed while the provider has not answered its request yet.
        await asyncio.sleep(0.2)  # prefetches end: the next request is the late one
        fake.inject(Fault(latency_ms=2000), times=1)
        asked = len(fake.generation_requests())
        late = Editor(client, open_document(client, "x = ", name="late.py"), "x = ")
        pending = late.request(invoked=True)
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) > asked)
        close(client, late.uri)
        await asyncio.wait_for(pending, 10)
        before = per_document(await server_status(client))
        for uri in uris:
            close(client, uri)

        status = await server_status(client)
        for _ in range(200):  # background work cancelled on close ends within a few turns
            if per_document(status)["in_flight"] == 0:
                break
            await asyncio.sleep(0.01)
            status = await server_status(client)

        assert before["documents"] == DOCUMENTS and before["diagnostics_documents"] == DOCUMENTS
        assert status["hover"]["prefetched"] > 0 and status["requests"]["prefetched"] > 0
        assert per_document(status) == dict.fromkeys(per_document(status), 0)

        # A document opened now finds none of the closed ones as a neighbour.
        fresh = open_document(client, "def g():\n    ", name="fresh.py")
        await inline(client, fresh, end_of("def g():\n    "))

    last = fake.generation_requests()[-1]
    assert last.body.get("input_extra", []) == []
