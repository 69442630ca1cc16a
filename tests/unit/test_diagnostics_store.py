"""The diagnostics store: replace and merge, edits moving and dropping ranges, stale lists,
forgetting, bounds."""

from __future__ import annotations

from crucible.context import diagnostics
from crucible.context.diagnostics import (
    MAX_MESSAGE_CHARS,
    DiagnosticsStore,
    KnownDiagnostic,
    LineEdit,
)

URI = "file:///w/a.py"


def diag(
    line: int, message: str = "boom", *, end_line: int | None = None, severity: int = 1
) -> KnownDiagnostic:
    return KnownDiagnostic(
        line, 2, line if end_line is None else end_line, 6, message, severity=severity
    )


def test_replace_keeps_the_new_list_only() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(1), diag(3)])
    store.replace(URI, 1, [diag(5)])
    assert [d.start_line for d in store.of(URI)] == [5]
    store.replace(URI, 1, [])
    assert store.of(URI) == ()


def test_at_finds_what_covers_the_position_most_severe_first() -> None:
    store = DiagnosticsStore()
    warning, error = diag(2, "w", severity=2), diag(2, "e", severity=1)
    store.replace(URI, 1, [warning, error, diag(4)])
    assert store.at(URI, 2, 3) == (error, warning)
    assert store.at(URI, 2, 6) == ()  # the end is exclusive
    assert store.at(URI, 2, 1) == ()
    assert store.at("file:///other", 2, 3) == ()


def test_an_empty_range_covers_its_own_position() -> None:
    point = KnownDiagnostic(3, 4, 3, 4, "here")
    assert point.covers(3, 4) and not point.covers(3, 5)


def test_an_edit_drops_the_diagnostics_on_its_lines_and_moves_those_below() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(1), diag(3), diag(6, end_line=7)])
    # Line 3 replaced by three lines: +2 for everything below it.
    store.edited(URI, 2, [LineEdit(3, 3, 3)])
    assert [(d.start_line, d.end_line) for d in store.of(URI)] == [(1, 1), (8, 9)]
    assert store.dropped == 1


def test_a_deletion_of_lines_moves_those_below_up() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(10)])
    store.edited(URI, 2, [LineEdit(2, 5, 1)])  # lines 2..5 joined into one
    assert store.of(URI)[0].start_line == 7


def test_edits_apply_in_order() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(4)])
    store.edited(URI, 2, [LineEdit(0, 0, 2), LineEdit(0, 0, 2)])
    assert store.of(URI)[0].start_line == 6


def test_a_whole_document_change_drops_everything() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(1), diag(3)])
    store.edited(URI, 2, [None])
    assert store.of(URI) == ()


def test_a_list_for_an_older_version_is_stale() -> None:
    store = DiagnosticsStore()
    store.edited(URI, 5, [LineEdit(0, 0, 1)])  # the document is at version 5
    assert not store.replace(URI, 4, [diag(1)])
    assert store.of(URI) == () and store.stale == 1
    assert store.replace(URI, 5, [diag(1)])
    assert len(store.of(URI)) == 1


def test_learn_merges_and_keeps_each_diagnostic_once() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(1), diag(3)])
    store.learn(URI, 1, [diag(3), diag(8)])
    assert [d.start_line for d in store.of(URI)] == [1, 3, 8]


def test_forget_on_close() -> None:
    store = DiagnosticsStore()
    store.replace(URI, 1, [diag(1)])
    store.forget(URI)
    assert store.of(URI) == () and len(store) == 0


def test_bounds() -> None:
    store = DiagnosticsStore(max_documents=2, max_per_document=3)
    store.replace("a", 1, [diag(i, severity=2) for i in range(5)] + [diag(9, severity=1)])
    kept = store.of("a")
    assert len(kept) == 3 and kept[0].start_line == 9  # errors kept first
    store.replace("b", 1, [diag(1, "x" * (MAX_MESSAGE_CHARS + 50))])
    assert len(store.of("b")[0].message) == MAX_MESSAGE_CHARS
    store.replace("c", 1, [diag(1)])
    assert len(store) == 2 and store.of("a") == ()  # the least recently updated went


def test_keystrokes_in_a_document_without_diagnostics_keep_its_version_and_bytes() -> None:
    """The usual keystroke (no diagnostics to move) only advances the version; what the store
    counts stays what a recount gives, also when the version's int grows past 256."""
    store = DiagnosticsStore()
    store.edited("file:///a.py", 250, [LineEdit(1, 1, 1)])
    for version in range(251, 300):
        store.edited("file:///a.py", version, [LineEdit(1, 1, 1)])
    store.edited("file:///a.py", 120, [LineEdit(1, 1, 1)])  # an older one: the newest is kept
    document = store._documents["file:///a.py"]
    assert document.version == 299
    assert document.bytes == diagnostics._entry_bytes("file:///a.py", document)
    assert store._bytes == document.bytes
    # Stale diagnostics for an older version are still refused.
    assert not store.replace("file:///a.py", 298, [])
