"""PulledStream: a provider's chunk stream read one chunk at a time in a task.

The pool races a stream against its timers (deadline, first-byte allowance, hedge time) and
against another stream (a hedge), so a chunk is fetched in a task (:meth:`PulledStream.pull`)
that the pool can wait on with others, then taken (:meth:`PulledStream.take`) once done. The
provider's generator is created inside that first task, so an error raised while a request is
built arrives like any other stream error. :meth:`PulledStream.aclose` cancels a pending pull
and closes the generator (which closes the HTTP response); it is safe to call twice.

Knows nothing of members, verdicts or time. Raises only what the provider raises
(``ProviderError``) and ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable

log = logging.getLogger(__name__)


class PulledStream:
    def __init__(self, name: str, open_stream: Callable[[], AsyncGenerator[str, None]]) -> None:
        self._name = name  # the provider's, for logs
        self._open = open_stream
        self._gen: AsyncGenerator[str, None] | None = None
        self._pending: asyncio.Task[str | None] | None = None
        self._closed = False

    def pull(self) -> asyncio.Task[str | None]:
        """The task fetching the next chunk (None: the stream ended); one at a time."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._next())
        return self._pending

    def ready(self) -> bool:
        return self._pending is not None and self._pending.done()

    def take(self) -> str | None:
        """The finished pull's chunk; raises what the provider raised."""
        task = self._pending
        if task is None or not task.done():
            raise RuntimeError("take() before the pull finished")
        self._pending = None
        return task.result()

    async def aclose(self) -> None:
        """Stop a pending pull and close the provider's generator."""
        if self._closed:
            return
        self._closed = True
        task, self._pending = self._pending, None
        if task is not None:
            task.cancel()  # the generator gets CancelledError at its await and unwinds
            await asyncio.wait((task,))
            if not task.cancelled():
                task.exception()  # retrieved: a late error of a dropped stream is not news
        if self._gen is not None:
            try:
                await self._gen.aclose()
            except Exception as exc:
                log.debug("provider %s: closing the stream: %r", self._name, exc)

    async def _next(self) -> str | None:
        if self._gen is None:
            self._gen = self._open()
        try:
            return await anext(self._gen)
        except StopAsyncIteration:
            return None
