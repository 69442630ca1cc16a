"""runtime/parent.py on both of its paths: pidfd (Linux) and kill(pid, 0) polling."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from crucible.runtime import parent
from crucible.runtime.parent import ParentWatch


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
async def test_the_watch_fires_once_when_the_process_ends(
    pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pidfd and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd_open on this platform")
    if not pidfd:
        monkeypatch.delattr(parent.os, "pidfd_open", raising=False)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(30)"
    )
    fired: list[int] = []
    watch = ParentWatch(child.pid, lambda: fired.append(1), interval_s=0.05)
    assert watch.start()
    await asyncio.sleep(0.2)
    assert fired == []
    child.kill()
    await child.wait()
    for _ in range(40):
        if fired:
            break
        await asyncio.sleep(0.05)
    assert fired == [1]
    watch.stop()


async def test_a_pid_that_does_not_exist_fires_at_once() -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()
    fired: list[int] = []
    ParentWatch(child.pid, lambda: fired.append(1)).start()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert fired == [1]
    assert not parent.process_exists(child.pid)
    assert parent.process_exists(os.getpid())
