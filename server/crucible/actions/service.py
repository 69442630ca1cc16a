"""The code-action service: the cheap list, and the resolve that asks the model for an edit.

``list`` is ``catalog.list_actions`` plus the privacy rule (an excluded document gets no
action) and a count. ``resolve`` turns one listed, on the document as it is now, into an
``ActionResult``: edits, or a refusal the user reads. Its steps:

1. refuse at once, with no call: code actions off, no provider serving chat, an excluded
   document, a target over ``MAX_TARGET_CHARS``, a target holding a private key;
2. build the prompt (``prompt.py``; secrets redacted unless ``privacy.redact`` is off) and
   stream the answer from the chat pool under ``code_actions.timeout_ms``, the stream closed
   however the read ends (``aclosing``: done, cancelled, failed);
3. take the code out of the answer (``answer.py``): none is a refusal, no retry;
4. fit it to the target and check the edited document (``edits.py``, ``validation.py``);
   a failed check asks once more with the problem in the prompt, then refuses;
5. the minimal edits, pinned to the snapshot's version.

Errors, as the user sees them: every refusal is an ``ActionResult`` with a message, never an
exception. ``ProviderError`` (the pool's deadline, no provider available, a stream broken
mid-way) is a refusal counted in ``errors``; ``CancelledError`` ($/cancelRequest, the
progress's cancel button) is counted in ``cancelled`` and propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from crucible.actions.answer import extract_code
from crucible.actions.catalog import MAX_TARGET_CHARS, ActionOffer, ListingRequest, list_actions
from crucible.actions.edits import (
    TextEdit,
    fit_to_target,
    line_ending,
    lines_back,
    lines_forward,
    minimal_edits,
    widen_to_echo,
)
from crucible.actions.listed import MAX_TITLE, Intent, ListedAction
from crucible.actions.prompt import PromptInput, build_messages, retry_messages
from crucible.actions.validation import check_edit
from crucible.config.settings import CodeActionsSettings
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.redaction import contains_private_key, redact
from crucible.context.snapshot import DocumentSnapshot
from crucible.providers.base import ChatMessage, ChatRequest
from crucible.providers.errors import ProviderError
from crucible.resilience.pool import ProviderPool

logger = logging.getLogger(__name__)

_PLACEHOLDER = "<redacted"  # what redaction leaves (context/redaction.py)
MAX_CONTEXT_CHARS = 6000  # each side of the target, whatever context_lines says
# resolved: edits computed; stale: of those, dropped because the document changed under them
# while the model wrote (lsp/handlers/code_action.py); applied: command-path edits applied.
COUNTS = ("listed", "resolved", "applied", "refused", "cancelled", "errors", "stale")


@dataclass(frozen=True, slots=True)
class ActionJob:
    """One resolve: the listed, the document now, and the target's offsets in it."""

    listed: ListedAction
    snapshot: DocumentSnapshot
    start: int
    end: int
    template: str = ""  # a custom action's prompt


@dataclass(frozen=True, slots=True)
class ActionResult:
    edits: tuple[TextEdit, ...] = ()
    version: int = 0  # of the text the edits were computed for
    message: str = ""  # why there is no edit (for the user)

    @property
    def ok(self) -> bool:
        return bool(self.edits)


def refusal(message: str) -> ActionResult:
    return ActionResult(message=f"Crucible: {message}")


