"""Plan: what one completion asks which provider, and the cache key of the answer.

Pure: the same settings, providers, privacy rules and window always give the same plan, which
is what lets the key stand for the answer (single-flight, the cache, and prefetch all use it).

The prompt is made safe here, before the key is computed, so the key is a function of exactly
what is sent: other documents the privacy rules exclude, or that hold a private key, are left
out; paths are relative to the workspace (``PrivacyRules.prompt_path``); secrets in the window
and in the other documents are replaced (``context/redaction.py``). A window that holds a
private key, or whose cursor is inside a secret, gets no plan at all (``None``: no request).
The window itself stays as the document has it: post-processing and the answer's range are
computed on the real text, never on the redacted prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crucible.cache.keys import completion_key
from crucible.completion.stopping import wants_multiline
from crucible.config.settings import CompletionSettings
from crucible.context.neighbours import OpenFile, select_neighbours
from crucible.context.privacy import PrivacyRules
from crucible.context.redaction import contains_private_key, redact, redact_window
from crucible.context.snapshot import ContextFile, DocumentSnapshot
from crucible.context.window import ContextWindow
from crucible.providers.base import FimRequest
from crucible.resilience.pool import ProviderPool


@dataclass(frozen=True, slots=True)
class Plan:
    """One provider call, decided: who is asked what, and the key of the answer."""

    provider: ProviderPool  # the completion providers, failover included
    fim: FimRequest  # what is sent: redacted, relative paths
    window: ContextWindow  # the document's own text around the cursor
    multiline: bool
    max_lines: int
    key: str
    redactions: int = 0  # secrets replaced in ``fim``


@dataclass(frozen=True, slots=True)
class PromptPrivacy:
    """What the plan needs to keep a prompt safe."""

    rules: PrivacyRules
    redact: bool = True


def plan_completion(
    settings: CompletionSettings,
    provider: ProviderPool,
    identity: Sequence[Any],
    snapshot: DocumentSnapshot,
    window: ContextWindow,
    neighbours: Sequence[OpenFile],
    privacy: PromptPrivacy,
) -> Plan | None:
    """The plan for ``window`` of ``snapshot``; ``identity`` describes the providers (every
    setting of theirs that changes an answer) for the key. ``None``: nothing may be sent."""
    if contains_private_key(window.prefix) or contains_private_key(window.suffix):
        return None
    prefix, suffix, redactions = window.prefix, window.suffix, 0
    if privacy.redact:
        redacted = redact_window(window.prefix, window.suffix)
        if redacted is None:
            return None
        prefix, suffix, redactions = redacted.prefix, redacted.suffix, redacted.count
    rules = privacy.rules
    extra: list[ContextFile] = []
    for other in select_neighbours(
        snapshot,
        neighbours,
        max_files=settings.neighbour_files,
        max_chars=settings.neighbour_chars,
        excluded=rules.excludes,
    ):
        if contains_private_key(other.text):
            continue  # a key block cut by the head's end cannot be delimited: leave it out
        text = other.text
        if privacy.redact:
            done = redact(text)
            text, redactions = done.text, redactions + done.count
        extra.append(ContextFile(rules.prompt_path(other.path), text))
    fim = FimRequest(
        prefix=prefix,
        suffix=suffix,
        language_id=snapshot.language_id,
        path=rules.prompt_path(snapshot.path),
        extra=tuple(extra),
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
    )
    multiline = wants_multiline(window, settings.multiline)
    key = completion_key(identity, fim, multiline=multiline, max_lines=settings.max_lines)
    return Plan(provider, fim, window, multiline, settings.max_lines, key, redactions)
