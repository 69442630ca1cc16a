"""The two "servers" a burst is typed into: Crucible over LSP, and the naive baseline.

Both take the same calls from the replay: open a document, then per keystroke insert one
character and ask for a suggestion at the new cursor *without waiting for the answer*, then close
the document. Each keystroke yields a :class:`Keystroke` whose ``answered`` future resolves when
its answer arrives, recording the arrival time and the suggestion texts.

A suggestion is recorded as the whole text it proposes (the document before the suggestion's
range, then the suggestion), because whether it fits is judged against the text the user ends up
with, not the text at the time of the request.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from lsprotocol import types

from benchmarks._lsp_client import CrucibleSession, end_position, offset_of


@dataclass(frozen=True)
class Answer:
    arrived: float  # time.perf_counter()
    proposals: tuple[str, ...]  # whole texts the suggestions propose (see the module docstring)
    error: str | None = None


@dataclass
class Keystroke:
    at: float  # time.perf_counter() when the edit was sent
    answered: asyncio.Future[Answer] = field(repr=False)


class Typist(Protocol):
    name: str

    def open(self, uri: str, language_id: str, text: str) -> None: ...

    def type(self, uri: str, version: int, before: str, char: str) -> Keystroke:
        """Insert ``char`` at the end of ``before`` (the document) and ask for a suggestion."""
        ...

    def close(self, uri: str) -> None: ...

    async def abandon(self) -> None:
        """Give up on every request still unanswered (the replay's deadline passed)."""
        ...


class CrucibleTypist:
    """The real server: didChange + textDocument/inlineCompletion per keystroke."""

    name = "crucible"

    def __init__(self, session: CrucibleSession) -> None:
        self._session = session

    def open(self, uri: str, language_id: str, text: str) -> None:
        self._session.open(uri, language_id, text)

    def type(self, uri: str, version: int, before: str, char: str) -> Keystroke:
        self._session.check_alive()  # a crash is a broken run, not a keystroke without answer
        at = time.perf_counter()
        self._session.insert(uri, version, end_position(before), char)
        text = before + char
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        pending = self._session.inline_completion(uri, end_position(text))
        pending.add_done_callback(lambda done: _settle(answered, _lsp_answer(done, text)))
        return Keystroke(at, answered)

    def close(self, uri: str) -> None:
        self._session.close(uri)

    async def abandon(self) -> None:
        # An unanswered LSP request stays unanswered: that is the figure. Its late answer, if
        # any, lands on a future nobody reads any more.
        return None


def _lsp_answer(done: Future[Any], text: str) -> Answer:
    """The proposals in an inlineCompletion answer to a request made on ``text``."""
    arrived = time.perf_counter()  # first: this callback runs as the answer is read
    try:
        result = done.result()
    except Exception as exc:
        return Answer(arrived, (), error=type(exc).__name__)
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    proposals = []
    for item in items:
        insert = item.insert_text
        insert = insert if isinstance(insert, str) else insert.value
        start = len(text) if item.range is None else offset_of(text, item.range.start)
        proposals.append(text[:start] + insert)
    return Answer(arrived, tuple(proposals))


def _settle(answered: asyncio.Future[Answer], answer: Answer) -> None:
    # pygls resolves its futures on the loop's own thread, but nothing promises that: hop safely.
    answered.get_loop().call_soon_threadsafe(_set_once, answered, answer)


def _set_once(answered: asyncio.Future[Answer], answer: Answer) -> None:
    if not answered.done():
        answered.set_result(answer)


class NaiveTypist:
    """The "before" picture: every keystroke goes straight to the provider.

    No debounce, no coalescing, no cancellation: one streaming ``/api/generate`` per keystroke,
    all running at once and each read to its end, as a naive server forwarding each request
    would do. Its calls queue at the provider's slots like they would on a local server.
    """

    name = "naive"

    def __init__(self, client: httpx.AsyncClient, model: str, max_tokens: int) -> None:
        self._client = client
        self._model = model
        self._max_tokens = max_tokens
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self, uri: str, language_id: str, text: str) -> None:
        return None  # a naive server keeps no state: the whole text goes with every request

    def type(self, uri: str, version: int, before: str, char: str) -> Keystroke:
        at = time.perf_counter()
        text = before + char
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._ask(text, answered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Keystroke(at, answered)

    def close(self, uri: str) -> None:
        return None

    async def abandon(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _ask(self, text: str, answered: asyncio.Future[Answer]) -> None:
        body = {
            "model": self._model,
            "prompt": text,
            "suffix": "",
            "stream": True,
            "options": {"num_predict": self._max_tokens},
        }
        reply: list[str] = []
        try:
            async with self._client.stream("POST", "/api/generate", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line:
                        reply.append(json.loads(line).get("response", ""))
        except (httpx.HTTPError, ValueError) as exc:
            answered.set_result(Answer(time.perf_counter(), (), error=type(exc).__name__))
            return
        answered.set_result(Answer(time.perf_counter(), (text + "".join(reply),)))
