"""The completion-menu fallback (textDocument/completion), end to end, checked against the
insertion rules of the clients that use it (docs/architecture.md, "The completion-menu item"):

- VS Code and Emacs eglot replace the edit's range with ``newText``;
- Neovim's menu replaces from the range's start to the cursor and ignores where the range
  ends; from 0.11 it inserts a snippet's expansion (a plain ``newText`` only up to its first
  word, 0.11, or first line, 0.12);
- each keeps the item only if ``filterText`` starts with what was typed from the range start.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    inline_capabilities,
    menu_only_capabilities,
    open_document,
    provider_options,
)
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

NEOVIM_012 = types.ClientInfo(name="Neovim", version="0.12.0")
VSCODE = types.ClientInfo(name="Visual Studio Code", version="1.104.0")


def neovim_012_capabilities() -> types.ClientCapabilities:
    """Neovim 0.12 announces inline completion whether or not the user enabled it."""
    capabilities = client_capabilities("neovim@v0.11.0")
    assert capabilities.text_document is not None
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    return capabilities


async def menu(client: LanguageClient, uri: str, position: types.Position) -> types.CompletionList:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    assert isinstance(result, types.CompletionList)
    return result


def only_edit(result: types.CompletionList) -> tuple[types.CompletionItem, types.TextEdit]:
    [item] = result.items
    assert isinstance(item.text_edit, types.TextEdit)
    return item, item.text_edit


def utf16_offset(text: str, position: types.Position) -> int:
    line_start = sum(len(line) + 1 for line in text.split("\n")[: position.line])
    line = text.split("\n")[position.line]
    units = 0
    for index, char in enumerate(line):
        if units >= position.character:
            return line_start + index
        units += 2 if ord(char) > 0xFFFF else 1
    return line_start + len(line)


def replace_range(text: str, edit: types.TextEdit) -> str:
    """What VS Code and eglot do with the item."""
    start, end = (utf16_offset(text, p) for p in (edit.range.start, edit.range.end))
    return text[:start] + edit.new_text + text[end:]


def insert_from_range_start(text: str, edit: types.TextEdit, cursor: int) -> str:
    """What Neovim's menu does: the typed word (range start..cursor) is replaced, the text
    after the cursor is left alone whatever the range's end says."""
    start = utf16_offset(text, edit.range.start)
    return text[:start] + edit.new_text + text[cursor:]


def filter_keeps(item: types.CompletionItem, text: str, edit: types.TextEdit, cursor: int) -> bool:
    typed = text[utf16_offset(text, edit.range.start) : cursor]
    return (item.filter_text or item.label).startswith(typed)


async def test_the_item_inserts_the_whole_multi_word_suggestion(
    fake: FakeProvider, lsp_session: Session
) -> None:
    text = "def f(a, b):\n    val"
    fake.reply = "ue_f2 = compute(a, b)"
    async with lsp_session(provider_options(fake), capabilities=menu_only_capabilities()) as client:
        uri = open_document(client, text)
        result = await menu(client, uri, end_of(text))

    item, edit = only_edit(result)
    assert edit.new_text == "value_f2 = compute(a, b)"
    # From the start of the typed word to the cursor.
    assert edit.range == types.Range(types.Position(1, 4), types.Position(1, 7))
    assert filter_keeps(item, text, edit, len(text))
    assert item.filter_text is not None and item.filter_text.startswith("val")
    assert item.insert_text_format == types.InsertTextFormat.PlainText
    assert item.label == "value_f2 = compute(a, b)"
    assert item.detail == "Crucible" and item.preselect and item.sort_text == "0000"
    assert result.is_incomplete
    expected = "def f(a, b):\n    value_f2 = compute(a, b)"
    assert replace_range(text, edit) == expected
    assert insert_from_range_start(text, edit, len(text)) == expected


async def test_a_multi_line_suggestion_is_inserted_whole(
    fake: FakeProvider, lsp_session: Session
) -> None:
    text = "def check(a):\n    "
    fake.reply = "if a < 0:\n        raise ValueError(a)\n    return a\n"
    async with lsp_session(provider_options(fake), capabilities=menu_only_capabilities()) as client:
        uri = open_document(client, text)
        result = await menu(client, uri, end_of(text))

    item, edit = only_edit(result)
    assert edit.new_text == "if a < 0:\n        raise ValueError(a)\n    return a"
    assert item.label == "if a < 0:"
    assert isinstance(item.documentation, types.MarkupContent)
    assert item.documentation.kind == types.MarkupKind.Markdown  # Neovim renders markdown
    assert item.documentation.value == f"```python\n    {edit.new_text}\n```"
    assert replace_range(text, edit) == text + edit.new_text


