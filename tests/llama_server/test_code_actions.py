"""AI code actions end to end: the real Crucible server over LSP, its chat path against a real
llama.cpp server (``/v1/chat/completions``, the tiny model's ChatML template).

The tiny model answers every chat turn with the alphabet, one letter per token, never a code
block. So these tests assert the path, not the content: a quick fix on Python resolves to an
edit made of the model's (unfenced) lines at the target's indentation, and a rewrite whose
answer would unbalance the target's brackets is refused cleanly after one retry, with both
streams closed.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, server_status
from tests.llama_server.server import LlamaServerProcess, wait_until_idle

pytestmark = pytest.mark.e2e


def options(server: LlamaServerProcess) -> dict[str, object]:
    provider = {"name": "real-chat", "kind": "llamacpp", "base_url": server.root, "model": "tiny"}
    return {"providers": [provider], "code_actions": {"timeout_ms": 30_000}}


def open_text(client: object, text: str, name: str, language: str) -> str:
    uri = f"file:///workspace/{name}"
    client.text_document_did_open(  # type: ignore[attr-defined]
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )
    return uri


async def listed(
    client: object, uri: str, start: types.Position, end: types.Position, title: str
) -> types.CodeAction:
    actions = await client.text_document_code_action_async(  # type: ignore[attr-defined]
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start, end),
            context=types.CodeActionContext(
                diagnostics=[
                    types.Diagnostic(
                        range=types.Range(start, end), message="undefined name 'radus'"
                    )
                ]
            ),
        )
    )
    [action] = [a for a in actions if a.title.startswith(title)]
    return action


async def test_a_quick_fix_resolves_through_the_real_chat_path(
    llama_server: LlamaServerProcess, llama: httpx.AsyncClient, lsp_session: Session
) -> None:
    text = "def area(radius):\n    return 3.14 * radus**2\n"
    async with lsp_session(options(llama_server)) as client:
        uri = open_text(client, text, "geometry.py", "python")
        fix = await listed(
            client, uri, types.Position(1, 18), types.Position(1, 23), "Crucible: fix “"
        )
        resolved = await client.code_action_resolve_async(fix)
        status = await server_status(client)
    await wait_until_idle(llama, within_s=2.0)

    assert resolved.edit is not None and resolved.edit.document_changes
    [change] = resolved.edit.document_changes
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.version == 1
    [edit] = change.edits
    assert isinstance(edit, types.TextEdit)
    assert edit.range.start == types.Position(1, 0)
    # The model's alphabet, line by line, at the target's indentation: nonsense, but code.
    assert re.fullmatch(r"(    [a-z]+\n)+", edit.new_text), edit.new_text
    assert status["code_actions"]["resolved"] == 1
    assert status["code_actions"]["chat_providers"][0]["calls"] == 1


async def test_an_answer_that_breaks_the_brackets_is_refused_after_one_retry(
    llama_server: LlamaServerProcess, llama: httpx.AsyncClient, lsp_session: Session
) -> None:
    text = "function area(radius) {\n  return 3.14 * radus ** 2;\n}\n"
    async with lsp_session(options(llama_server)) as client:
        uri = open_text(client, text, "geometry.js", "javascript")
        # The selection holds the opening brace but not the closing one.
        rewrite = await listed(
            client, uri, types.Position(0, 0), types.Position(1, 26), "Crucible: simplify"
        )
        resolved = await client.code_action_resolve_async(rewrite)
        await asyncio.sleep(0.1)
        shown = [m.message for m in client.messages]
        status = await server_status(client)
    await wait_until_idle(llama, within_s=2.0)

    assert resolved.edit is None
    assert any("rejected twice" in m and "balance" in m for m in shown), shown
    assert status["code_actions"]["refused"] == 1
    assert status["code_actions"]["chat_providers"][0]["calls"] == 2
