"""Hover explanations, pure parts: the cache key, the excerpt, the prompt and the Markdown; and
the LSP conversions that feed the diagnostics store."""

from __future__ import annotations

from types import SimpleNamespace

from lsprotocol import types

from crucible.cache.keys import completion_key, text_key
from crucible.context.diagnostics import KnownDiagnostic, LineEdit
from crucible.hover.explanation import (
    ON_ITS_WAY,
    QUICK_FIX,
    Subject,
    excerpt_bounds,
    markdown,
    prompt,
)
from crucible.lsp.diagnostics import known_diagnostics, line_edits, notification_target

ERROR = KnownDiagnostic(
    4, 21, 4, 26, "undefined name 'radus'", severity=1, source="Pyflakes", code="F821"
)


def subject(
    diagnostic: KnownDiagnostic = ERROR, excerpt: str = "return radus", first: int = 1
) -> Subject:
    return Subject((diagnostic,), excerpt, first, "python")


def test_the_key_ignores_where_but_not_what() -> None:
    identity = [["local", "ollama", "m"]]
    moved = KnownDiagnostic(40, 0, 40, 5, ERROR.message, severity=1, source="Pyflakes", code="F821")
    assert subject().key(identity) == subject(moved, first=37).key(identity)
    assert subject().key(identity) != subject(excerpt="return radius").key(identity)
    other = KnownDiagnostic(4, 21, 4, 26, "undefined name 'x'", severity=1)
    assert subject().key(identity) != subject(other).key(identity)
    assert subject().key(identity) != subject().key([["local", "ollama", "other-model"]])


def test_text_keys_are_namespaced_apart_from_completion_keys() -> None:
    key = text_key("hover", ["x"])
    assert key.startswith("hover:")
    assert ":" not in completion_key([], "x", multiline=False, max_lines=1)


def test_the_excerpt_is_the_lines_around_the_diagnostics() -> None:
    assert excerpt_bounds([ERROR], 4, 100) == (1, 7)
    assert excerpt_bounds([ERROR], 4, 6) == (1, 5)
    assert excerpt_bounds([], 1, 3) == (0, 2)


def test_the_prompt_carries_the_diagnostic_code_language_and_path() -> None:
    request = prompt(subject(), "src/area.py")
    user = request.messages[-1].content
    assert "src/area.py (python)" in user
    assert "undefined name 'radus'" in user and "[Pyflakes] [F821]" in user
    assert "    2 | return radus" in user  # numbered as in the file
    assert request.messages[0].role == "system"


def test_markdown_shows_the_diagnostic_then_the_explanation_then_the_quick_fix() -> None:
    text = markdown([ERROR], "Because.")
    assert text == (
        "**error** `Pyflakes` `F821`: undefined name 'radus'\n\nBecause.\n\n" + QUICK_FIX
    )
    assert ON_ITS_WAY in markdown([ERROR], None, ON_ITS_WAY)
    assert (
        markdown([ERROR], None)
        == "**error** `Pyflakes` `F821`: undefined name 'radus'\n\n" + QUICK_FIX
    )


def test_markdown_escapes_the_message() -> None:
    odd = KnownDiagnostic(0, 0, 0, 1, "a *b* `c` <d>", severity=2)
    assert markdown([odd], None).startswith("**warning**: a \\*b\\* \\`c\\` \\<d\\>")


def test_notifications_are_read_field_by_field_and_bad_diagnostics_skipped() -> None:
    good = {
        "range": {"start": {"line": 1, "character": 0}, "end": {"line": 1, "character": 3}},
        "message": "m",
        "code": 7,
        "severity": 9,
    }
    backwards = {
        **good,
        "range": {"start": {"line": 2, "character": 0}, "end": {"line": 1, "character": 0}},
    }
    found = known_diagnostics([good, backwards, {"message": "no range"}, "junk"])
    assert found == [KnownDiagnostic(1, 0, 1, 3, "m", severity=None, source=None, code="7")]
    params = SimpleNamespace(textDocument=SimpleNamespace(uri="file:///a", version=3))
    assert notification_target(params) == ("file:///a", 3)
    assert notification_target({"textDocument": {}}) is None


def test_content_changes_become_line_edits() -> None:
    changes: list[types.TextDocumentContentChangeEvent] = [
        types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(2, 0), types.Position(4, 1)), text="a\r\nb\rc\n"
        ),
        types.TextDocumentContentChangeWholeDocument(text="x"),
    ]
    assert line_edits(changes) == [LineEdit(2, 4, 4), None]
