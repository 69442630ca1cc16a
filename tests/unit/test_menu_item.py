"""lsp/clients.py (which client gets menu items, in which format) and lsp/menu.py (the item)."""

from __future__ import annotations

import re

import pytest
from lsprotocol import types
from pytest_lsp import client_capabilities

from crucible.completion.service import CompletionResult
from crucible.config.settings import CompletionItems
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp.clients import (
    ClientTraits,
    client_traits,
    menu_uses_snippet,
    menu_wants_suggestions,
)
from crucible.lsp.menu import completion_list, escape_snippet, menu_item


def with_inline(name: str) -> types.ClientCapabilities:
    capabilities = client_capabilities(name)
    assert capabilities.text_document is not None
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    return capabilities


def info(name: str, version: str) -> types.ClientInfo:
    return types.ClientInfo(name=name, version=version)


# Each client as it introduces itself: clientInfo and capabilities (pytest-lsp's recordings of
# the real clients; inline completion added where the client advertises it today).
CLIENTS = {
    "vscode": (info("Visual Studio Code", "1.104.0"), with_inline("visual-studio-code")),
    "neovim-0.12": (info("Neovim", "0.12.0"), with_inline("neovim@v0.11.0")),
    "neovim-0.11": (info("Neovim", "0.11.0"), client_capabilities("neovim@v0.11.0")),
    "neovim-0.9": (info("Neovim", "0.9.1"), client_capabilities("neovim@v0.9.1")),
    "eglot": (info("Emacs (eglot)", "29.1"), client_capabilities("emacs@v29.1")),
    # Helix: no inline completion; snippet support (a client that is not Neovim).
    "helix": (
        info("helix", "25.07"),
        types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                completion=types.CompletionClientCapabilities(
                    completion_item=types.ClientCompletionItemOptions(snippet_support=True)
                )
            )
        ),
    ),
    "unknown-with-inline": (None, with_inline("neovim@v0.6.1")),
    "unknown-menu-only": (None, types.ClientCapabilities()),
}


@pytest.mark.parametrize(
    ("client", "auto", "snippet"),
    [
        ("vscode", False, False),  # ghost text on by default: the menu would repeat it
        ("neovim-0.12", True, True),  # advertises inline completion, which is opt-in
        ("neovim-0.11", True, True),
        ("neovim-0.9", True, False),  # no snippet support: plain text, inserted as the word
        ("eglot", True, False),
        ("helix", True, False),  # snippets, but plain text inserts whole there
        ("unknown-with-inline", False, False),
        ("unknown-menu-only", True, False),
    ],
)
def test_which_clients_get_menu_items_and_in_which_format(
    client: str, auto: bool, snippet: bool
) -> None:
    traits = client_traits(*CLIENTS[client])
    assert menu_wants_suggestions(CompletionItems.AUTO, traits) is auto
    assert menu_wants_suggestions(CompletionItems.ON, traits) is True
    assert menu_wants_suggestions(CompletionItems.OFF, traits) is False
    assert menu_uses_snippet(traits) is snippet


def test_traits_read_from_initialize() -> None:
    traits = client_traits(*CLIENTS["vscode"])
    assert traits == ClientTraits(
        name="visual studio code",
        inline_completion=True,
        snippets=True,
        markdown=True,
        keeps_whitespace=True,
    )
    assert client_traits(None, None) == ClientTraits()


PLAIN = ClientTraits(markdown=True)
NEOVIM = client_traits(*CLIENTS["neovim-0.11"])


def item_for(
    before: str,
    suggestion: str,
    after: str = "",
    *,
    replaces: int = 0,
    client: ClientTraits = PLAIN,
) -> types.CompletionItem:
    snapshot = DocumentSnapshot("file:///m.py", "/m.py", "python", 1, before + after)
    result = CompletionResult(suggestion, len(before), len(before) + replaces)
    return menu_item(snapshot, result, "utf-16", client)


def edit_of(item: types.CompletionItem) -> types.TextEdit:
    assert isinstance(item.text_edit, types.TextEdit)
    return item.text_edit


def test_new_text_is_the_typed_word_and_the_whole_suggestion() -> None:
    item = item_for("x = val", "ue_f2 + compute(a, b)")
    edit = edit_of(item)
    assert edit.new_text == "value_f2 + compute(a, b)"
    assert edit.range == types.Range(types.Position(0, 4), types.Position(0, 7))
    assert item.filter_text == "value_f2 + compute(a, b)"
    assert item.label == "value_f2 + compute(a, b)"


