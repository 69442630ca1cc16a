"""How the managed server's process is tied to Crucible and ended, and what it holds.

- ``parent_death_signal``: a preexec function that sets PR_SET_PDEATHSIG = SIGKILL (Linux,
  ``prctl`` through ctypes), so the child dies with Crucible even when Crucible is killed with
  SIGKILL; the child also watches its parent pid itself (``child.py``), the only protection on
  macOS and Windows.
- ``terminate``: SIGTERM, then SIGKILL after a grace period, and reap.
- ``rss_mb``: its resident memory (Linux ``/proc``), for ``crucible/status`` and doctor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STOP_GRACE_S = 5.0


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec function that makes the child receive SIGKILL when this process dies, or None
    off Linux. The ctypes function is looked up here, before the fork: the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return set_signal


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` (Linux ``/proc``), or None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


async def terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after a grace period; returns once the process is reaped."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
