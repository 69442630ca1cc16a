"""Suggestion: one finished inline suggestion, as post-processing leaves it and the cache keeps it.

It is the one value every stage passes around: post-processing makes it, a flight hands it to
everyone who waited, the cache stores it (memory, and disk through ``encode``/``decode``), and
type-through hands back its rest. It carries no position: ``replace_suffix`` counts characters
after whatever cursor it is shown at. The editor gets it placed, as a ``CompletionResult``
(``service.py``). Empty text is a real suggestion: "nothing worth suggesting here".
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Suggestion:
    """``text`` to insert at the cursor, replacing ``replace_suffix`` characters after it."""

    text: str
    replace_suffix: int = 0

    def encode(self) -> str:
        return json.dumps([self.text, self.replace_suffix], ensure_ascii=False)

    @classmethod
    def decode(cls, stored: str) -> Suggestion | None:
        """None for anything that is not an encoded suggestion (a foreign or damaged row)."""
        try:
            text, replace_suffix = json.loads(stored)
        except (ValueError, TypeError):
            return None
        if not isinstance(text, str) or not isinstance(replace_suffix, int):
            return None
        return cls(text, replace_suffix)
