"""RecentDocuments: which open documents were touched last, bounded; and what neighbour
selection finds among them."""

from __future__ import annotations

from tests.fakes.documents import open_file

from crucible.context.neighbours import OpenFile, select_neighbours
from crucible.context.recent import RecentDocuments
from crucible.context.snapshot import DocumentSnapshot


def snapshot(name: str, language_id: str, text: str) -> DocumentSnapshot:
    return DocumentSnapshot(f"file:///src/{name}", f"/src/{name}", language_id, 1, text)


def file(uri: str, size: int = 10) -> OpenFile:
    return OpenFile(uri, uri, "python", size, lambda n: "x = 1\n"[:n])


def touch(recent: RecentDocuments, *uris: str) -> tuple[str, ...]:
    evicted: tuple[str, ...] = ()
    for uri in uris:
        evicted += recent.touch(file(uri))
    return evicted


def test_most_recently_touched_first() -> None:
    recent = RecentDocuments()
    touch(recent, "a", "b", "c", "a")
    assert list(recent) == ["a", "c", "b"]


def test_bounded_by_count_and_the_pushed_out_are_returned() -> None:
    recent = RecentDocuments(limit=2)
    assert touch(recent, "a", "b", "a") == ()  # "a" again: nothing pushed out
    assert touch(recent, "c") == ("b",)
    assert list(recent) == ["c", "a"] and len(recent) == 2
    touch(recent, *(f"doc{n}" for n in range(1000)))
    assert len(recent) == 2


def test_a_closed_document_is_forgotten() -> None:
    recent = RecentDocuments()
    touch(recent, "a", "b")
    recent.forget("a")
    recent.forget("never-opened")
    assert list(recent) == ["b"] and "a" not in recent


def test_a_same_language_file_is_found_behind_more_recent_files_of_other_languages() -> None:
    """The bug: only the ``max_files`` most recent documents were candidates, whatever their
    language, so three non-Python files opened after a Python file hid it."""
    current = snapshot("main.py", "python", "def add(a, b):\n    ")
    recent = RecentDocuments()
    for document in (
        snapshot("helpers.py", "python", "def helper():\n    return 42\n"),
        snapshot("notes.md", "markdown", "# Notes\n"),
        snapshot("config.json", "json", '{"debug": true}\n'),
        snapshot("todo.txt", "plaintext", "buy milk\n"),
        current,
    ):
        recent.touch(open_file(document))

    candidates = recent.candidates(current.uri, max_size=1000)
    files = select_neighbours(current, candidates, max_files=3, max_chars=1000)
    assert [f.path for f in files] == ["/src/helpers.py", "/src/todo.txt", "/src/config.json"]


def test_candidates_are_the_other_documents_within_the_size_bound_as_last_touched() -> None:
    recent = RecentDocuments()
    recent.touch(file("small.py", size=10))
    recent.touch(file("grows.py", size=10))
    recent.touch(file("large.py", size=101))
    recent.touch(file("main.py"))
    recent.touch(file("grows.py", size=500))  # an edit made it too large

    assert [f.uri for f in recent.candidates("main.py", max_size=100)] == ["small.py"]
    assert [f.uri for f in recent.candidates("small.py", max_size=1000)] == [
        "grows.py",
        "main.py",
        "large.py",
    ]
