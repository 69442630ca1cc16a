"""Is an edit safe to hand back? A check before the user ever sees it.

Python: the edited document must still parse when it parsed before (``ast.parse``, in a
thread when the document is large, so the event loop keeps serving). Other languages, and
Python that did not parse before: the brackets and quotes of the replacement must balance as
those of the target did (the same unclosed openers, unmatched closers and open string at the
end), so a rewrite of half a block stays half a block, and a dropped ``}`` is caught. Prose
languages are not checked.

``check_edit`` returns ``None`` or the problem in words (with a line number), which goes into
the retry prompt and, if the retry fails too, into the message the user reads.
"""

from __future__ import annotations

import ast
import asyncio
from dataclasses import dataclass

_THREAD_CHARS = 50_000  # parse in a thread past this (ast.parse: ~1 ms per 10 K characters)
_UNCHECKED = frozenset({"plaintext", "markdown", "restructuredtext", "latex", "tex", "text"})
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_HASH_COMMENTS = frozenset(
    {"python", "shellscript", "shell", "bash", "sh", "zsh", "ruby", "perl", "r", "yaml",
     "toml", "makefile", "dockerfile", "powershell", "elixir", "julia", "nim", "coffeescript"}
)  # fmt: skip
_SLASH_COMMENTS_OFF = frozenset({"python", "ruby", "perl", "r", "yaml", "toml", "makefile"})
_NO_SINGLE_QUOTE = frozenset({"rust", "ocaml", "clojure", "lisp", "scheme", "racket", "haskell"})


@dataclass(frozen=True, slots=True)
class Balance:
    """What a text leaves open: unmatched closers, unclosed openers (with their 1-based
    lines) and the quote of a string still open at its end."""

    closers: tuple[str, ...]
    openers: tuple[tuple[str, int], ...]
    open_quote: str

    def shape(self) -> tuple[tuple[str, ...], tuple[str, ...], str]:
        return self.closers, tuple(o for o, _ in self.openers), self.open_quote


async def check_edit(
    language_id: str, old_text: str, new_text: str, old: str, new: str
) -> str | None:
    """``None`` when the edit may be returned; else what is wrong. ``old_text``/``new_text``
    are the whole document before and after, ``old``/``new`` the target and its replacement."""
    if language_id in _UNCHECKED:
        return None
    if language_id == "python":
        if len(old_text) + len(new_text) > _THREAD_CHARS:
            was_ok = await asyncio.to_thread(parse_error, old_text) is None
            problem = await asyncio.to_thread(parse_error, new_text) if was_ok else None
        else:
            was_ok = parse_error(old_text) is None
            problem = parse_error(new_text) if was_ok else None
        if was_ok:
            return problem
    return balance_problem(language_id, old, new)


def parse_error(source: str) -> str | None:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return f"it does not parse: line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"it does not parse: {exc}"
    return None


def balance_problem(language_id: str, old: str, new: str) -> str | None:
    before, after = balance(old, language_id), balance(new, language_id)
    if before.shape() == after.shape():
        return None
    if after.open_quote and not before.open_quote:
        return f"a string opened with {after.open_quote} is never closed"
    extra = [o for o in after.openers if o[0] not in [b for b, _ in before.openers]]
    if extra or len(after.openers) > len(before.openers):
        bracket, line = (extra or list(after.openers))[-1]
        return f"the {bracket!r} on line {line} of the replacement is never closed"
    if len(after.closers) > len(before.closers):
        return f"the replacement closes a {after.closers[-1]!r} it never opened"
    return "its brackets and quotes no longer balance as the original's did"


def _comment_end(text: str, i: int, hash_comments: bool, slash_comments: bool) -> int:
    """Where a comment starting at ``i`` ends (``i`` itself when none starts there)."""
    if (text[i] == "#" and hash_comments) or (slash_comments and text.startswith("//", i)):
        end = text.find("\n", i)
        return len(text) if end == -1 else end
    if slash_comments and text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end == -1 else end + 2
    return i


def balance(text: str, language_id: str) -> Balance:
    hash_comments = language_id in _HASH_COMMENTS
    slash_comments = language_id not in _SLASH_COMMENTS_OFF
    quotes = '"`' if language_id in _NO_SINGLE_QUOTE else "\"'`"
    closers: list[str] = []
    openers: list[tuple[str, int]] = []
    quote = ""
    line = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            if quote in "\"'":  # a line break ends an unterminated one-line string
                quote = ""
        elif quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in quotes:
            quote = c
        elif (end := _comment_end(text, i, hash_comments, slash_comments)) != i:
            line += text.count("\n", i, end)
            i = end
            continue
        elif c in _OPENERS:
            openers.append((c, line))
        elif c in _CLOSERS:
            if openers and openers[-1][0] == _CLOSERS[c]:
                openers.pop()
            else:
                closers.append(c)
        i += 1
    return Balance(tuple(closers), tuple(openers), quote)
