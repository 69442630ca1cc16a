"""Plan: what one completion asks which provider, and the cache key of the answer.

Pure: the same settings, providers and window always give the same plan, which is what lets
the key stand for the answer (single-flight, the cache, and prefetch all use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crucible.cache.keys import completion_key
from crucible.completion.stopping import wants_multiline
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import select_neighbours
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import ContextWindow
from crucible.providers.base import FimRequest
from crucible.resilience.pool import ProviderPool


@dataclass(frozen=True, slots=True)
class Plan:
    """One provider call, decided: who is asked what, and the key of the answer."""

    provider: ProviderPool  # the completion providers, failover included
    fim: FimRequest
    window: ContextWindow
    multiline: bool
    max_lines: int
    key: str


def plan_completion(
    settings: CompletionSettings,
    provider: ProviderPool,
    identity: Sequence[Any],
    snapshot: DocumentSnapshot,
    window: ContextWindow,
    neighbours: Sequence[DocumentSnapshot],
) -> Plan:
    """The plan for ``window`` of ``snapshot``; ``identity`` describes the providers (every
    setting of theirs that changes an answer) for the key."""
    fim = FimRequest(
        prefix=window.prefix,
        suffix=window.suffix,
        language_id=snapshot.language_id,
        path=snapshot.path,
        extra=select_neighbours(
            snapshot,
            neighbours,
            max_files=settings.neighbour_files,
            max_chars=settings.neighbour_chars,
        ),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
    )
    multiline = wants_multiline(window, settings.multiline)
    key = completion_key(identity, fim, multiline=multiline, max_lines=settings.max_lines)
    return Plan(provider, fim, window, multiline, settings.max_lines, key)