def test_after_a_non_word_character_nothing_is_re_inserted() -> None:
    edit = edit_of(item_for("call(", "a, b)"))
    assert edit.new_text == "a, b)"
    assert edit.range.start == edit.range.end == types.Position(0, 5)


def test_a_replaced_tail_stays_in_place_when_the_suggestion_ends_with_it() -> None:
    edit = edit_of(item_for("f(pri", "ce)", ")", replaces=1))
    assert (edit.new_text, edit.range.end) == ("price", types.Position(0, 5))


def test_a_replaced_tail_inside_the_suggestion_is_covered_by_the_range() -> None:
    edit = edit_of(item_for("f(pri", "ce) + 1", ")", replaces=1))
    assert (edit.new_text, edit.range.end) == ("price) + 1", types.Position(0, 6))


def test_label_is_the_first_line_trimmed_shortened_and_never_empty() -> None:
    assert item_for("", "\n    return 1").label == "return 1"
    long = item_for("", "x = " + "a" * 100).label
    assert len(long) == 60 and long.endswith("…") and long.startswith("x = aaa")
    assert item_for("", "\n\n").label == "Crucible"
    # Neovim puts a snippet item's label in the buffer while it is selected: never shortened.
    assert item_for("", "x = " + "a" * 100, client=NEOVIM).label == "x = " + "a" * 100


def test_documentation_is_fenced_markdown_or_plain_text() -> None:
    doc = item_for("s = ", "'```'\nt = 1").documentation
    assert isinstance(doc, types.MarkupContent)
    assert doc.value == "````python\ns = '```'\nt = 1\n````"
    plain = item_for("s = ", "1", client=ClientTraits()).documentation
    assert isinstance(plain, types.MarkupContent)
    assert (plain.kind, plain.value) == (types.MarkupKind.PlainText, "s = 1")


def test_plain_text_keeps_whitespace_where_the_client_would_re_indent() -> None:
    vscode = client_traits(*CLIENTS["vscode"])
    item = item_for("    ", "if x:\n        y()", client=vscode)
    assert item.insert_text_format == types.InsertTextFormat.PlainText
    assert item.insert_text_mode == types.InsertTextMode.AsIs
    assert edit_of(item).new_text == "if x:\n        y()"


def unsnippet(text: str) -> str:
    """What a snippet engine inserts for a snippet with no tabstops."""
    return re.sub(r"\\([\\$}])", r"\1", text)


@pytest.mark.parametrize("text", ["a$b", "}", "\\", "${1:x}", "$0 \\$ }}", "plain"])
def test_escaped_snippets_expand_to_the_text(text: str) -> None:
    escaped = escape_snippet(text)
    assert unsnippet(escaped) == text
    assert not re.search(r"(?<!\\)\$", escaped)  # no tabstop or variable left


def test_neovim_snippets_are_indented_relative_to_the_cursor_line() -> None:
    item = item_for(
        "    x = compute(",
        "a,\n        b,\n    )\nprint(x)",
        client=NEOVIM,
    )
    assert item.insert_text_format == types.InsertTextFormat.Snippet
    assert item.insert_text_mode is None
    # vim.snippet.expand prefixes lines 2.. with the cursor line's "    "; the line that
    # leaves the block cannot be written that way, so the snippet ends before it.
    assert edit_of(item).new_text == "a,\n    b,\n)"


def test_completion_list_is_incomplete_and_empty_without_a_result() -> None:
    snapshot = DocumentSnapshot("file:///m.py", "/m.py", "python", 1, "x")
    empty = completion_list(snapshot, None, "utf-16", PLAIN)
    assert empty.is_incomplete and empty.items == []


def test_neovim_documentation_shows_the_text_as_it_will_read() -> None:
    doc = item_for("    x = f(", "a,\n        b)", client=NEOVIM).documentation
    assert isinstance(doc, types.MarkupContent)
    assert doc.value == "```python\n    x = f(a,\n        b)\n```"


def test_the_typed_word_ends_at_the_first_non_identifier_character() -> None:
    assert edit_of(item_for("x = ünï_2", "x")).new_text == "ünï_2x"
    assert edit_of(item_for("a" * 200_000 + ".", "b")).new_text == "b"  # and fast
