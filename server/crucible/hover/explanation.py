"""What one hover explains, how the model is asked, and how the answer is shown: pure.

A ``Subject`` is what a hover explains: the diagnostics at the position (several: one
explanation covers them) and the code around them (``CONTEXT_LINES`` lines either side of the
lines they cover), with the language. Its cache key (``key``) is made from exactly that, plus
the identities of the chat providers (another model would explain differently), and NOT the
document's path or position: the same error on the same code elsewhere, in another file or
after lines above it moved, is the same explanation.

``prompt`` asks for a short explanation of what the diagnostic means here, why it happens and
how to fix it, with a small code example; the code sent is redacted (``context/redaction.py``)
by the caller. ``markdown`` shows the diagnostics (severity, source, code, message), then the
explanation or a note (on its way, unavailable), then the pointer to the quick fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crucible.cache.keys import text_key
from crucible.context.diagnostics import KnownDiagnostic
from crucible.providers.base import ChatMessage, ChatRequest

CONTEXT_LINES = 3  # lines either side of the diagnostics' lines sent as "the code here"
MAX_EXCERPT_CHARS = 4000  # the excerpt sent, at most (a minified line must not be a prompt)
MAX_TOKENS = 400  # a short explanation and a small example
ON_ITS_WAY = "_Explanation on its way: hover again in a moment._"
QUICK_FIX = '_Quick fix: "Crucible: fix …" in the quick-fix menu (code actions)._'

_SYSTEM = (
    "You are a senior engineer explaining a compiler or linter diagnostic to a colleague, in"
    " the code where it occurs. Be brief: at most 120 words of prose. Say what the diagnostic"
    " means here, why it happens in this code, and how to fix it. End with the fix as a small"
    " fenced code block in the file's language. Use Markdown; no headings."
)


@dataclass(frozen=True, slots=True)
class Subject:
    """What one hover explains (see the module docstring). ``diagnostics`` is empty when
    ``hover.explain_code`` explains plain code."""

    diagnostics: tuple[KnownDiagnostic, ...]
    excerpt: str  # the code around them, as sent (redacted by the caller)
    first_line: int  # 0-based line of the excerpt's first line, for the numbers in the prompt
    language: str

    def key(self, identity: Sequence[Any]) -> str:
        """The cache key: the diagnostics (what they say, not where) and the code."""
        said = [[d.severity, d.source, d.code, d.message] for d in self.diagnostics]
        return text_key("hover", [list(identity), said, self.excerpt, self.language])


def excerpt_bounds(
    diagnostics: Sequence[KnownDiagnostic], line: int, line_count: int
) -> tuple[int, int]:
    """The lines (first, last inclusive) sent as the code around ``diagnostics`` (or around
    ``line`` when there are none)."""
    start = min((d.start_line for d in diagnostics), default=line)
    end = max((d.end_line for d in diagnostics), default=line)
    first = max(0, start - CONTEXT_LINES)
    last = min(max(0, line_count - 1), end + CONTEXT_LINES)
    return first, max(first, last)


def excerpt_of(lines: Sequence[str], first: int, last: int) -> str:
    """Lines ``first``..``last`` joined, cut to ``MAX_EXCERPT_CHARS``."""
    return "\n".join(lines[first : last + 1])[:MAX_EXCERPT_CHARS]


def prompt(subject: Subject, path: str) -> ChatRequest:
    """The chat request explaining ``subject``; ``path`` as the prompt may show it (relative
    to the workspace)."""
    numbered = "\n".join(
        f"{subject.first_line + i + 1:>5} | {line}"
        for i, line in enumerate(subject.excerpt.split("\n"))
    )
    if subject.diagnostics:
        said = "\n".join(f"- line {d.start_line + 1}: {_label(d)}" for d in subject.diagnostics)
        ask = (
            f"The diagnostics:\n{said}\n\nExplain what they mean here, why they happen and how"
            " to fix them (one explanation covering them all)."
        )
    else:
        ask = "Explain what this code does, briefly, and any problem you see in it."
    user = f"File: {path} ({subject.language})\n\n```{subject.language}\n{numbered}\n```\n\n{ask}"
    return ChatRequest(
        messages=(ChatMessage("system", _SYSTEM), ChatMessage("user", user)),
        max_tokens=MAX_TOKENS,
        temperature=0.2,
    )


def markdown(
    diagnostics: Sequence[KnownDiagnostic], explanation: str | None, note: str | None = None
) -> str:
    """The hover: the diagnostics, then the explanation (or ``note``), then the quick fix."""
    parts = [_heading(d) for d in diagnostics]
    body = explanation.strip() if explanation else note
    if body:
        parts.append(body)
    if diagnostics:
        parts.append(QUICK_FIX)
    return "\n\n".join(parts)


def _label(diagnostic: KnownDiagnostic) -> str:
    who = [f"[{part}]" for part in (diagnostic.source, diagnostic.code) if part]
    return " ".join([diagnostic.severity_name, *who]) + f": {diagnostic.message}"


def _heading(diagnostic: KnownDiagnostic) -> str:
    who = [f"`{_tick_safe(p)}`" for p in (diagnostic.source, diagnostic.code) if p]
    return " ".join([f"**{diagnostic.severity_name}**", *who]) + f": {_escape(diagnostic.message)}"


def _tick_safe(text: str) -> str:
    return text.replace("`", "'")


def _escape(text: str) -> str:
    """A message as Markdown text: characters Markdown would read as markup are escaped, line
    breaks kept as hard breaks."""
    escaped = "".join(f"\\{c}" if c in "\\`*_[]<>#|" else c for c in text)
    return escaped.replace("\n", "  \n")
