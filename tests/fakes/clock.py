"""FakeTime: a monotonic clock and a sleep that move only when a test moves them.

Pass ``time.clock`` and ``time.sleep`` wherever code takes an injected clock and sleep. Nothing
sleeps for real: :meth:`FakeTime.advance` moves the clock and wakes the sleepers that are due,
in order; :meth:`FakeTime.run` drives a coroutine to completion, jumping the clock to the next
sleeper whenever every task is blocked on the fake clock (like trio's autojump clock). A task
blocked on something else (an Event the test never sets) makes ``run`` fail fast instead of
hanging.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# Event-loop turns that let every ready task run until it blocks again; the pool's longest chain
# of wake-ups (timer -> wait -> close -> generator finally) is far shorter.
SETTLE_ROUNDS = 100


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), waiter))
        await waiter

    async def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    def next_wake(self) -> float | None:
        """When the earliest pending sleep ends; None if nothing sleeps."""
        return self._next_wake()

    def pending_sleepers(self) -> int:
        return sum(1 for _, _, waiter in self._sleepers if not waiter.done())

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, waking each sleeper at its own time."""
        target = self.now + seconds
        await self.settle()
        while (wake := self._next_wake()) is not None and wake <= target:
            self._jump(wake)
            await self.settle()
        self.now = target
        await self.settle()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, jumping the clock whenever everything waits on a sleep."""
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                await self.settle()
                if task.done():
                    return task.result()
                wake = self._next_wake()
                if wake is None:
                    raise AssertionError("blocked on something other than the fake clock")
                self._jump(wake)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))

    def _next_wake(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleeps (timers the code dropped)
        return self._sleepers[0][0] if self._sleepers else None

    def _jump(self, when: float) -> None:
        self.now = max(self.now, when)
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