async def test_columns_count_utf16_units_with_an_emoji_before_the_cursor(
    fake: FakeProvider, lsp_session: Session
) -> None:
    text = 'label = "😀" + tit'
    fake.reply = "le.upper()"
    capabilities = menu_only_capabilities()
    assert capabilities.general is not None
    capabilities.general.position_encodings = None  # the LSP default: UTF-16
    async with lsp_session(provider_options(fake), capabilities=capabilities) as client:
        uri = open_document(client, text)
        cursor = end_of(text)
        result = await menu(client, uri, cursor)

    item, edit = only_edit(result)
    # 😀 is two UTF-16 units: the word starts at unit 15, not at code point 14.
    assert cursor.character == 18
    assert edit.range == types.Range(types.Position(0, 15), types.Position(0, 18))
    assert edit.new_text == "title.upper()"
    assert filter_keeps(item, text, edit, len(text))
    assert replace_range(text, edit) == 'label = "😀" + title.upper()'


async def test_a_suggestion_closing_an_auto_closed_paren_leaves_exactly_one(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """The editor auto-closed the ``(``; the suggestion closes it too. Whether the client
    replaces the range (VS Code, eglot) or inserts at the cursor (Neovim), one ``)`` remains."""
    before, after = "total = compute(pri", ")"
    text = before + after
    fake.reply = "ce, quantity)"
    async with lsp_session(provider_options(fake), capabilities=menu_only_capabilities()) as client:
        uri = open_document(client, text)
        result = await menu(client, uri, end_of(before))

    item, edit = only_edit(result)
    assert edit.new_text == "price, quantity"
    expected = "total = compute(price, quantity)"
    assert replace_range(text, edit) == expected
    assert insert_from_range_start(text, edit, len(before)) == expected
    assert filter_keeps(item, text, edit, len(before))


async def test_neovim_with_snippets_gets_an_escaped_snippet(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """Neovim 0.11+ inserts only the first word of a plain newText; a snippet is expanded
    whole on accept. ``$`` and ``}`` must come out literally, and the lines after the first
    are indented relative to the cursor line (the snippet engine adds its indentation)."""
    text = "def show(d):\n    msg = f"
    fake.reply = '"${d}"\n    return msg\n'
    options = provider_options(fake, multiline="always")
    capabilities = client_capabilities("neovim@v0.11.0")
    async with lsp_session(
        options, capabilities=capabilities, client_info=types.ClientInfo(name="Neovim")
    ) as client:
        uri = open_document(client, text)
        result = await menu(client, uri, end_of(text))

    item, edit = only_edit(result)
    assert item.insert_text_format == types.InsertTextFormat.Snippet
    assert edit.new_text == 'f"\\${d\\}"\nreturn msg'
    assert item.label == 'f"${d}"'
    assert edit.range.start == types.Position(1, 10)


@pytest.mark.parametrize(
    ("client_info", "capabilities", "expected"),
    [
        (NEOVIM_012, neovim_012_capabilities, 1),
        (VSCODE, inline_capabilities, 0),
        (None, menu_only_capabilities, 1),
    ],
    ids=["neovim-0.12-inline-advertised", "vscode-inline", "menu-only-client"],
)
async def test_auto_offers_menu_items_per_client(
    client_info: types.ClientInfo | None,
    capabilities: Any,
    expected: int,
    fake: FakeProvider,
    lsp_session: Session,
) -> None:
    text = "total = pri"
    fake.reply = "ce * quantity"
    async with lsp_session(
        provider_options(fake), capabilities=capabilities(), client_info=client_info
    ) as client:
        uri = open_document(client, text)
        result = await menu(client, uri, end_of(text))

    assert len(result.items) == expected
    assert len(fake.generation_requests()) == expected  # no call when there is no item


async def test_inline_and_menu_at_one_position_cost_one_provider_call(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """A Neovim 0.12 user with inline completion and the menu: both requests for the same
    spot are served from one provider call, whichever order they finish in."""
    text = "total = pri"
    fake.reply = "ce * quantity"
    async with lsp_session(
        provider_options(fake), capabilities=neovim_012_capabilities(), client_info=NEOVIM_012
    ) as client:
        uri = open_document(client, text)
        shown = await inline(client, uri, end_of(text))
        listed = await menu(client, uri, end_of(text))

    assert [i.insert_text for i in shown.items] == ["ce * quantity"]
    assert only_edit(listed)[1].new_text == "price * quantity"
    assert len(fake.generation_requests()) == 1


async def test_inline_and_menu_sent_together_both_get_the_suggestion(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """Neovim sends both requests for one keystroke at once: the second is for the same text
    and cursor, so it shares the first one's provider call instead of superseding it."""
    text = "total = pri"
    fake.reply = "ce * quantity"
    async with lsp_session(
        provider_options(fake), capabilities=neovim_012_capabilities(), client_info=NEOVIM_012
    ) as client:
        uri = open_document(client, text)
        shown, listed = await asyncio.gather(
            inline(client, uri, end_of(text)), menu(client, uri, end_of(text))
        )

    assert [i.insert_text for i in shown.items] == ["ce * quantity"]
    assert only_edit(listed)[1].new_text == "price * quantity"
    assert len(fake.generation_requests()) == 1
