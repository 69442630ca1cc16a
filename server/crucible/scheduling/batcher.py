"""MicroBatcher: distinct items that arrive close together are handed to one flush call.

Single responsibility: group items into batches in time and fan each batch's results back out
to its submitters; what a flush does with a batch (one HTTP call with a prompt list, say) is
the caller's. Pure asyncio; the window's sleep is injected so that tests never sleep.

- The first item for a key opens that key's window; items with the same key arriving within
  ``window_s`` join it. The batch is flushed when the window ends, or at once when it holds
  ``max_size`` items. The next item after a flush opens a new window. Items of different keys
  never share a batch.
- Each submitter reads its own results, streamed, from ``MicroBatcher.stream(item)``; the flush
  gets one ``Submission`` per item, in submission order, and ``send``s results into it, then
  ``finish``es it (or lets the flush return, which finishes every submission still open).
- A submitter that leaves (``aclose``, cancellation) before the flush withdraws its item: it is
  never flushed, and a batch left empty is dropped. After the flush it only detaches: its
  results are dropped, the others carry on. When every submitter of a flushed batch has
  detached before its results ended, the flush task is cancelled, which is what closes an
  upstream stream nobody reads any more.

Errors: an exception raised by the flush reaches every submitter of that batch whose results
had not ended (the same exception object, re-raised in each). A flush cancelled from outside
raises ``CancelledError`` in its remaining submitters, as awaiting a cancelled task would.
``CancelledError`` of a submitter propagates; it is never swallowed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _End:
    """The last entry of a submission's queue: the results ended, normally or with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


_FINISHED = _End(None)


class Submission(Generic[T, R]):
    """One submitted item as the flush sees it: the item and its submitter's result channel.
    (Not a ``resilience/`` limiter slot: nothing here is held or counted.)

    ``send``/``finish``/``fail`` never block (the queue is unbounded: a slow reader holds at
    most one answer's results) and do nothing once the submission is no longer ``active``.
    """

    __slots__ = ("_detached", "_ended", "_queue", "item", "submitted", "waited_s")

    def __init__(self, item: T, submitted: float) -> None:
        self.item = item
        self.submitted = submitted  # the batcher's clock when the item joined its batch
        self.waited_s = 0.0  # from submission to the flush starting: this item's queue time
        self._queue: asyncio.Queue[R | _End] = asyncio.Queue()
        self._ended = False  # finish() or fail() was called
        self._detached = False  # the submitter left

    @property
    def active(self) -> bool:
        """Whether a submitter still waits for more results."""
        return not (self._ended or self._detached)

    def send(self, result: R) -> None:
        if self.active:
            self._queue.put_nowait(result)

    def finish(self) -> None:
        """No more results: the submitter's stream ends after those already sent."""
        self._end(_FINISHED)

    def fail(self, error: BaseException) -> None:
        """The submitter's stream raises ``error`` after the results already sent."""
        self._end(_End(error))

    def _end(self, entry: _End) -> None:
        if self.active:
            self._ended = True
            self._queue.put_nowait(entry)

    def _detach(self) -> None:
        self._detached = True

    async def _next(self) -> R | _End:
        return await self._queue.get()


class _FlushGroup(Generic[T, R]):
    """The submissions of one key that one flush carries: first its open window, then the
    flush task."""

    __slots__ = ("key", "submissions", "task", "timer")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.submissions: list[Submission[T, R]] = []
        self.timer: asyncio.Task[None] | None = None  # the open window
        self.task: asyncio.Task[None] | None = None  # the flush; set once, when it starts


class MicroBatcher(Generic[T, R]):
    """Groups items into batches by key and time; see the module docstring."""

    def __init__(
        self,
        flush: Callable[[list[Submission[T, R]]], Awaitable[None]],
        *,
        window_s: float,
        max_size: int,
        key: Callable[[T], Hashable] = lambda _: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if window_s < 0 or max_size < 1:
            raise ValueError("window_s must be >= 0 and max_size >= 1")
        self._flush = flush
        self._window_s = window_s
        self._max_size = max_size
        self._key = key
        self._sleep = sleep
        self._clock = clock
        self._open: dict[Hashable, _FlushGroup[T, R]] = {}  # batches still taking items, by key
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    async def stream(self, item: T) -> AsyncGenerator[R, None]:
        """The results the flush sends for ``item``, as they come.

        The item is submitted when the stream is first iterated, not when it is created.
        """
        batch, submission = self._join(item)
        try:
            while True:
                entry = await submission._next()
                if isinstance(entry, _End):
                    if entry.error is not None:
                        raise entry.error
                    return
                yield entry
        finally:
            self._leave(batch, submission)

    def _join(self, item: T) -> tuple[_FlushGroup[T, R], Submission[T, R]]:
        key = self._key(item)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _FlushGroup(key)
            batch.timer = self._spawn(self._close_window(batch), "batch window")
        submission: Submission[T, R] = Submission(item, self._clock())
        batch.submissions.append(submission)
        if len(batch.submissions) >= self._max_size:
            self._start(batch)
        return batch, submission

    def _leave(self, batch: _FlushGroup[T, R], submission: Submission[T, R]) -> None:
        if batch.task is None:
            # Not flushed yet: withdraw the item, so it is never sent.
            batch.submissions.remove(submission)
            if not batch.submissions:
                self._close(batch)
            return
        if not submission.active:
            return  # its results had ended: nothing upstream works for it any more
        submission._detach()
        if not any(s.active for s in batch.submissions):
            batch.task.cancel()  # nobody reads: stop the flush (and its upstream call)

    async def _close_window(self, batch: _FlushGroup[T, R]) -> None:
        await self._sleep(self._window_s)
        batch.timer = None  # ending by itself: _start must not cancel this very task
        self._start(batch)

    def _start(self, batch: _FlushGroup[T, R]) -> None:
        """Stop taking items into ``batch`` and flush it."""
        self._close(batch)
        now = self._clock()
        for submission in batch.submissions:
            submission.waited_s = now - submission.submitted
        batch.task = self._spawn(self._run(list(batch.submissions)), "batch flush")

    def _close(self, batch: _FlushGroup[T, R]) -> None:
        """Stop taking items into ``batch``: the next item of its key opens a new window."""
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]

    async def _run(self, submissions: list[Submission[T, R]]) -> None:
        try:
            await self._flush(submissions)
        except Exception as exc:
            # Delivered to the submitters, not re-raised: nobody awaits this task itself.
            for submission in submissions:
                submission.fail(exc)
        except BaseException:
            # Cancelled (or the interpreter is exiting): no more results will come. Slots
            # detached by _leave are inactive and unaffected.
            for submission in submissions:
                submission.fail(asyncio.CancelledError())
            raise
        else:
            for submission in submissions:
                submission.finish()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
