"""The code in a model's answer: the fenced block, or the unfenced code without its prose.

The prompt asks for one fenced code block. Models mostly comply, with a sentence before and
after; small ones answer bare code, or only prose. ``extract_code`` returns the code, or
``None`` with the reason (no code, only prose, a fence never closed: the answer was cut off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
# A sentence: words and light punctuation, no character that code lines are made of.
# It starts with a capitalised word ("Here", "I", "This"), as code lines rarely do.
_PROSE = re.compile(r"^[A-Z][a-z'’]*( [A-Za-z0-9'’,.!?:;()*\-]+){2,}[ ]*$")
_CODE_CHARS = set('=;{}[]<>"`#/\\_|&$@%^')


@dataclass(frozen=True, slots=True)
class Extracted:
    code: str | None
    reason: str = ""  # why there is no code


def extract_code(answer: str) -> Extracted:
    lines = answer.replace("\r\n", "\n").split("\n")
    opened: tuple[int, str] | None = None
    for i, line in enumerate(lines):
        match = _FENCE.match(line)
        if match is None:
            continue
        fence = match.group(1)
        if opened is None:
            opened = (i, fence)
        elif (
            fence[0] == opened[1][0]
            and len(fence) >= len(opened[1])
            and not line.strip(fence[0] + " \t")
        ):
            body = "\n".join(lines[opened[0] + 1 : i])
            if body.strip():
                return Extracted(body)
            opened = None  # an empty block: look for another
    if opened is not None:
        return Extracted(None, "the answer was cut off inside its code block")
    return _unfenced(lines)


def _unfenced(lines: list[str]) -> Extracted:
    if not any(line.strip() for line in lines):
        return Extracted(None, "the answer was empty")
    first, last = 0, len(lines) - 1
    while first <= last and (not lines[first].strip() or is_prose(lines[first])):
        first += 1
    while last >= first and (not lines[last].strip() or is_prose(lines[last])):
        last -= 1
    if first > last:
        return Extracted(None, "the answer held no code, only prose")
    return Extracted("\n".join(lines[first : last + 1]))


def is_prose(line: str) -> bool:
    """Whether a line reads as a sentence rather than code: a capitalised first word, three
    or more words, letters and light punctuation only (no operator, bracket or quote a code
    line would hold)."""
    text = line.strip()
    if len(text.split()) < 3 or any(c in _CODE_CHARS for c in text):
        return False
    return _PROSE.match(text) is not None and not text.endswith(")")
