"""The endurance run's workload: a compressed day of editing, driven through one LSP session.

A :class:`Plan` says how much: ``didChange`` notifications, inline completion requests,
documents opened over the day (at most ``max_open`` at once, the oldest closed first), a few
large files among them, and one provider fault every ``fault_every`` requests. :class:`Day` plays
it as fast as the server takes it: notifications are sent without waiting (they have no answer),
requests are not awaited either, but at most ``max_inflight`` may be unanswered at once, which
also keeps the pipe from growing without bound (the server reads its input in order, so an
answer means every notification sent before it was read).

What a step is, per open document (round robin):

- **burst**: maybe a jump to the start of another line, then 4-30 keys of a line of real code
  (:mod:`benchmarks._snippets`), one ``didChange`` each, with runs of 1-4 backspaces now and
  then, maybe Enter with indentation; then an automatic inline completion at the cursor (a miss:
  the text is new);
- **type-through**: when the document's last answer had a suggestion and nothing changed since,
  the user types 1-6 of its characters, a request after each (the server's type-through);
- **repeat**: the same request again with nothing changed, after a suggestion (a cache hit).

Half the bursts end in a pause: that document's user reads the answer before typing on in it
(meanwhile the other documents' steps go on, so the run stays pipelined); the other half are
typed over, and their requests are superseded by the next keys, as in an editor.

Which step runs is steered by the budgets: when requests fall behind ``didChange`` (as a share
of their targets) the request-heavy steps are preferred, so both targets are met together.

The client keeps no copy of the text, only each document's cursor (line and UTF-16 column), the
number of lines, and the widths of the characters typed on the cursor's line since the last jump
or Enter; it deletes only those, so every range it sends is valid without ever scanning a 1 MB
document on the client's side.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from lsprotocol import types
from tests.fakes.provider import FakeProvider, Fault

from benchmarks._lsp_client import CrucibleSession, end_position
from benchmarks._snippets import SNIPPETS, Snippet

# Provider faults, in rotation: errors, a hang past the completion deadline, a slow answer, a
# stream cut after its first chunk, a 503 asking for a short back-off.
FAULTS = (
    Fault(status=500),
    Fault(hang=True),
    Fault(latency_ms=800),
    Fault(truncate_after=1),
    Fault(status=503, retry_after=0.2),
)
_MOST_UNASKED = 500  # changes sent with no request before the client waits for the server
_CODE_LINES = tuple(
    line.strip() for snippet in SNIPPETS for line in snippet.text.splitlines() if line.strip()
)


@dataclass(frozen=True)
class Plan:
    """How much editing the day holds; :meth:`scaled` multiplies every count."""

    changes: int = 200_000  # didChange notifications
    requests: int = 20_000  # inline completion requests
    documents: int = 500  # documents opened (and closed) over the day
    max_open: int = 40
    large_files: int = 3  # of the documents, this many are ~large_bytes
    large_bytes: int = 1_000_000
    fault_every: int = 100  # one provider fault per this many requests
    max_inflight: int = 16  # unanswered requests allowed at once

    def scaled(self, factor: float) -> Plan:
        def times(count: int, least: int) -> int:
            return max(least, round(count * factor))

        return replace(
            self,
            changes=times(self.changes, 100),
            requests=times(self.requests, 10),
            documents=times(self.documents, 4),
            max_open=min(self.max_open, times(self.documents, 4)),
            large_files=min(self.large_files, max(1, round(self.large_files * factor))),
        )

    @property
    def events(self) -> int:
        """Everything the client sends: changes, requests, opens and closes."""
        return self.changes + self.requests + 2 * self.documents


QUICK = Plan(changes=3000, requests=300, documents=24, max_open=8, large_files=1)


@dataclass
class Tally:
    """What has been sent and answered so far."""

    changes: int = 0
    requests: int = 0
    opened: int = 0
    closed: int = 0
    answered: int = 0
    errors: int = 0  # requests answered with an LSP error
    suggestions: int = 0  # answers carrying at least one suggestion
    faults: int = 0  # faults injected into the provider
    steps: dict[str, int] = field(default_factory=lambda: {"burst": 0, "type": 0, "repeat": 0})

    @property
    def events(self) -> int:
        return self.changes + self.requests + self.opened + self.closed

    @property
    def unanswered(self) -> int:
        return self.requests - self.answered - self.errors


@dataclass
class _Document:
    uri: str
    version: int
    lines: int
    line: int  # cursor
    column: int  # cursor, UTF-16 code units
    typed: list[int] = field(default_factory=list)  # widths of the keys typed on this line
    asked: tuple[Future[Any], int] | None = None  # the last request and the version it saw
    reading: bool = False  # the user waits for the last request's answer before going on

    @property
    def cursor(self) -> types.Position:
        return types.Position(line=self.line, character=self.column)


def document_text(snippet: Snippet, number: int, size: int) -> str:
    """A document of about ``size`` characters: a header naming it, then the snippet repeated."""
    head = f"{snippet.comment} endurance document {number}\n"
    body = snippet.text * max(1, (size - len(head)) // len(snippet.text) + 1)
    return head + body[: max(0, size - len(head))]


def _width(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


class Day:
    """Plays a :class:`Plan` into a session; see the module docstring. ``progress`` is called
    after every step with the tally (the sampler reads it; checkpoints pause the day there)."""

    def __init__(
        self, session: CrucibleSession, fake: FakeProvider, plan: Plan, *, seed: int = 7
    ) -> None:
        self.session, self.fake, self.plan = session, fake, plan
        self.tally = Tally()
        self._rng = random.Random(seed)
        self._open: deque[_Document] = deque()
        self._inflight: deque[Future[Any]] = deque()
        self._turn = 0
        self._unasked = 0  # changes sent since the last request
        # The opens are spread evenly over the changes; large files at evenly spaced opens.
        self._first_open = max(1, plan.max_open // 2)
        self._rotations = max(0, plan.documents - self._first_open)
        spacing = plan.documents / (plan.large_files + 1)
        self._large = {round(spacing * (i + 1)) for i in range(plan.large_files)}

    # -- the day -----------------------------------------------------------------------------

    async def run(self, pause: Callable[[Tally], Any] | None = None) -> Tally:
        """Play the whole plan; ``pause(tally)`` (awaited if it returns an awaitable) runs
        after each step, so a caller can sample or take a checkpoint between steps."""
        for _ in range(self._first_open):
            self._open_next()
        while self.tally.changes < self.plan.changes or self.tally.requests < self.plan.requests:
            self._rotate()
            self._step(await self._next_document())
            await self._throttle()
            if pause is not None:
                waited = pause(self.tally)
                if asyncio.iscoroutine(waited):
                    await waited
        while self._open:
            self._close(self._open.popleft())
        return self.tally

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a plain bound
        """Wait until every request sent so far is answered (or ``timeout`` passes)."""
        pending = [asyncio.wrap_future(f) for f in self._inflight if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        self._inflight = deque(f for f in self._inflight if not f.done())

    async def _throttle(self) -> None:
        if self._unasked >= _MOST_UNASKED:
            # Changes with no request among them: a status round trip is their backpressure.
            await self.session.status(timeout=60)
            self._unasked = 0
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()
        while len(self._inflight) >= self.plan.max_inflight:
            oldest = self._inflight.popleft()
            if not oldest.done():
                await asyncio.wait([asyncio.wrap_future(oldest)], timeout=30)

    # -- documents ---------------------------------------------------------------------------

    def _rotate(self) -> None:
        # The k-th of the later opens is due once k-1 rotations' share of the changes is sent,
        # so the last one comes a rotation before the end and gets edited too.
        share = self.tally.changes * self._rotations // max(1, self.plan.changes)
        due = self._first_open + 1 + share
        if self.tally.opened >= min(due, self.plan.documents):
            return
        if len(self._open) >= self.plan.max_open:
            self._close(self._open.popleft())
        self._open_next()

    def _open_next(self) -> None:
        number = self.tally.opened
        snippet = SNIPPETS[number % len(SNIPPETS)]
        size = self.plan.large_bytes if number in self._large else self._rng.randint(2000, 40_000)
        text = document_text(snippet, number, size)
        uri = f"file:///endurance/doc{number}.{snippet.extension}"
        self.session.open(uri, snippet.language_id, text)
        end = end_position(text)
        self._open.append(_Document(uri, 1, end.line + 1, end.line, end.character))
        self.tally.opened += 1

    def _close(self, document: _Document) -> None:
        self.session.close(document.uri)
        self.tally.closed += 1

    async def _next_document(self) -> _Document:
        """The next open document whose user is not waiting for an answer (round robin); if
        every one is waiting, the next one once its answer is in."""
        for _ in range(len(self._open)):
            self._turn = (self._turn + 1) % len(self._open)
            document = self._open[self._turn]
            if not document.reading or document.asked is None or document.asked[0].done():
                document.reading = False
                return document
        document = self._open[self._turn]
        if document.asked is not None:
            await asyncio.wait([asyncio.wrap_future(document.asked[0])], timeout=30)
        document.reading = False
        return document

    # -- steps -------------------------------------------------------------------------------

    def _step(self, document: _Document) -> None:
        plan, tally = self.plan, self.tally
        changes_left = tally.changes < plan.changes
        behind = tally.requests / plan.requests < tally.changes / plan.changes
        ahead = tally.requests / plan.requests > tally.changes / plan.changes + 0.001
        suggestion = self._suggestion(document)
        if tally.requests >= plan.requests or (ahead and changes_left):
            self._burst(document, ask=False)
        elif suggestion and changes_left and self._rng.random() < (0.7 if behind else 0.15):
            self._type_through(document, suggestion)
        elif (suggestion or not changes_left) and self._rng.random() < (0.5 if behind else 0.05):
            self._repeat(document)  # dismissed, then asked again: a cache hit
        else:
            self._burst(document, ask=True)

    def _burst(self, document: _Document, *, ask: bool) -> None:
        self.tally.steps["burst"] += 1
        if self._rng.random() < 0.2:  # jump: the start of another line
            document.line, document.column = self._rng.randrange(document.lines), 0
            document.typed.clear()
        code = self._rng.choice(_CODE_LINES)
        start = self._rng.randrange(max(1, len(code) - 4))
        for char in code[start : start + self._rng.randint(4, 30)]:
            self._key(document, char)
            if document.typed and self._rng.random() < 0.08:
                for _ in range(min(len(document.typed), self._rng.randint(1, 4))):
                    self._backspace(document)
        if self._rng.random() < 0.3:
            self._enter(document)
        if ask:
            self._ask(document)
            # Half the bursts end in a pause: the user reads the answer before going on here.
            document.reading = self._rng.random() < 0.5

    def _type_through(self, document: _Document, suggestion: str) -> None:
        self.tally.steps["type"] += 1
        for char in suggestion[: self._rng.randint(1, 6)]:
            self._key(document, char)
            self._ask(document)

    def _repeat(self, document: _Document) -> None:
        self.tally.steps["repeat"] += 1
        self._ask(document)

    def _suggestion(self, document: _Document) -> str:
        """What is left to type of the document's last suggestion, if it still applies."""
        if document.asked is None:
            return ""
        future, version = document.asked
        if version != document.version or not future.done() or future.exception() is not None:
            return ""
        items = getattr(future.result(), "items", None) or []
        if not items:
            return ""
        item = items[0]
        text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
        if item.range is not None:
            if item.range.start.line != document.line:
                return ""
            # The item replaces from its range's start: skip what is already typed before the
            # cursor (counted in UTF-16 units, as the range is).
            skip, index = document.column - item.range.start.character, 0
            while skip > 0 and index < len(text):
                skip -= _width(text[index])
                index += 1
            text = text[index:]
        return text.split("\n", 1)[0]

    # -- keys and requests -------------------------------------------------------------------

    def _change(self, document: _Document, start: types.Position, text: str) -> None:
        document.version += 1
        self.session.replace(document.uri, document.version, start, document.cursor, text)
        self.tally.changes += 1
        self._unasked += 1

    def _key(self, document: _Document, char: str) -> None:
        at = document.cursor
        document.version += 1
        self.session.insert(document.uri, document.version, at, char)
        self.tally.changes += 1
        self._unasked += 1
        document.column += _width(char)
        document.typed.append(_width(char))

    def _backspace(self, document: _Document) -> None:
        width = document.typed.pop()
        start = types.Position(line=document.line, character=document.column - width)
        self._change(document, start, "")
        document.column -= width

    def _enter(self, document: _Document) -> None:
        indent = " " * self._rng.choice((0, 4, 8))
        document.version += 1
        self.session.insert(document.uri, document.version, document.cursor, "\n" + indent)
        self.tally.changes += 1
        self._unasked += 1
        document.line, document.column, document.lines = (
            document.line + 1,
            len(indent),
            document.lines + 1,
        )
        document.typed.clear()

    def _ask(self, document: _Document) -> None:
        tally = self.tally
        if tally.requests % self.plan.fault_every == self.plan.fault_every - 1:
            self.fake.inject(FAULTS[tally.faults % len(FAULTS)], times=1)
            tally.faults += 1
        future = self.session.inline_completion(document.uri, document.cursor)
        future.add_done_callback(self._answered)
        document.asked = (future, document.version)
        self._inflight.append(future)
        tally.requests += 1
        self._unasked = 0

    def _answered(self, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.tally.errors += 1
            return
        self.tally.answered += 1
        if getattr(future.result(), "items", None):
            self.tally.suggestions += 1