class CodeActionService:
    def __init__(self, settings: CodeActionsSettings, pool: ProviderPool | None) -> None:
        self.settings = settings
        self._pool = pool
        self._privacy: WorkspacePrivacy | None = None
        self._redact = True
        self._counts: Counter[str] = Counter()

    def reconfigure(
        self,
        settings: CodeActionsSettings,
        pool: ProviderPool | None,
        *,
        privacy: WorkspacePrivacy | None,
        redact: bool,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._privacy = privacy
        self._redact = redact

    # -- listing -----------------------------------------------------------------------------

    def excluded(self, path: str) -> bool:
        return self._privacy is not None and self._privacy.rules().excludes(path)

    def list(self, request: ListingRequest, path: str) -> tuple[ActionOffer, ...]:
        if not self.settings.enabled or self._pool is None or self.excluded(path):
            return ()  # no chat provider: nothing to offer that could work
        offers = list_actions(request, self.settings)
        self._counts["listed"] += len(offers)
        return offers

    def note(self, what: str) -> None:
        """Count an outcome seen by the LSP layer (``applied``: the client applied the edit
        of the command path, a resolved edit's fate being the client's and unseen; ``stale``:
        an edit dropped because the document changed under it; ``refused``: refused before
        the service was asked)."""
        self._counts[what] += 1

    def custom_template(self, listed: ListedAction) -> str | None:
        """The prompt of the custom action ``listed`` names, if it is still configured as it
        was listed (same index and title)."""
        custom = self.settings.custom
        index = listed.custom
        if 0 <= index < len(custom) and custom[index].title[:MAX_TITLE] == listed.title:
            return custom[listed.custom].prompt
        return None

    # -- resolve -----------------------------------------------------------------------------

    async def resolve(self, job: ActionJob) -> ActionResult:
        try:
            result = await self._resolve(job)
        except asyncio.CancelledError:
            self._counts["cancelled"] += 1
            raise
        self._counts["resolved" if result.ok else "refused"] += 1
        return result

    async def _resolve(self, job: ActionJob) -> ActionResult:
        early = self._precheck(job)
        if early is not None:
            return early
        assert self._pool is not None  # _precheck refused otherwise
        text = job.snapshot.text
        target = text[job.start : job.end]
        messages = build_messages(self._prompt_input(job, target))
        for attempt in (1, 2):
            try:
                answer = await self._ask(self._pool, messages, len(target))
            except ProviderError as exc:
                self._counts["errors"] += 1
                logger.info("code action: the provider failed: %s", exc)
                return refusal(f"no edit: the model's answer failed ({exc})")
            extracted = extract_code(answer)
            if extracted.code is None:
                return refusal(f"no edit: {extracted.reason}")
            start, end = widen_to_echo(text, job.start, job.end, extracted.code)
            old = text[start:end]
            replacement = fit_to_target(extracted.code, old, line_ending(text))
            if _PLACEHOLDER in replacement and _PLACEHOLDER not in old:
                return refusal("no edit: the code holds a secret the model only saw redacted")
            if replacement == old:
                return refusal("the model changed nothing")
            new_text = text[:start] + replacement + text[end:]
            lang = job.snapshot.language_id
            problem = await check_edit(lang, text, new_text, old, replacement)
            if problem is None:
                edits = minimal_edits(text, start, end, replacement)
                return ActionResult(edits, job.snapshot.version)
            logger.info("code action: attempt %d rejected: %s", attempt, problem)
            messages = retry_messages(messages, answer, problem)
        return refusal(f"no edit: the model's code was rejected twice ({problem})")

    def _precheck(self, job: ActionJob) -> ActionResult | None:
        if not self.settings.enabled:
            return refusal("code actions are off (code_actions.enabled)")
        if self._pool is None:
            return refusal('no provider serves chat (give one roles = ["chat"])')
        if self.excluded(job.snapshot.path):
            return refusal("this file is excluded from prompts ([privacy], .crucibleignore)")
        size = job.end - job.start
        if size > MAX_TARGET_CHARS:
            return refusal(f"the code is {size} characters; select at most {MAX_TARGET_CHARS}")
        if contains_private_key(job.snapshot.text[job.start : job.end]):
            return refusal("the code holds a private key; it is not sent to a model")
        return None

    def _prompt_input(self, job: ActionJob, target: str) -> PromptInput:
        text, lines = job.snapshot.text, self.settings.context_lines
        before = text[lines_back(text, job.start, lines) : job.start][-MAX_CONTEXT_CHARS:]
        after = text[job.end : lines_forward(text, job.end, lines)][:MAX_CONTEXT_CHARS]
        if contains_private_key(before) or contains_private_key(after):
            before = after = ""  # the target alone, rather than a key's neighbourhood
        if self._redact:
            target, before, after = (redact(t).text for t in (target, before, after))
        path = job.snapshot.path
        shown = self._privacy.rules().prompt_path(path) if self._privacy is not None else path
        listed = job.listed
        return PromptInput(
            intent=listed.intent,
            language_id=job.snapshot.language_id,
            path=shown,
            target=target,
            before=before,
            after=after,
            first_line=job.snapshot.text.count("\n", 0, job.start),
            problems=listed.problems,
            template=job.template if listed.intent is Intent.CUSTOM else "",
        )

    async def _ask(
        self, pool: ProviderPool, messages: tuple[ChatMessage, ...], target_chars: int
    ) -> str:
        """The whole answer; the stream is closed however this ends. The answer is bounded:
        past a few times the target's size, the model is rambling and the read stops."""
        limit = 4 * target_chars + 8000
        request = ChatRequest(
            messages=messages, max_tokens=min(4096, target_chars // 2 + 512), temperature=0.1
        )
        parts: list[str] = []
        size = 0
        stream = pool.stream_chat(request, timeout=self.settings.timeout_ms / 1000)
        async with contextlib.aclosing(stream):
            async for chunk in stream:
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    break
        return "".join(parts)

    def snapshot(self) -> dict[str, Any]:
        """``crucible/status``'s ``code_actions``: counts, and each chat provider's calls and
        latency (the chat pool's view: a provider serving completions too has a breaker and
        latencies per role)."""
        chat = []
        for member in self._pool.snapshot() if self._pool is not None else ():
            latency = member.latency_percentiles()
            chat.append({"name": member.name, "calls": member.calls, "latency_ms": latency})
        return {
            "enabled": self.settings.enabled,
            **{name: self._counts[name] for name in COUNTS},
            "chat_providers": chat,
        }
