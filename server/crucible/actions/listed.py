"""What a listed code action carries to its resolve: ``ListedAction``, bounded and checked
on return.

``codeAction/resolve`` and the ``crucible.applyCodeAction`` command get back whatever the
client sends, so the data is treated as input: ``ListedAction.from_wire`` checks every field's
type and bound and raises ``MalformedAction`` with a message naming the field; nothing in it
is trusted to index a document (the resolve re-reads the document and re-checks the target).

It names its target by whole lines (``first_line`` to ``last_line``, 0-based,
inclusive; ``whole_file`` for the document), never by character offsets, so it means the
same whatever the position encoding, and a digest of the target's text as listed tells a
resolve whether the lines still hold that text when the document's version moved on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

WIRE_VERSION = 1
MAX_PROBLEMS = 20  # diagnostics one action carries (a "fix all" of many is cut here)
MAX_MESSAGE = 500  # characters of a diagnostic message kept
MAX_LABEL = 100  # characters of a diagnostic's source or code
MAX_URI = 4096
MAX_TITLE = 200
MAX_LINE = 10_000_000  # far past any document an editor opens
MAX_CUSTOM = 32  # config/validate.py MAX_CUSTOM_ACTIONS


class MalformedAction(ValueError):
    """The data a client sent back is not an action this server listed; the message says why."""


class Intent(StrEnum):
    """What the model is asked to do."""

    FIX = "fix"  # one diagnostic
    FIX_ALL = "fix_all"  # every diagnostic touching the range
    SIMPLIFY = "simplify"
    DOCUMENT = "document"
    ANNOTATE = "annotate"
    FIX_BUGS = "fix_bugs"
    CUSTOM = "custom"  # [[code_actions.custom]] number ``custom``


@dataclass(frozen=True, slots=True)
class Problem:
    """A diagnostic as a code action sees it; positions are LSP (line, character)."""

    message: str
    start: tuple[int, int]
    end: tuple[int, int]
    source: str = ""
    code: str = ""

    def label(self) -> str:
        """``line 3: undefined name 'x' [pyflakes F821]`` (1-based line), for prompts."""
        tags = " ".join(part for part in (self.source, self.code) if part)
        return f"line {self.start[0] + 1}: {self.message}" + (f" [{tags}]" if tags else "")


@dataclass(frozen=True, slots=True)
class ListedAction:
    uri: str
    version: int
    intent: Intent
    first_line: int
    last_line: int
    whole_file: bool = False
    digest: str = ""  # of the target's text as listed; "" for the whole file
    problems: tuple[Problem, ...] = ()
    custom: int = -1
    title: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "crucible": WIRE_VERSION,
            "uri": self.uri,
            "version": self.version,
            "intent": str(self.intent),
            "lines": [self.first_line, self.last_line],
            "file": self.whole_file,
            "digest": self.digest,
            "problems": [
                {
                    "message": p.message,
                    "range": [*p.start, *p.end],
                    "source": p.source,
                    "code": p.code,
                }
                for p in self.problems
            ],
            "custom": self.custom,
            "title": self.title,
        }

    @classmethod
    def from_wire(cls, data: object) -> ListedAction:
        """The listed action in ``data``; ``MalformedAction`` naming the first bad field."""
        wire = _mapping(data, "data")
        if wire.get("crucible") != WIRE_VERSION:
            raise MalformedAction("data: not a Crucible code action (no 'crucible': 1)")
        lines = _ints(wire.get("lines"), "data.lines", 2, 0, MAX_LINE)
        if lines[0] > lines[1]:
            raise MalformedAction("data.lines: the first line is after the last")
        intent_name = _text(wire.get("intent"), "data.intent", 20)
        if intent_name not in {i.value for i in Intent}:
            raise MalformedAction(f"data.intent: unknown intent {intent_name!r}")
        problems = wire.get("problems", [])
        if not isinstance(problems, list | tuple) or len(problems) > MAX_PROBLEMS:
            raise MalformedAction(f"data.problems: expected a list of at most {MAX_PROBLEMS}")
        digest = _text(wire.get("digest", ""), "data.digest", 32)
        if digest.strip("0123456789abcdef"):
            raise MalformedAction("data.digest: expected hexadecimal digits")
        return cls(
            uri=_text(wire.get("uri"), "data.uri", MAX_URI),
            version=_int(wire.get("version"), "data.version", -(2**31), 2**31 - 1),
            intent=Intent(intent_name),
            first_line=lines[0],
            last_line=lines[1],
            whole_file=_bool(wire.get("file", False), "data.file"),
            digest=digest,
            problems=tuple(_problem(p, f"data.problems[{i}]") for i, p in enumerate(problems)),
            custom=_int(wire.get("custom", -1), "data.custom", -1, MAX_CUSTOM - 1),
            title=_text(wire.get("title", ""), "data.title", MAX_TITLE),
        )


def digest_of(text: str) -> str:
    """A short fingerprint of a target's text (64 bits: telling an edit apart, not security)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def _problem(data: object, where: str) -> Problem:
    wire = _mapping(data, where)
    bounds = _ints(wire.get("range"), f"{where}.range", 4, 0, MAX_LINE)
    return Problem(
        message=_text(wire.get("message"), f"{where}.message", MAX_MESSAGE),
        start=(bounds[0], bounds[1]),
        end=(bounds[2], bounds[3]),
        source=_text(wire.get("source", ""), f"{where}.source", MAX_LABEL),
        code=_text(wire.get("code", ""), f"{where}.code", MAX_LABEL),
    )


def _mapping(data: object, where: str) -> Mapping[str, Any]:
    # pygls hands JSON objects of no declared type over as named tuples.
    as_dict = getattr(data, "_asdict", None)
    if callable(as_dict):
        data = as_dict()
    if not isinstance(data, Mapping):
        raise MalformedAction(f"{where}: expected an object, got {type(data).__name__}")
    return data


def _text(value: object, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise MalformedAction(f"{where}: expected a string")
    if len(value) > limit:
        raise MalformedAction(f"{where}: longer than {limit} characters")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedAction(f"{where}: expected true or false")
    return value


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedAction(f"{where}: expected an integer from {low} to {high}")
    return value


def _ints(value: object, where: str, count: int, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or len(value) != count:
        raise MalformedAction(f"{where}: expected {count} integers")
    return tuple(_int(item, where, low, high) for item in value)
