"""The AI suggestion as a completion-menu item, for clients that show it in their menu.

Menus insert an item by their own rules, which differ (the rules, with their sources, are in
docs/architecture.md, "The completion-menu item"). The item is shaped so that each inserts the
whole suggestion:

- ``textEdit`` from the start of the word being typed to the cursor, ``newText`` = that word +
  the suggestion. Every client measures what the user typed from the edit's start, and
  Neovim's menu starts its completion there.
- ``filterText`` = ``newText``: it starts with the typed word, so prefix filters (Neovim, Emacs)
  and fuzzy ones (VS Code) keep the item.
- ``label`` = the first line (menus show one line); the whole text is in ``documentation``.
- Plain text, except for Neovim 0.11+, where only a snippet is inserted whole (see
  ``clients.menu_uses_snippet``).
"""

from __future__ import annotations

import re

from lsprotocol import types

from crucible.completion.service import CompletionResult
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp.clients import ClientTraits, menu_uses_snippet
from crucible.lsp.convert import snapshot_position

DETAIL = "Crucible"
LABEL_CHARS = 60  # menus are narrow; the full text is in the documentation popup
_SNIPPET_SPECIAL = re.compile(r"[\\$}]")


def completion_list(
    snapshot: DocumentSnapshot,
    result: CompletionResult | None,
    encoding: str,
    client: ClientTraits,
) -> types.CompletionList:
    """The suggestion as one preselected item; incomplete, so the next keystroke asks again
    instead of the client filtering a suggestion made for text that has changed."""
    if result is None:
        return types.CompletionList(is_incomplete=True, items=[])
    return types.CompletionList(
        is_incomplete=True, items=[menu_item(snapshot, result, encoding, client)]
    )


def menu_item(
    snapshot: DocumentSnapshot, result: CompletionResult, encoding: str, client: ClientTraits
) -> types.CompletionItem:
    text, cursor = snapshot.text, result.start
    line_start, line_end = snapshot.line_bounds(cursor)
    before = text[line_start:cursor]
    word = _typed_word(before)
    suggestion, end = _without_replaced_tail(text, result)
    shown = before + suggestion
    snippet = menu_uses_snippet(client)
    if snippet:
        # The line as the snippet finds it: the typed word is removed before it expands.
        line = text[line_start : cursor - len(word)] + text[end:line_end]
        indent = line[: len(line) - len(line.lstrip())]
        suggestion = _relative_indentation(suggestion, indent)
        shown = before + suggestion.replace("\n", "\n" + indent)
    inserted = word + suggestion
    edit = types.TextEdit(
        range=types.Range(
            start=snapshot_position(snapshot, cursor - len(word), encoding),
            end=snapshot_position(snapshot, end, encoding),
        ),
        new_text=escape_snippet(inserted) if snippet else inserted,
    )
    return types.CompletionItem(
        # Neovim inserts a snippet item's label until the item is accepted (and for good
        # where no accept handler is registered): it must be the text itself, unshortened.
        label=_label(inserted, shorten=not snippet),
        kind=types.CompletionItemKind.Snippet if snippet else types.CompletionItemKind.Text,
        detail=DETAIL,
        documentation=_documentation(snapshot.language_id, shown, client),
        sort_text="0000",  # before the language server's items
        filter_text=inserted,
        preselect=True,
        insert_text_format=(
            types.InsertTextFormat.Snippet if snippet else types.InsertTextFormat.PlainText
        ),
        # The model wrote each line's full indentation: a client that re-indents the lines
        # after the first (VS Code does, unless asIs) would indent them twice.
        insert_text_mode=types.InsertTextMode.AsIs
        if client.keeps_whitespace and not snippet
        else None,
        text_edit=edit,
    )


def _typed_word(before_cursor: str) -> str:
    """The identifier characters just left of the cursor (a backwards scan: a regex search
    for a word at the end is quadratic on a long line of word characters)."""
    start = len(before_cursor)
    while start and (before_cursor[start - 1].isalnum() or before_cursor[start - 1] == "_"):
        start -= 1
    return before_cursor[start:]


def _without_replaced_tail(text: str, result: CompletionResult) -> tuple[str, int]:
    """The suggestion and the end of the range it replaces, with a replaced tail left alone.

    When the suggestion ends with the characters after the cursor it replaces (the ``)`` an
    editor auto-closed), the item inserts the suggestion without them and leaves them in
    place: the document ends the same, and Neovim's menu, which inserts at the cursor and
    ignores where an edit ends, does not double the ``)``. A replaced range never crosses a
    line (LSP requires a completion edit to stay on one line).
    """
    replaced = text[result.start : result.end]
    if not replaced or "\n" in replaced:
        return result.text, result.start
    if result.text.endswith(replaced) and len(result.text) > len(replaced):
        return result.text[: -len(replaced)], result.start
    return result.text, result.end


def _relative_indentation(suggestion: str, base_indent: str) -> str:
    """The suggestion with the cursor line's indentation taken off the lines after the first.

    Snippet expansion (Neovim's ``vim.snippet.expand``) puts the cursor line's indentation in
    front of every line after the first; the model wrote whole lines. A line indented less
    than the cursor line cannot be written that way, so the text ends before it (the rest of
    the suggestion is outside the block being written).
    """
    lines = suggestion.split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if not line.strip():
            kept.append("")
        elif line.startswith(base_indent):
            kept.append(line[len(base_indent) :])
        else:
            while len(kept) > 1 and not kept[-1]:
                kept.pop()
            break
    return "\n".join(kept)


def escape_snippet(text: str) -> str:
    """``text`` as a snippet that expands to exactly ``text``: ``\\``, ``$`` and ``}`` escaped
    (the LSP snippet grammar's escapable characters outside choices)."""
    return _SNIPPET_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def _label(inserted: str, *, shorten: bool) -> str:
    """The first non-blank line, trimmed and (``shorten``) shortened; never empty."""
    line = next((ln.strip() for ln in inserted.split("\n") if ln.strip()), "")
    if shorten and len(line) > LABEL_CHARS:
        line = line[: LABEL_CHARS - 1].rstrip() + "…"
    return line or DETAIL


def _documentation(language: str, shown: str, client: ClientTraits) -> types.MarkupContent:
    if not client.markdown:
        return types.MarkupContent(kind=types.MarkupKind.PlainText, value=shown)
    # A fence longer than any run of backticks in the text, so the text cannot close it.
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * max(3, longest + 1)
    return types.MarkupContent(
        kind=types.MarkupKind.Markdown, value=f"{fence}{language}\n{shown}\n{fence}"
    )
