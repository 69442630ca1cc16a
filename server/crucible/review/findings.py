"""How a unit is reviewed: the prompt, the cache key, and reading the model's findings.

The model is asked for a JSON array of findings, ``[{"line": N, "message": "...",
"replacement": "..."}]``, with ``line`` as numbered in the prompt (the file's own 1-based
numbers) and ``replacement`` the corrected text of that one line (its indentation included),
or ``[]`` when there is nothing worth saying. Reading it (``read_findings``) takes the first
JSON array in the answer (fenced or not); findings outside the unit, without a message, or
past ``MAX_FINDINGS_PER_UNIT`` are dropped; an answer with no array is no findings.

Findings are cached with lines relative to the unit (``encode``/``decode``), so a cached unit
that moved down the file still places them right. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crucible.cache.keys import text_key
from crucible.providers.base import ChatMessage, ChatRequest
from crucible.review.units import Unit

MAX_FINDINGS_PER_UNIT = 5
MAX_MESSAGE_CHARS = 500
MAX_REPLACEMENT_CHARS = 2000
MAX_TOKENS = 600

_SYSTEM = (
    "You review code changes like a careful senior engineer. Report only real problems: bugs,"
    " wrong logic, unhandled errors, security issues. No style remarks. Answer with a JSON"
    ' array only: [{"line": <line number as shown>, "message": "<one sentence>",'
    ' "replacement": "<the corrected text of that one line, with its indentation>"}].'
    " Answer [] when the code is fine."
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its line (relative to the unit when cached, absolute when published), what
    is wrong, and the corrected line when the model gave one."""

    line: int
    message: str
    replacement: str | None = None


def key(unit: Unit, language: str, identity: Sequence[Any]) -> str:
    """By content: the unit's text, its language and the chat providers."""
    return text_key("review", [list(identity), language, unit.text])


def prompt(unit: Unit, language: str, path: str) -> ChatRequest:
    numbered = "\n".join(
        f"{unit.first + i + 1:>5} | {line}" for i, line in enumerate(unit.text.split("\n"))
    )
    user = f"File: {path} ({language})\n\n```{language}\n{numbered}\n```\n\nReview this code."
    return ChatRequest(
        messages=(ChatMessage("system", _SYSTEM), ChatMessage("user", user)),
        max_tokens=MAX_TOKENS,
        temperature=0.1,
    )


def read_findings(answer: str, unit: Unit) -> list[Finding]:
    """The findings in ``answer``, with lines relative to ``unit``."""
    items = _first_array(answer)
    found: list[Finding] = []
    for item in items:
        finding = _finding(item, unit)
        if finding is not None:
            found.append(finding)
        if len(found) >= MAX_FINDINGS_PER_UNIT:
            break
    return found


def encode(findings: Sequence[Finding]) -> str:
    return json.dumps([[f.line, f.message, f.replacement] for f in findings], ensure_ascii=False)


def decode(stored: str) -> list[Finding] | None:
    try:
        rows = json.loads(stored)
        return [
            Finding(int(line), str(message), replacement) for line, message, replacement in rows
        ]
    except (ValueError, TypeError):
        return None


def _first_array(answer: str) -> list[Any]:
    start = answer.find("[")
    while start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(answer, start)
        except ValueError:
            start = answer.find("[", start + 1)
            continue
        return value if isinstance(value, list) else []
    return []


def _finding(item: Any, unit: Unit) -> Finding | None:
    if not isinstance(item, dict):
        return None
    line, message = item.get("line"), item.get("message")
    if not isinstance(line, int) or isinstance(line, bool):
        return None
    if not isinstance(message, str) or not message.strip():
        return None
    relative = line - 1 - unit.first
    if not 0 <= relative <= unit.last - unit.first:
        return None
    replacement = item.get("replacement")
    if not isinstance(replacement, str) or len(replacement) > MAX_REPLACEMENT_CHARS:
        replacement = None
    return Finding(relative, message.strip()[:MAX_MESSAGE_CHARS], replacement)
