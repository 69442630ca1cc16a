"""MicroBatcher: grouping in time and by key, early flush, withdrawal, detachment, error fan-out.

The window's sleep is a ``ManualSleep``: each call returns a future the test resolves
(``elapse``), so no test waits for real time; ``settle`` only lets ready tasks run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from crucible.scheduling.batcher import MicroBatcher, Submission

WINDOW = 0.02


class ManualSleep:
    """An injected ``sleep``: the window ends when the test says so."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self, delay: float) -> Awaitable[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls.append((delay, future))
        return future

    @property
    def pending(self) -> int:
        return sum(not future.done() for _, future in self.calls)

    def elapse(self) -> None:
        """End every window open now."""
        for _, future in self.calls:
            if not future.done():
                future.set_result(None)


class Flush:
    """A flush that records its batches and answers each item with ``item!``, then ``item?``,
    optionally holding between the two until ``release``."""

    def __init__(self, hold: bool = False, error: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.submissions: list[list[Submission[str, str]]] = []
        self.gate: asyncio.Event | None = asyncio.Event() if hold else None
        self.error = error
        self.cancelled = False
        self.task: asyncio.Task[object] | None = None  # the last flush's task

    async def __call__(self, submissions: list[Submission[str, str]]) -> None:
        self.task = asyncio.current_task()
        self.batches.append([submission.item for submission in submissions])
        self.submissions.append(submissions)
        if self.error is not None:
            raise self.error
        for submission in submissions:
            submission.send(f"{submission.item}!")
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        for submission in submissions:
            submission.send(f"{submission.item}?")

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()


async def settle() -> None:
    """Let every ready task run (zero-delay yields only; no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


def make(
    flush: Flush,
    sleep: ManualSleep,
    *,
    max_size: int = 8,
    key: Callable[[str], object] | None = None,
) -> MicroBatcher[str, str]:
    if key is None:
        return MicroBatcher(flush, window_s=WINDOW, max_size=max_size, sleep=sleep)
    return MicroBatcher(flush, window_s=WINDOW, max_size=max_size, key=key, sleep=sleep)


def submit(batcher: MicroBatcher[str, str], item: str) -> asyncio.Task[list[str]]:
    async def read() -> list[str]:
        return [result async for result in batcher.stream(item)]

    return asyncio.get_running_loop().create_task(read())


async def test_items_within_the_window_share_one_flush() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep)
    a, b = submit(batcher, "a"), submit(batcher, "b")
    await settle()
    c = submit(batcher, "c")
    await settle()
    assert flush.batches == []  # the window is still open
    assert [delay for delay, _ in sleep.calls] == [WINDOW]  # one window for the three
    sleep.elapse()
    assert [await t for t in (a, b, c)] == [["a!", "a?"], ["b!", "b?"], ["c!", "c?"]]
    assert flush.batches == [["a", "b", "c"]]


async def test_each_submission_knows_how_long_it_waited_for_its_flush() -> None:
    flush, sleep = Flush(), ManualSleep()
    now = [10.0]
    batcher = MicroBatcher(flush, window_s=WINDOW, max_size=8, sleep=sleep, clock=lambda: now[0])
    a = submit(batcher, "a")
    await settle()
    now[0] = 10.015
    b = submit(batcher, "b")
    await settle()
    now[0] = 10.02
    sleep.elapse()
    await asyncio.gather(a, b)
    (submissions,) = flush.submissions
    assert [round(submission.waited_s, 6) for submission in submissions] == [0.02, 0.005]


async def test_reaching_max_size_flushes_at_once() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep, max_size=2)
    a, b, c = submit(batcher, "a"), submit(batcher, "b"), submit(batcher, "c")
    await settle()
    # a and b went without waiting for the window; c opened a new one and waits.
    assert flush.batches == [["a", "b"]]
    assert [await a, await b] == [["a!", "a?"], ["b!", "b?"]]
    assert not c.done()
    assert sleep.pending == 1
    sleep.elapse()
    assert await c == ["c!", "c?"]
    assert flush.batches == [["a", "b"], ["c"]]


async def test_a_single_item_still_waits_for_the_window() -> None:
    flush, sleep = Flush(), ManualSleep()
    a = submit(make(flush, sleep), "a")
    await settle()
    assert flush.batches == [] and not a.done()
    sleep.elapse()
    assert await a == ["a!", "a?"]
    assert flush.batches == [["a"]]


async def test_different_keys_never_share_a_batch() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep, key=len)
    tasks = [submit(batcher, item) for item in ("a", "bb", "c", "dd")]
    await settle()
    assert sleep.pending == 2  # one window per key
    sleep.elapse()
    await asyncio.gather(*tasks)
    assert sorted(flush.batches) == [["a", "c"], ["bb", "dd"]]


async def test_cancelled_before_the_flush_the_item_is_never_sent() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep)
    a, b = submit(batcher, "a"), submit(batcher, "b")
    await settle()
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    sleep.elapse()
    assert await b == ["b!", "b?"]
    assert flush.batches == [["b"]]


async def test_a_batch_everyone_left_before_the_flush_is_dropped() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep)
    stream = batcher.stream("a")
    pending = asyncio.ensure_future(anext(stream))
    await settle()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await settle()
    assert sleep.pending == 0  # the window was closed with the batch
    assert flush.batches == []
    # The next item opens a fresh window of its own.
    b = submit(batcher, "b")
    await settle()
    sleep.elapse()
    assert await b == ["b!", "b?"]
    assert flush.batches == [["b"]]


async def test_cancelled_after_the_flush_only_that_submitter_detaches() -> None:
    flush, sleep = Flush(hold=True), ManualSleep()
    batcher = make(flush, sleep)
    a, b = submit(batcher, "a"), submit(batcher, "b")
    await settle()
    sleep.elapse()
    await settle()
    assert flush.batches == [["a", "b"]]
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    a_sub, b_sub = flush.submissions[0]
    assert not a_sub.active and b_sub.active
    flush.release()
    assert await b == ["b!", "b?"]
    assert not flush.cancelled


async def test_when_every_submitter_detaches_the_flush_is_cancelled() -> None:
    flush, sleep = Flush(hold=True), ManualSleep()
    batcher = make(flush, sleep)
    streams = [batcher.stream("a"), batcher.stream("b")]
    firsts = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await settle()
    sleep.elapse()
    assert await asyncio.gather(*firsts) == ["a!", "b!"]
    await streams[0].aclose()
    await settle()
    assert not flush.cancelled  # b still reads
    await streams[1].aclose()
    await settle()
    assert flush.cancelled


async def test_a_submitter_whose_results_ended_does_not_keep_the_flush_alive() -> None:
    stopped = asyncio.Event()

    async def finish_a_first(submissions: list[Submission[str, str]]) -> None:
        submissions[0].send("a!")
        submissions[0].finish()
        try:
            await asyncio.Event().wait()  # b's results would come later
        finally:
            stopped.set()

    sleep = ManualSleep()
    batcher: MicroBatcher[str, str] = MicroBatcher(
        finish_a_first, window_s=WINDOW, max_size=2, sleep=sleep
    )
    a = submit(batcher, "a")
    b_stream = batcher.stream("b")
    b_first = asyncio.ensure_future(anext(b_stream))
    assert await a == ["a!"]
    await settle()
    assert not b_first.done()
    # b leaves: a ended normally, b detached, so nobody is left and the flush stops.
    b_first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b_first
    await settle()
    assert stopped.is_set()


async def test_a_flush_error_reaches_every_submitter_of_the_batch() -> None:
    error = RuntimeError("upstream down")
    flush, sleep = Flush(error=error), ManualSleep()
    batcher = make(flush, sleep)
    tasks = [submit(batcher, item) for item in "abc"]
    await settle()
    sleep.elapse()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results == [error, error, error]


async def test_results_sent_before_an_error_arrive_first() -> None:
    async def partial(submissions: list[Submission[str, str]]) -> None:
        submissions[0].send("a!")
        raise ValueError("broken stream")

    sleep = ManualSleep()
    batcher: MicroBatcher[str, str] = MicroBatcher(
        partial, window_s=WINDOW, max_size=1, sleep=sleep
    )
    seen: list[str] = []
    with pytest.raises(ValueError, match="broken stream"):
        async for result in batcher.stream("a"):
            seen.append(result)
    assert seen == ["a!"]
    assert sleep.calls == []  # max_size 1: no window at all


async def test_a_flush_cancelled_from_outside_cancels_its_submitters() -> None:
    flush, sleep = Flush(hold=True), ManualSleep()
    batcher = make(flush, sleep)
    a = submit(batcher, "a")
    await settle()
    sleep.elapse()
    await settle()
    assert flush.task is not None
    flush.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a


async def test_back_to_back_batches() -> None:
    flush, sleep = Flush(), ManualSleep()
    batcher = make(flush, sleep)
    first = [submit(batcher, item) for item in "ab"]
    await settle()
    sleep.elapse()
    # Submitted while the first batch is being flushed: a new window, a new batch.
    second = [submit(batcher, item) for item in "cd"]
    await settle()
    assert flush.batches == [["a", "b"]]
    assert sleep.pending == 1
    sleep.elapse()
    await asyncio.gather(*first, *second)
    assert flush.batches == [["a", "b"], ["c", "d"]]
    assert len(sleep.calls) == 2


def test_rejects_a_batch_size_below_one() -> None:
    async def flush(submissions: list[Submission[str, str]]) -> None:
        pass

    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(flush, window_s=WINDOW, max_size=0)
