"""What the cache replay edits, and what its fake "model" answers.

Every document is a *target* program with parts missing (holes). The fake provider plays a
perfect fill-in-the-middle model of the targets (:class:`TargetModel`): given the text before
the cursor (the prompt) and after it (the suffix), it answers the target's text between them.
So a suggestion is right exactly when it is the target's text at the cursor, and the server's
stop rule and post-processing, not the model, decide how much of it is shown. Answers are
deterministic: a cached answer must be what the provider would have said again.

Each document starts with a header comment naming the scenario, so no two scenarios share a
prompt (or a cache key); within a system, a scenario's requests can only be served by that
scenario's earlier ones.

Scenarios are scripts of :class:`Step` s (an edit, then a request at the cursor), built from the
targets so that every system replays the same edits; only accept-and-continue accepts what the
server showed (an accept is only defined against a shown suggestion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from tests.fakes.provider import RecordedRequest

from benchmarks._snippets import GO, PYTHON, TYPESCRIPT, Snippet

MARK = "cache-replay"
_MAX_ANSWER = 1200  # characters; the server's stop rule closes the stream long before
_MIN_RUN = 20  # characters of text that place a cursor in a target


@dataclass(frozen=True)
class Hole:
    """A part of a target left out of the document: from right after ``after`` through the end
    of ``through`` (both found in the target, ``through`` after ``after``)."""

    after: str
    through: str

    def span(self, target: str) -> tuple[int, int]:
        start = target.index(self.after) + len(self.after)
        end = target.index(self.through, start) + len(self.through)
        return start, end


@dataclass(frozen=True)
class Document:
    """A target with holes: what is opened, and where the requests go."""

    uri: str
    language_id: str
    target: str

    def with_holes(self, holes: tuple[Hole, ...]) -> tuple[str, list[int]]:
        """The document text with ``holes`` left out, and the cursor offset at each hole."""
        spans = sorted(hole.span(self.target) for hole in holes)
        text, cursors, taken = "", [], 0
        for start, end in spans:
            text += self.target[taken:start]
            cursors.append(len(text))
            taken = end
        return text + self.target[taken:], cursors


def document(scenario: str, snippet: Snippet, name: str | None = None) -> Document:
    """``snippet`` as the target of a scenario's document (its header names the scenario)."""
    stem = name or snippet.name
    header = f"{snippet.comment} {MARK}: {scenario} / {stem}\n"
    uri = f"file:///bench/{scenario}/{stem}.{snippet.extension}"
    return Document(uri, snippet.language_id, header + snippet.text)


# -- the model ---------------------------------------------------------------------------


class TargetModel:
    """The fake provider's reply: a perfect FIM model of the registered targets."""

    def __init__(self) -> None:
        self._targets: list[str] = []

    def register(self, target: str) -> None:
        if target not in self._targets:
            self._targets.append(target)

    def __call__(self, record: RecordedRequest) -> str:
        body = record.body if isinstance(record.body, dict) else {}
        prompt, suffix = body.get("prompt"), body.get("suffix")
        if not isinstance(prompt, str):
            return ""
        return self.answer(prompt, suffix if isinstance(suffix, str) else "")

    def answer(self, prompt: str, suffix: str) -> str:
        for target in self._targets:
            if target.startswith(prompt):
                return middle(target, len(prompt), suffix)[:_MAX_ANSWER]
        # A hole further up is still open, so the prompt is no target's beginning: the cursor
        # is where the longest tail of the prompt that a target holds ends (a tail long enough
        # to say where: a few blanks or an indented line occur anywhere).
        best, where = 0, ("", 0)
        for target in self._targets:
            length = _longest(partial(_holds_tail, target, prompt), prompt)
            if length > best:
                found = target.find(prompt[len(prompt) - length :])
                best, where = length, (target, found + length)
        if best < _MIN_RUN:
            return ""  # not a target's text: nothing to say
        target, cursor = where
        return middle(target, cursor, suffix)[:_MAX_ANSWER]


def middle(target: str, cursor: int, suffix: str) -> str:
    """What lies in ``target`` between ``cursor`` and the text after the cursor.

    The document may have other holes further on, so the suffix need not occur in the target
    whole: the middle ends where the longest beginning of the suffix occurs after the cursor.
    """
    if not suffix.strip():
        return target[cursor:]
    length = _longest(lambda n: target.find(suffix[:n], cursor) >= 0, suffix)
    return target[cursor : target.find(suffix[:length], cursor)] if length else ""


def _holds_tail(target: str, text: str, length: int) -> bool:
    return target.find(text[len(text) - length :]) >= 0


def _longest(occurs: Callable[[int], bool], text: str) -> int:
    """The largest ``n <= len(text)`` for which ``occurs(n)`` holds, 0 if none; ``occurs``
    must be monotonic (a piece that occurs has shorter pieces that occur)."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if occurs(mid):
            low = mid
        else:
            high = mid - 1
    return low


# -- scripts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One edit at the cursor (``insert`` text, or ``delete`` characters before the cursor),
    then one inline completion request at the new cursor. ``kind`` says what the step is."""

    kind: str
    insert: str = ""
    delete: int = 0
    note: str = ""


