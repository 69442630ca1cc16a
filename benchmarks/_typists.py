"""The three systems a burst is typed into: Crucible over LSP, and two clients without it.

- :class:`CrucibleTypist`: an editor talking LSP to the real server, asking on every keystroke;
- :class:`GoodClientTypist`: what a good editor plugin does talking straight to the provider:
  a fixed debounce after the last keystroke, then one request; every keystroke cancels the
  request before it (still waiting out its debounce, or in flight: its HTTP stream is closed);
- :class:`NaiveTypist`: one request per keystroke straight to the provider, no debounce, no
  cancellation: the worst case a provider can be given, not what a good client does.

All take the same calls from the replay: open a document, then per keystroke insert one
character and ask for a suggestion at the new cursor *without waiting for the answer*, then close
the document. Each keystroke yields a :class:`Keystroke` whose ``answered`` future resolves when
its answer arrives, recording the arrival time and the suggestion texts, or at once when the
client itself withdraws the request (``Answer.withdrawn``: the good client's cancel-previous).

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
    withdrawn: bool = False  # the client cancelled the request itself: nothing to show, no error


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


async def _generate(client: httpx.AsyncClient, model: str, max_tokens: int, text: str) -> Answer:
    """One streaming ``/api/generate`` for the text before the cursor, read to its end."""
    body = {
        "model": model,
        "prompt": text,
        "suffix": "",
        "stream": True,
        "options": {"num_predict": max_tokens},
    }
    reply: list[str] = []
    try:
        async with client.stream("POST", "/api/generate", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line:
                    reply.append(json.loads(line).get("response", ""))
    except (httpx.HTTPError, ValueError) as exc:
        return Answer(time.perf_counter(), (), error=type(exc).__name__)
    return Answer(time.perf_counter(), (text + "".join(reply),))


class NaiveTypist:
    """The worst case: every keystroke goes straight to the provider.

    No debounce, no coalescing, no cancellation: one streaming ``/api/generate`` per keystroke,
    all running at once and each read to its end, as a client (or a server forwarding each
    request) with neither would do. Its calls queue at the provider's slots like they would on a
    local server. No editor we know of behaves this way for automatic inline completion; the
    figure says what Crucible protects a provider from when the client in front of it asks on
    every keystroke, not what users of a good plugin would gain.
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
        answer = await _generate(self._client, self._model, self._max_tokens, text)
        _set_once(answered, answer)


class GoodClientTypist:
    """A good editor plugin talking straight to the provider, no Crucible: the fair baseline.

    Each keystroke cancels the request before it and starts a fixed ``debounce_s`` timer; when
    the timer runs out with no newer keystroke, one streaming ``/api/generate`` goes to the
    provider for the text at that moment. Cancelling a request that is still waiting out its
    debounce means it is never sent; cancelling one in flight closes its HTTP stream (how a
    client cancels over HTTP/1.1, and what frees a llama.cpp slot). A cancelled request's
    future resolves at once as withdrawn: the client shows nothing for it and expects nothing.
    So the only answer it ever shows is the newest request's, for the text on screen.

    This is the behaviour the editors and plugins we looked at approach (VS Code's inline
    completions cancel the previous request on every change and wait 50 ms; Neovim's built-in
    client and plugins debounce 15-400 ms), combined into one client that does both: see
    ``benchmarks/README.md`` for the sources.
    """

    name = "good-client"

    def __init__(
        self, client: httpx.AsyncClient, model: str, max_tokens: int, debounce_s: float
    ) -> None:
        self._client = client
        self._model = model
        self._max_tokens = max_tokens
        self._debounce_s = debounce_s
        self._pending: tuple[asyncio.Task[None], asyncio.Future[Answer]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self, uri: str, language_id: str, text: str) -> None:
        return None  # the plugin sends the text before the cursor with every request

    def type(self, uri: str, version: int, before: str, char: str) -> Keystroke:
        at = time.perf_counter()
        self._withdraw()
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._ask(before + char, answered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._pending = (task, answered)
        return Keystroke(at, answered)

    def close(self, uri: str) -> None:
        return None

    async def abandon(self) -> None:
        self._withdraw()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _withdraw(self) -> None:
        """Cancel the previous request, wherever it is (debounce or in flight)."""
        if self._pending is None:
            return
        task, answered = self._pending
        self._pending = None
        if not answered.done():
            task.cancel()
            answered.set_result(Answer(time.perf_counter(), (), withdrawn=True))

    async def _ask(self, text: str, answered: asyncio.Future[Answer]) -> None:
        await asyncio.sleep(self._debounce_s)
        answer = await _generate(self._client, self._model, self._max_tokens, text)
        _set_once(answered, answer)
