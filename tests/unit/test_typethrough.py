"""TypeThrough: the rest of a recent suggestion for text typed at its cursor, and nothing for
any other edit."""

from __future__ import annotations

from crucible.cache.typethrough import TypeThrough

DOC = "file:///a.py"
BEFORE = "def add(a, b):\n    "
AFTER = "\n\nprint(add(1, 2))\n"
SUGGESTION = "total = a + b\n    return total"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**options: float) -> tuple[TypeThrough[str], Clock]:
    clock = Clock()
    index: TypeThrough[str] = TypeThrough(clock=clock, **options)  # type: ignore[arg-type]
    index.record(DOC, len(BEFORE), BEFORE, AFTER, SUGGESTION, "value")
    return index, clock


def typed(index: TypeThrough[str], text: str, document: str = DOC) -> int | None:
    """How much of the suggestion ``text`` (BEFORE + text + AFTER) types through."""
    found = index.find(document, BEFORE + text + AFTER, len(BEFORE) + len(text), AFTER)
    return None if found is None else found.typed


def test_each_prefix_of_the_suggestion_types_through() -> None:
    index, _ = make()
    for length in range(len(SUGGESTION)):
        assert typed(index, SUGGESTION[:length]) == length
    assert index.hits == len(SUGGESTION)


def test_across_a_newline_and_back_to_the_anchor() -> None:
    index, _ = make()
    assert typed(index, "total = a + b\n    ") == len("total = a + b\n    ")
    assert typed(index, "") == 0  # backspaced to where it was shown: the whole suggestion


def test_the_whole_suggestion_typed_leaves_nothing() -> None:
    index, _ = make()
    assert typed(index, SUGGESTION) is None


def test_text_that_departs_from_the_suggestion_is_a_miss() -> None:
    index, _ = make()
    assert typed(index, "totl") is None
    assert typed(index, "x") is None


def test_an_edit_before_or_after_the_cursor_is_a_miss() -> None:
    index, _ = make()
    edited_before = "def add(a, c):\n    tot" + AFTER
    assert index.find(DOC, edited_before, len(edited_before) - len(AFTER), AFTER) is None
    # An auto-closed bracket changes the text after the cursor.
    assert index.find(DOC, BEFORE + "tot)" + AFTER, len(BEFORE) + 3, ")" + AFTER) is None
    # The cursor moved before the anchor.
    assert index.find(DOC, BEFORE + AFTER, len(BEFORE) - 1, " " + AFTER) is None


def test_other_documents_do_not_see_it_and_forget_drops_it() -> None:
    index, _ = make()
    assert typed(index, "tot", document="file:///b.py") is None
    index.forget(DOC)
    assert typed(index, "tot") is None


def test_anchors_expire() -> None:
    index, clock = make(ttl_s=10.0)
    clock.now = 10.5
    assert typed(index, "tot") is None


def test_the_newest_matching_suggestion_wins_and_old_ones_stay_usable() -> None:
    index, _ = make()
    index.record(DOC, len(BEFORE), BEFORE, AFTER, "total = sum((a, b))", "newer")
    hit = index.find(DOC, BEFORE + "total = " + AFTER, len(BEFORE) + 8, AFTER)
    assert hit is not None and hit.value == "newer"
    older = index.find(DOC, BEFORE + "total = a" + AFTER, len(BEFORE) + 9, AFTER)
    assert older is not None and older.value == "value"


def test_each_document_keeps_a_bounded_number_of_anchors() -> None:
    index, _ = make(per_document=3)
    for n in range(5):
        index.record(DOC, n, "x" * n, AFTER, f"suggestion {n}", str(n))
    assert len(index) == 3
    assert index.clear() == 3 and len(index) == 0


def test_recording_the_same_suggestion_again_does_not_fill_the_window() -> None:
    index, _ = make(per_document=4)
    for _ in range(10):
        index.record(DOC, len(BEFORE), BEFORE, AFTER, SUGGESTION, "value")
    assert len(index) == 1


