"""The cheap list: which code actions a request gets, from the request and the document alone.

No provider call, no prompt, no parsing: the list is made on every cursor move in some
editors (VS Code asks for the lightbulb), so it costs a few comparisons, the offsets of a few
lines and a hash of each target's text. Titles start with "Crucible: ", and a kind filter
(``context.only``) is applied before anything is built.

- ``quickfix``: one per diagnostic touching the range (at most ``MAX_FIXES``), targeting its
  lines, and "fix all N problems here" over all of their lines when there are several;
- ``refactor.rewrite`` on a non-empty selection (its whole lines): simplify, document, add
  type annotations (languages that have them), fix bugs;
- ``[[code_actions.custom]]``: by scope, on the selection, the diagnostics' lines or the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crucible.actions.listed import (
    MAX_PROBLEMS,
    MAX_TITLE,
    Intent,
    ListedAction,
    Problem,
    digest_of,
)
from crucible.config.settings import ActionScope, CodeActionsSettings

QUICKFIX = "quickfix"
REWRITE = "refactor.rewrite"
MAX_FIXES = 8  # one quick fix per diagnostic, at most this many (the menu stays readable)
MAX_TARGET_CHARS = 24_000  # a target past this is refused at resolve (select less)
_TITLE_MESSAGE = 60  # characters of a diagnostic message shown in a title

# Languages with optional type annotations the model can add (others either have none, or
# require them already).
TYPED_LANGUAGES = frozenset({"python", "typescript", "typescriptreact", "php"})

_REWRITES = (
    (Intent.SIMPLIFY, "simplify"),
    (Intent.DOCUMENT, "add documentation"),
    (Intent.ANNOTATE, "add type annotations"),
    (Intent.FIX_BUGS, "fix bugs"),
)


@dataclass(frozen=True, slots=True)
class ListingRequest:
    """One ``textDocument/codeAction`` request, in the document's terms."""

    uri: str
    language_id: str
    version: int
    text: str
    line_offset: Callable[[int], int]  # offset of a line's start (the text's end past it)
    start: tuple[int, int]  # the requested range, LSP (line, character)
    end: tuple[int, int]
    problems: tuple[Problem, ...]  # context.diagnostics, in the request's order
    only: tuple[str, ...] | None = None  # context.only


@dataclass(frozen=True, slots=True)
class ActionOffer:
    title: str
    kind: str
    listed: ListedAction
    # Indexes into the request's diagnostics it fixes. Never marked preferred: an editor may
    # apply a preferred fix unseen (VS Code's auto fix), and a model's guess is no such fix.
    problems: tuple[int, ...] = ()


def wanted(kind: str, only: Sequence[str] | None) -> bool:
    """Whether ``kind`` passes ``context.only``: equal to an entry, or under it."""
    return only is None or any(kind == o or kind.startswith(o + ".") for o in only)


def touches(problem: Problem, start: tuple[int, int], end: tuple[int, int]) -> bool:
    """Whether a diagnostic's range touches (overlaps or borders) the requested range."""
    return problem.start <= end and start <= problem.end


def list_actions(request: ListingRequest, settings: CodeActionsSettings) -> tuple[ActionOffer, ...]:
    touching = [i for i, p in enumerate(request.problems) if touches(p, request.start, request.end)]
    offers: list[ActionOffer] = []
    lines = _Lines(request)
    if wanted(QUICKFIX, request.only):
        offers += _fixes(request, touching, lines)
    selection = _selected_lines(request.start, request.end)
    if selection is not None and wanted(REWRITE, request.only):
        for intent, name in _REWRITES:
            if intent is Intent.ANNOTATE and request.language_id not in TYPED_LANGUAGES:
                continue
            listed = lines.action(intent, *selection, title=name)
            offers.append(ActionOffer(f"Crucible: {name}", REWRITE, listed))
    for index, custom in enumerate(settings.custom):
        if not wanted(custom.kind, request.only):
            continue
        if custom.scope is ActionScope.SELECTION and selection is not None:
            listed = lines.action(Intent.CUSTOM, *selection, custom=index, title=custom.title)
        elif custom.scope is ActionScope.DIAGNOSTIC and touching:
            picked = tuple(request.problems[i] for i in touching[:MAX_PROBLEMS])
            first, last = _span(picked)
            listed = lines.action(
                Intent.CUSTOM, first, last, problems=picked, custom=index, title=custom.title
            )
        elif custom.scope is ActionScope.FILE:
            listed = lines.action(
                Intent.CUSTOM, 0, 0, whole_file=True, custom=index, title=custom.title
            )
        else:
            continue
        offers.append(ActionOffer(f"Crucible: {custom.title}", custom.kind, listed))
    return tuple(offers)


def _fixes(request: ListingRequest, touching: list[int], lines: _Lines) -> list[ActionOffer]:
    offers = []
    for i in touching[:MAX_FIXES]:
        problem = request.problems[i]
        message = " ".join(problem.message.split())
        if len(message) > _TITLE_MESSAGE:
            message = message[: _TITLE_MESSAGE - 1] + "…"
        listed = lines.action(
            Intent.FIX, problem.start[0], _last_line(problem.start, problem.end),
            problems=(problem,), title=f"fix “{message}”",
        )  # fmt: skip
        offers.append(ActionOffer(f"Crucible: fix “{message}”", QUICKFIX, listed, (i,)))
    if len(touching) > 1:
        picked = tuple(request.problems[i] for i in touching[:MAX_PROBLEMS])
        first, last = _span(picked)
        name = f"fix all {len(touching)} problems here"
        listed = lines.action(Intent.FIX_ALL, first, last, problems=picked, title=name)
        offers.append(
            ActionOffer(f"Crucible: {name}", QUICKFIX, listed, tuple(touching[:MAX_PROBLEMS]))
        )
    return offers


def _last_line(start: tuple[int, int], end: tuple[int, int]) -> int:
    """The last line a range covers: one ending at column 0 of a later line stops before it."""
    return end[0] - 1 if end[1] == 0 and end[0] > start[0] else end[0]


def _selected_lines(start: tuple[int, int], end: tuple[int, int]) -> tuple[int, int] | None:
    if end <= start:
        return None
    return start[0], _last_line(start, end)


def _span(problems: Sequence[Problem]) -> tuple[int, int]:
    return min(p.start[0] for p in problems), max(_last_line(p.start, p.end) for p in problems)


class _Lines:
    """The listed actions of one request: the target's digest from its lines' text."""

    def __init__(self, request: ListingRequest) -> None:
        self._request = request

    def action(
        self,
        intent: Intent,
        first: int,
        last: int,
        *,
        problems: tuple[Problem, ...] = (),
        whole_file: bool = False,
        custom: int = -1,
        title: str = "",
    ) -> ListedAction:
        request = self._request
        digest = ""
        if not whole_file:
            start, end = request.line_offset(first), request.line_offset(last + 1)
            if end - start <= MAX_TARGET_CHARS:  # a longer one is refused at resolve
                digest = digest_of(request.text[start:end])
        return ListedAction(
            uri=request.uri,
            version=request.version,
            intent=intent,
            first_line=first,
            last_line=max(first, last),
            whole_file=whole_file,
            digest=digest,
            problems=problems,
            custom=custom,
            title=title[:MAX_TITLE],
        )
