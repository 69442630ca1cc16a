"""Generation slots: how many requests the fake provider generates for at a time.

A local llama.cpp or Ollama server runs N parallel slots (``--parallel N``,
``OLLAMA_NUM_PARALLEL``); a request arriving while every slot is busy waits in a FIFO queue, and
one whose client disconnects while it waits leaves the queue without ever being generated. That
queueing is what makes a keystroke storm expensive on a real local server, so the fake models it.

:class:`SlotGate` lives on the server's event loop (one per :class:`FakeProvider`). Its limit is
read afresh on every decision, so a test may change ``FakeProvider.slots`` between requests; the
provider then calls :meth:`SlotGate.grant` on the server's loop so that waiters a raised limit
lets through do not wait for the next release. It also counts the most requests it ever had
generating at once, with or without a limit, so tests can assert a client's concurrency.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class SlotGate:
    """At most ``limit()`` holders (None: no limit); waiters are admitted in arrival order."""

    def __init__(self, limit: Callable[[], int | None]) -> None:
        self._limit = limit
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.max_active = 0  # the most holders ever at once, since creation or reset_max()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def reset_max(self) -> None:
        """Forget the high-water mark (down to what is generating right now)."""
        self.max_active = self._active

    async def acquire(self, gone: asyncio.Event) -> bool:
        """Wait for a slot: True once it is held, False when ``gone`` was set first.

        ``gone`` is the exchange's client-disconnected event: a request whose client left while
        queued leaves the queue and never holds a slot. A True answer obliges a :meth:`release`.
        """
        self.grant()  # waiters that a raised limit lets through go before this newcomer
        if not self._waiters and self._has_room():
            self._take()
            return True
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(admitted)
        leaving = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait((admitted, leaving), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled (the server is stopping): never keep a slot or a queue place nobody uses.
            self._leave(admitted)
            raise
        finally:
            leaving.cancel()
        if gone.is_set():
            self._leave(admitted)
            return False
        return True

    def release(self) -> None:
        """Give a slot back; the longest-waiting request gets it."""
        self._active -= 1
        self.grant()

    def grant(self) -> None:
        """Admit waiters, oldest first, while there is room."""
        while self._waiters and self._has_room():
            admitted = self._waiters.popleft()
            if not admitted.done():
                self._take()
                admitted.set_result(None)

    def _has_room(self) -> bool:
        limit = self._limit()
        return limit is None or self._active < limit

    def _take(self) -> None:
        self._active += 1
        self.max_active = max(self.max_active, self._active)

    def _leave(self, admitted: asyncio.Future[None]) -> None:
        """Undo a wait: give back a slot granted meanwhile, or drop the queue place."""
        if admitted.done() and not admitted.cancelled():
            self.release()
            return
        admitted.cancel()
        try:
            self._waiters.remove(admitted)
        except ValueError:
            pass