def test_a_bracket_the_editor_auto_closed_is_replaced_by_the_rest() -> None:
    index, _ = make()
    index.record(DOC, len(BEFORE), BEFORE, AFTER, "counts: dict[str, int] = {}", "typed")
    typed_text = "counts: dict["
    text = BEFORE + typed_text + "]" + AFTER  # the editor inserted "]" after the cursor
    found = index.find(DOC, text, len(BEFORE) + len(typed_text), "]" + AFTER)
    assert found is not None
    assert (found.typed, found.value, found.closer) == (len(typed_text), "typed", 1)


def test_an_auto_closed_quote_counts_too_but_only_right_after_its_opener() -> None:
    index, _ = make()
    index.record(DOC, len(BEFORE), BEFORE, AFTER, 'name = "Ada"', "typed")
    text = BEFORE + 'name = "' + '"' + AFTER
    hit = index.find(DOC, text, len(BEFORE) + 8, '"' + AFTER)
    assert hit is not None and hit.closer == 1
    # The user typed on past the opener: the closer is now real text, not the editor's.
    text = BEFORE + 'name = "A' + '"' + AFTER
    assert index.find(DOC, text, len(BEFORE) + 9, '"' + AFTER) is None


def test_an_auto_closed_bracket_the_suggestion_never_closes_is_a_miss() -> None:
    index, _ = make()
    index.record(DOC, len(BEFORE), BEFORE, AFTER, "first = items[0", "typed")
    text = BEFORE + "first = items[" + "]" + AFTER
    assert index.find(DOC, text, len(BEFORE) + 14, "]" + AFTER) is None


def test_anchors_are_at_document_offsets_so_an_excerpt_starting_elsewhere_finds_them() -> None:
    """A large document is read as an excerpt of its lines around the cursor, whose start
    moves as the cursor crosses a block: the anchor was recorded at its document offset."""
    head = "x = 1\n" * 4000  # 24,000 characters above the function
    index, _ = make()
    window = head[-600:] + BEFORE  # what the model saw before the cursor
    index.record(DOC, len(head) + len(BEFORE), window, AFTER, SUGGESTION, "value")
    document = head + BEFORE + "tot" + AFTER
    cursor = len(head) + len(BEFORE) + 3
    for base in (0, 6, 12_000):  # the whole text, then excerpts starting at line starts
        found = index.find(DOC, document[base:], cursor - base, AFTER, base)
        assert found is not None and found.typed == 3
    # An excerpt starting inside what the model saw before the cursor cannot vouch for it.
    late = len(head) - 300
    assert index.find(DOC, document[late:], cursor - late, AFTER, late) is None


def test_a_key_typed_after_a_hit_is_checked_against_the_texts_of_that_hit() -> None:
    """The texts a hit was checked against are kept for the next key (compared, not hashed
    again): an edit far from the cursor, past the verbatim tails, is still a miss after any
    number of hits; the same key again is still a hit, and a closer the editor added still
    replaces it."""
    head = "# " + "a" * 300 + "\n"
    tail = "\n" + "b" * 300 + "\n"
    index: TypeThrough[str] = TypeThrough()
    index.record(DOC, len(head), head, tail, "total(", "value")

    def find(before: str, text: str, after: str) -> tuple[int, int] | None:
        found = index.find(DOC, before + text + after, len(before) + len(text), after)
        return None if found is None else (found.typed, found.closer)

    assert find(head, "t", tail) == (1, 0)
    assert find(head, "to", tail) == (2, 0)
    far_before = "#!" + head[2:]  # the same length, changed 300 characters before the cursor
    assert find(far_before, "tot", tail) is None
    far_after = tail[:-2] + "c\n"  # changed 300 characters after it
    assert find(head, "tot", far_after) is None
    assert find(head, "tot", tail) == (3, 0)
    assert find(head, "tot", tail) == (3, 0)
    assert find(head, "tota", ")" + tail) is None  # not a closer of "a"
    index.record(DOC, len(head), head, tail, "f(x)", "call")
    assert find(head, "f(", ")" + tail) == (2, 1)  # the editor closed the bracket
    assert find(head, "f(", ")" + tail) == (2, 1)
    assert find(head, "f(", tail) == (2, 0)
