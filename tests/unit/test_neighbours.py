"""select_neighbours: which other open documents go into the prompt, and how much of each."""

from __future__ import annotations

from collections.abc import Iterator

from tests.fakes.documents import open_file

from crucible.context.neighbours import OpenFile, select_neighbours
from crucible.context.snapshot import ContextFile, DocumentSnapshot


def snapshot(name: str, language_id: str, text: str) -> DocumentSnapshot:
    return DocumentSnapshot(f"file:///src/{name}", f"/src/{name}", language_id, 1, text)


def doc(name: str, language_id: str, text: str) -> OpenFile:
    return open_file(snapshot(name, language_id, text))


CURRENT = snapshot("app.py", "python", "from models import User\n\nuser = User(")
MODELS_TEXT = "class User:\n    def __init__(self, name):\n        ...\n"
MODELS = doc("models.py", "python", MODELS_TEXT)
DB = doc("db.py", "python", "import sqlite3\n\nDB = sqlite3.connect(':memory:')\n")
README = doc("README.md", "markdown", "# App\n\nRun `python app.py`.\n")
STYLE = doc("style.css", "css", "body { margin: 0; }\n")


def paths(files: tuple[ContextFile, ...]) -> list[str]:
    return [f.path for f in files]


def test_same_language_first_then_the_rest_in_the_given_order() -> None:
    files = select_neighbours(CURRENT, [README, MODELS, STYLE, DB], max_files=4, max_chars=1000)
    assert paths(files) == ["/src/models.py", "/src/db.py", "/src/README.md", "/src/style.css"]
    assert files[0] == ContextFile("/src/models.py", MODELS_TEXT)


def test_current_document_is_never_its_own_neighbour() -> None:
    same_uri = doc("app.py", "python", "an older copy of the current file\n")
    assert paths(select_neighbours(CURRENT, [same_uri, DB], max_files=3, max_chars=100)) == [
        "/src/db.py"
    ]


def test_max_files_bounds_the_count_and_zero_means_none() -> None:
    others = [README, MODELS, DB]
    assert paths(select_neighbours(CURRENT, others, max_files=1, max_chars=100)) == [
        "/src/models.py"
    ]
    assert select_neighbours(CURRENT, others, max_files=0, max_chars=100) == ()


def test_other_languages_fill_what_same_language_files_leave() -> None:
    files = select_neighbours(CURRENT, [README, STYLE, MODELS], max_files=2, max_chars=100)
    assert paths(files) == ["/src/models.py", "/src/README.md"]


def test_each_file_contributes_whole_lines_from_the_top() -> None:
    # 40 chars end inside "    def __init__(self, name):": only the first line fits whole.
    (models,) = select_neighbours(CURRENT, [MODELS], max_files=1, max_chars=40)
    assert models.text == "class User:\n"


def test_a_budget_ending_on_a_line_break_keeps_that_line() -> None:
    (db,) = select_neighbours(CURRENT, [DB], max_files=1, max_chars=len("import sqlite3\n"))
    assert db.text == "import sqlite3\n"


def test_first_line_longer_than_the_budget_is_cut_hard() -> None:
    minified = doc("vendor.min.js", "javascript", "!function(){" + "var a=1;" * 1000 + "}();\n")
    (vendor,) = select_neighbours(CURRENT, [minified], max_files=1, max_chars=20)
    assert vendor.text == "!function(){var a=1;"


def test_empty_and_blank_documents_are_skipped() -> None:
    empty = doc("empty.py", "python", "")
    blank = doc("blank.py", "python", "\n\n   \n")
    files = select_neighbours(CURRENT, [empty, blank, DB], max_files=2, max_chars=100)
    assert paths(files) == ["/src/db.py"]


def test_reading_stops_once_same_language_files_fill_the_quota() -> None:
    def most_recent_first() -> Iterator[OpenFile]:
        yield MODELS
        yield DB
        raise AssertionError("read past the quota")

    assert len(select_neighbours(CURRENT, most_recent_first(), max_files=2, max_chars=100)) == 2


def test_a_file_reads_only_its_head_and_only_once() -> None:
    reads: list[int] = []

    def read(n: int) -> str:
        reads.append(n)
        return MODELS_TEXT[:n]

    models = OpenFile("file:///src/models.py", "/src/models.py", "python", len(MODELS_TEXT), read)
    for _ in range(3):  # one request planned three times (first, alternatives, prefetch)
        select_neighbours(CURRENT, [models], max_files=1, max_chars=20)
    assert reads == [21]  # the budget and one character to see whether the text goes on


def test_a_text_exactly_the_budget_long_is_kept_whole() -> None:
    text = "x = 1\ny = 2"  # no final line break: the last line is whole only at the end
    (whole,) = select_neighbours(CURRENT, [doc("xy.py", "python", text)], max_files=1,
                                 max_chars=len(text))  # fmt: skip
    assert whole.text == text
    (cut,) = select_neighbours(CURRENT, [doc("xy.py", "python", text + "3")], max_files=1,
                               max_chars=len(text))  # fmt: skip
    assert cut.text == "x = 1\n"


def test_excluded_files_are_skipped_unread() -> None:
    def secret_read(n: int) -> str:
        raise AssertionError("an excluded file was read")

    secret = OpenFile("file:///src/.env.py", "/src/.env.py", "python", 10, secret_read)
    files = select_neighbours(
        CURRENT,
        [secret, MODELS],
        max_files=1,
        max_chars=100,
        excluded=lambda path: path.endswith(".env.py"),
    )
    assert paths(files) == ["/src/models.py"]
