"""Clock: the pool's injected time — a monotonic clock, a sleep, and waiting against a deadline.

Every timer in the resilience package goes through one of these, so unit tests drive time with
a fake clock and a fake sleep and never sleep for real (``asyncio.timeout`` would read the
event loop's own clock and could not be faked).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Clock:
    now: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    async def wait(self, tasks: Sequence[asyncio.Future[Any]], until: float) -> None:
        """Return when one of ``tasks`` is done or the clock reaches ``until``.

        Returns at once if a task is already done or the time has passed. A real sleep may wake
        a hair early (the event loop rounds to its clock resolution), so callers re-read the
        clock instead of assuming the time came.
        """
        delay = until - self.now()
        if delay <= 0 or any(task.done() for task in tasks):
            return
        timer = asyncio.ensure_future(self.sleep(delay))
        try:
            await asyncio.wait({*tasks, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
