"""Bad text cannot poison good files: invalid Unicode from the client is replaced on the way in.

JSON lets a client send a lone surrogate (``"\\ud800"``); Python decodes it into a string that
no UTF-8 encoder accepts. Before the fix, one such open document broke every completion in
its language: it went into every other file's request as a neighbour, and encoding the request
body failed. Now each text a client sends goes through ``valid_text``: every surrogate becomes
U+FFFD, one code point for one, so positions after it do not move.

The variants: the surrogate arrives in ``didOpen``, in an incremental change, in a full
change, as a high or a low half, as the two halves of a pair sent in two edits, and under the
UTF-8 position encoding. The pure functions are fuzzed in ``tests/unit/test_document_text.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import (
    Editor,
    Session,
    end_of,
    inline,
    inline_capabilities,
    open_document,
    provider_options,
    texts,
)
from tests.fakes.provider import FakeProvider

MAIN = "def add(a, b):\n    "
BAD = 'label = "caf\ud800"\n\ndef use():\n    '
CLEAN = 'label = "caf\ufffd"\n\ndef use():\n    '


def bodies(fake: FakeProvider) -> str:
    """Every string in every request body the provider received, one per line."""
    return "\n".join(_strings([r.body for r in fake.generation_requests()]))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def change(client: LanguageClient, uri: str, version: int, *changes: Any) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=list(changes),
        )
    )


def insert(line: int, character: int, text: str) -> types.TextDocumentContentChangePartial:
    at = types.Position(line, character)
    return types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)


async def test_a_lone_surrogate_in_one_file_does_not_break_the_others(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake, "llamacpp")) as client:
        bad_uri = open_document(client, BAD, name="bad.py")
        main_uri = open_document(client, MAIN)
        in_main = texts(await inline(client, main_uri, end_of(MAIN)))
        in_bad = texts(await inline(client, bad_uri, end_of(BAD)))
    assert in_main == ["return a + b"]  # bad.py went along as context, and did no harm
    assert in_bad == ["return a + b"]  # the file itself completes too
    sent = bodies(fake)
    assert CLEAN.split("\n")[0] in sent  # replaced in the request body, one for one
    assert "\ud800" not in sent


@pytest.mark.parametrize(
    "how",
    ["incremental", "full", "low-half", "pair-in-two-edits"],
)
async def test_surrogates_sent_in_changes_are_replaced_and_positions_stay(
    fake: FakeProvider, lsp_session: Session, how: str
) -> None:
    start = 'label = "caf"\n\ndef use():\n    '
    async with lsp_session(provider_options(fake, "llamacpp")) as client:
        uri = open_document(client, start, name="bad.py")
        main_uri = open_document(client, MAIN)
        if how == "incremental":
            change(client, uri, 2, insert(0, 12, "\ud800"))
            expected = CLEAN
        elif how == "full":
            change(client, uri, 2, types.TextDocumentContentChangeWholeDocument(text=BAD))
            expected = CLEAN
        elif how == "low-half":
            change(client, uri, 2, insert(0, 12, "\udfff"))
            expected = CLEAN
        else:  # a pair cut in two: each half alone is invalid, and stays two characters
            change(client, uri, 2, insert(0, 12, "\ud83d"))
            change(client, uri, 3, insert(0, 13, "\ude00"))
            expected = 'label = "caf\ufffd\ufffd"\n\ndef use():\n    '
        # Typed after the replaced character, at the column the client counts (UTF-16): the
        # text lands where the client has it, so the replacement kept every position.
        line = expected.count("\n")
        change(client, uri, 9, insert(line, 4, "x = "))
        in_bad = texts(await inline(client, uri, end_of(expected + "x = ")))
        in_main = texts(await inline(client, main_uri, end_of(MAIN)))
    assert in_bad == in_main == ["return a + b"]
    infill = [r.body for r in fake.generation_requests() if r.path == "/infill"]
    assert infill[0]["input_prefix"].endswith(expected + "x = ")
    assert expected.split("\n")[0] in bodies(fake)


async def test_under_utf8_positions_a_surrogate_counts_as_its_replacement(
    fake: FakeProvider, lsp_session: Session
) -> None:
    capabilities = inline_capabilities()
    capabilities.general = types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf8]
    )
    async with lsp_session(provider_options(fake, "llamacpp"), capabilities=capabilities) as client:
        uri = open_document(client, BAD, name="bad.py")
        editor = Editor(client, uri, CLEAN)
        # U+FFFD is three UTF-8 bytes: the cursor after it is byte column 13 + 3 + 1.
        change(client, uri, 2, insert(0, len('label = "caf\ufffd"'.encode()), "  # ok"))
        editor.text = CLEAN.replace('"\n', '"  # ok\n', 1)
        last = editor.text.count("\n")
        answer = texts(
            await inline(
                client, uri, types.Position(last, len(editor.text.rsplit("\n", 1)[1].encode()))
            )
        )
    assert answer == ["return a + b"]
    assert 'caf\ufffd"  # ok' in bodies(fake)
