"""BackgroundTasks: fire-and-forget work that is still owned.

A bare ``asyncio.create_task`` can be garbage-collected mid-flight and its exception is lost;
this keeps a strong reference until the task ends and logs any failure. It is made for one
event loop, the one its owner started on, and runs every task there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` on the loop (call from that loop's thread)."""
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def __len__(self) -> int:
        """Tasks running (for the memory supervisor's count of live work)."""
        return len(self._tasks)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background task %s failed: %r", task.get_name(), exc)

    async def aclose(self) -> None:
        """Let running tasks finish (they are short: closing connections)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
