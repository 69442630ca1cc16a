"""ParentWatch: call back once when the editor process that started the server ends.

The LSP ``initialize`` request names the client's process (``processId``): "If the parent process
is not alive then the server should exit". Editors that crash, or are killed, never send
``exit``, and a server that lives on holds its memory and provider connections for nothing.

How it watches, best first:

* Linux: ``os.pidfd_open`` gives a descriptor that becomes readable when the process ends, even
  while it waits to be reaped; the event loop is told at once, no polling, and a later process
  that happens to get the same pid cannot be mistaken for it.
* Other POSIX systems: ``os.kill(pid, 0)`` every ``interval_s`` seconds, in an owned task. It
  cannot tell a reused pid (or an unreaped zombie) from the parent: a residual risk.
* Windows: not watched (``os.kill`` there terminates the process it names).

A pid that does not exist when the watch starts counts as ended at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists (POSIX); a process of another user counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: never exit on a doubt
    return True


class ParentWatch:
    """Calls ``on_gone`` once, on the running loop, when process ``pid`` ends."""

    def __init__(self, pid: int, on_gone: Callable[[], None], interval_s: float = 1.0) -> None:
        self.pid = pid
        self._on_gone = on_gone
        self._interval_s = interval_s
        self._pidfd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._fired = False

    def start(self) -> bool:
        """Start watching; False when this platform cannot watch a process."""
        loop = asyncio.get_running_loop()
        if sys.platform == "win32":
            return False
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(self.pid)
            except ProcessLookupError:
                loop.call_soon(self._fire)
                return True
            except OSError:  # an old kernel, a sandbox forbidding it: poll instead
                self._pidfd = None
            else:
                loop.add_reader(self._pidfd, self._fire)
                return True
        if not process_exists(self.pid):
            loop.call_soon(self._fire)
            return True
        self._task = loop.create_task(self._poll(), name=f"parent-watch-{self.pid}")
        return True

    async def _poll(self) -> None:
        while process_exists(self.pid):  # noqa: ASYNC110 - there is no event to wait on
            await asyncio.sleep(self._interval_s)
        self._fire()

    def _fire(self) -> None:
        self._close_pidfd()
        if not self._fired:
            self._fired = True
            self._on_gone()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def stop(self) -> None:
        self._fired = True
        self._close_pidfd()
        if self._task is not None:
            self._task.cancel()
            self._task = None