# Step kinds; the targets judge the ones that must be served from cache.
FIRST = "first"  # a suggestion is asked for where none was before
TYPED = "typed"  # typed (or backspaced, or a word accepted) inside the shown suggestion
AFTER = "after"  # the suggestion accepted in full: the next one is asked for
ACCEPT = "accept"  # accept-and-continue: the shown suggestion accepted, the next asked for
VISIT = "visit"  # a file opened, a request at a spot
REVISIT = "revisit"  # the same file reopened, the same spot
RESTART = "restart"  # the same again, in a new server process sharing the cache directory
CACHED_KINDS = {TYPED: "type-through", REVISIT: "repeated request", RESTART: "after restart"}


def _words(text: str) -> Iterator[str]:
    """``text`` in the pieces an editor's accept-word takes: whitespace, then a word or one
    other character."""
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and (text[j].isalnum() or text[j] == "_"):
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
        else:
            j += 1
        yield text[i:j]
        i = j


def type_through_steps(suggestion: str, *, quick: bool) -> list[Step]:
    """Type through ``suggestion`` (a function body starting with a line break): Enter with
    auto-indent, characters one by one (to the end of the first line in a full run), a bare
    newline, backspaces, two accepted words, then the rest accepted at once."""
    first_break = suggestion.index("\n", 1)
    indent = len(suggestion[1:]) - len(suggestion[1:].lstrip(" \t"))
    enter = suggestion[: 1 + indent]
    line = suggestion[len(enter) : first_break]
    if quick:
        line = line[:6]
    steps = [Step(TYPED, insert=enter, note="Enter (auto-indent)")]
    steps += [Step(TYPED, insert=c, note="key") for c in line]
    done = len(enter) + len(line)
    if not quick:
        steps.append(Step(TYPED, insert="\n", note="newline"))
        done += 1
        second = suggestion[done : suggestion.index("\n", done)]
        typed_ahead = second[: len(second) - len(second.lstrip(" \t")) + 3]
        steps += [Step(TYPED, insert=c, note="key") for c in typed_ahead]
        done += len(typed_ahead)
    backspaces = 3
    steps += [Step(TYPED, delete=1, note="backspace") for _ in range(backspaces)]
    done -= backspaces
    words = _words(suggestion[done:])
    for _ in range(2):
        word = next(words)
        steps.append(Step(TYPED, insert=word, note="accept word"))
        done += len(word)
    steps.append(Step(AFTER, insert=suggestion[done:], note="accept the rest"))
    return steps


# -- the scenarios' documents ------------------------------------------------------------

TYPE_THROUGH_HOLE = Hole(
    "def daily_range(readings: list[Reading]) -> dict[str, tuple[float, float]]:",
    "for name, values in by_station.items()}",
)

# Accept-and-continue writes a module function by function: header, then body, then the next.
CHAIN = Snippet(
    "chain",
    "python",
    "py",
    "#",
    '''"""Small statistics over lists of floats."""

import math


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def spread(values: list[float]) -> float:
    return max(values) - min(values)


def variance(values: list[float]) -> float:
    centre = mean(values)
    return sum((v - centre) ** 2 for v in values) / len(values)


def deviation(values: list[float]) -> float:
    return math.sqrt(variance(values))


def normalised(values: list[float]) -> list[float]:
    low, width = min(values), spread(values)
    return [(v - low) / width for v in values]


def clipped(values: list[float], low: float, high: float) -> list[float]:
    return [min(max(v, low), high) for v in values]
''',
)
CHAIN_START = "    return sum(values) / len(values)"  # the document ends here at first
CHAIN_FUNCTIONS = ("spread", "variance", "deviation", "normalised", "clipped")

REVISIT_HOLES = {
    PYTHON.name: (
        Hole("class Reading:", "celsius: float"),
        TYPE_THROUGH_HOLE,
        Hole("    temperatures = [", "reading.celsius for reading in readings]"),
        Hole("    mean = statistics.", "fmean(temperatures)"),
    ),
    TYPESCRIPT.name: (
        Hole("const open = tasks.filter(", "(task) => !task.done);"),
        Hole("      tagged.set(tag, ", "(tagged.get(tag) ?? 0) + 1);"),
        Hole("const top = [...tagged.entries()].sort(", ".slice(0, 3);"),
        Hole("  return `${open.length} open → ", '.join(", ")}`;'),
    ),
    GO.name: (
        Hole("// Cache keeps values for a fixed time to live ", "forgets them after."),
        Hole("func New(ttl time.Duration) *Cache {", "entries: make(map[string]entry)}"),
        Hole("\te, ok := c.", "entries[key]"),
        Hole("\t\tdelete(", "c.entries, key)"),
    ),
}
REVISIT_SNIPPETS = (PYTHON, TYPESCRIPT, GO)
