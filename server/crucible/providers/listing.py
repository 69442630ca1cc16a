"""The model-listing probe: what a server's list of models says about the configured model.

The formats whose servers list their models (OpenAI-compatible ``models``, Mistral's
``models``, Ollama's ``api/tags``) probe the same way: GET the listing (``HttpProvider``'s
``_probe_models``), find the configured model in it, and say what was found. They differ only
in where the names are (``ModelListing``); a listed entry may name ``aliases`` too (Mistral's
``codestral-latest``), and a model configured by an alias counts as listed::

    a listing without the list, or an empty one      -> not ok, "the server lists no models"
    the model (or an alias of an entry) is listed     -> ok, model_present=True
    not listed, a server of one model (OpenAI kind)   -> ok, model_present=False (it answers
                                                         to any name: reported, not failed)
    not listed, otherwise                             -> not ok, model_present=False

Pure: no I/O here, so every verdict is testable from a dict.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crucible.providers.base import ProbeResult

_QUOTED = 10  # listed names quoted when the configured one is not among them


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelListing:
    """Where one wire format lists its models, and how a listed name is compared."""

    path: str  # the GET that lists them, relative to base_url
    key: str = "data"  # the answer's list of entries ("models" for Ollama)
    field: str = "id"  # each entry's name ("name" for Ollama)
    # Whether a listed name is the configured one (Ollama: a missing tag means ``:latest``).
    same: Callable[[str, str], bool] = operator.eq
    # Servers of one model (llama.cpp, some vLLM setups) answer to any name.
    answers_any_name: bool = False
    has: str = "has"  # the verb before the quoted names

    def verdict(self, answer: dict[str, Any], model: str) -> ProbeResult:
        """What ``answer``, the listing, says about ``model``."""
        entries = answer.get(self.key)
        listed = _named(entries, self.field) if isinstance(entries, list) else {}
        if not listed:
            return ProbeResult(False, "the server lists no models")
        if any(self.same(name, model) for name in listed):
            return ProbeResult(True, f"ok: model {model} available", model_present=True)
        for name, aliases in listed.items():
            if model in aliases:
                detail = f"ok: model {model} available (as {name})"
                return ProbeResult(True, detail, model_present=True)
        names = list(listed)
        quoted = ", ".join(names[:_QUOTED]) + (", …" if len(names) > _QUOTED else "")
        if self.answers_any_name:
            detail = f"ok: server answers, but model {model} is not listed ({self.has}: {quoted})"
            return ProbeResult(True, detail, model_present=False)
        return ProbeResult(False, f"model {model} not found ({self.has}: {quoted})", False)


def _named(entries: list[Any], field: str) -> dict[str, list[Any]]:
    """Each entry's name (its ``field``, when a string) with the aliases it lists, in order."""
    named: dict[str, list[Any]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get(field), str):
            aliases = entry.get("aliases")
            named[entry[field]] = aliases if isinstance(aliases, list) else []
    return named
