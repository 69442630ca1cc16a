"""The optional AI review end to end: a save reviews the changed function through the chat
pool (the fake, OpenAI chat format) and publishes its findings as diagnostics with a fix in
``data``; an unchanged function comes from the cache; closing clears them; off by default."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import Session, open_document, provider_options, server_status
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

TEXT = "def half(n):\n    return n / 2\n\n\ndef double(n):\n    return n * 2\n"
FINDING = (
    '[{"line": 2, "message": "Integer division intended?", "replacement": "    return n // 2"}]'
)


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="test-chat", reply=FINDING) as provider:
        yield provider


def options(fake: FakeProvider, **review: Any) -> dict[str, Any]:
    return {
        **provider_options(fake, "openai"),
        "hover": {"prefetch": "off"},
        "review": {"enabled": True, "debounce_ms": 0, **review},
    }


def edit_and_save(client: LanguageClient, uri: str, version: int) -> None:
    # "return n / 2" -> "return n / 2.0": the first function changes.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(1, 16), types.Position(1, 16)), text=".0"
                )
            ],
        )
    )
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
    )


async def published(client: LanguageClient, uri: str, count: int) -> list[types.Diagnostic]:
    for _ in range(500):
        found = client.diagnostics.get(uri)
        if found is not None and len(found) == count:
            return list(found)
        await asyncio.sleep(0.01)
    raise AssertionError(f"diagnostics for {uri}: {client.diagnostics.get(uri)}")


async def test_a_save_reviews_the_changed_function_and_publishes_a_fix(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        save = client.initialize_result.capabilities.text_document_sync  # type: ignore[attr-defined]
        assert isinstance(save, types.TextDocumentSyncOptions) and save.save
        uri = open_document(client, TEXT)
        edit_and_save(client, uri, 2)
        [finding] = await published(client, uri, 1)
        calls = len(fake.generation_requests())
        # Saved again with no change: the function comes from the cache, no call.
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        client.diagnostics.pop(uri)
        await published(client, uri, 1)
        status = await server_status(client)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        cleared = await published(client, uri, 0)

    assert finding.source == "crucible" and finding.message == "Integer division intended?"
    assert finding.range.start.line == 1 and finding.range.end.character == len(
        "    return n / 2.0"
    )
    assert finding.data["replacement"] == "    return n // 2"
    assert calls == 1 and len(fake.generation_requests()) == 1  # double() was not changed
    request = fake.generation_requests()[0]
    assert request.path == "/v1/chat/completions" and "def half" in str(request.body)
    assert "def double" not in str(request.body)
    assert status["review"]["runs"] == 2 and status["review"]["cached"] >= 1
    assert cleared == []


async def test_review_is_off_by_default(fake: FakeProvider, lsp_session: Session) -> None:
    async with lsp_session(provider_options(fake, "openai")) as client:
        uri = open_document(client, TEXT)
        edit_and_save(client, uri, 2)
        await asyncio.sleep(0.3)
        await server_status(client)

    assert uri not in client.diagnostics
    assert fake.generation_requests() == []


async def code_actions(
    client: LanguageClient, uri: str, diagnostic: types.Diagnostic
) -> list[types.CodeAction]:
    found = await asyncio.wait_for(
        client.text_document_code_action_async(
            types.CodeActionParams(
                types.TextDocumentIdentifier(uri),
                diagnostic.range,
                types.CodeActionContext(diagnostics=[diagnostic], only=["quickfix"]),
            )
        ),
        10,
    )
    return [a for a in found or [] if isinstance(a, types.CodeAction)]


async def test_a_finding_is_fixed_from_the_quick_fix_menu_for_its_version_only(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        edit_and_save(client, uri, 2)
        [finding] = await published(client, uri, 1)
        offered = await code_actions(client, uri, finding)
        calls = len(fake.generation_requests())
        # One more keystroke elsewhere: the finding's line may no longer say the same.
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(5, 0), types.Position(5, 0)), text="#"
                    )
                ],
            )
        )
        later = await code_actions(client, uri, finding)

    [fix] = [a for a in offered if a.title.startswith("Crucible: apply review fix")]
    assert fix.kind == types.CodeActionKind.QuickFix and fix.edit is not None
    assert calls == 1  # listing the fix asked no model
    edits = fix.edit.document_changes or []
    assert len(edits) == 1 and isinstance(edits[0], types.TextDocumentEdit)
    assert edits[0].text_document.version == 2  # pinned to the text it was computed for
    [edit] = edits[0].edits
    assert edit.new_text == "    return n // 2" and edit.range == finding.range
    assert not [a for a in later if a.title.startswith("Crucible: apply review fix")]
