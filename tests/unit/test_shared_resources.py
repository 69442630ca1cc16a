"""SharedResources: leases of providers and caches, closed by the last holder; and the
daemon's log routing, which sends a session's records to that session's editor only."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.config.settings import CacheSettings, ProviderSettings
from crucible.providers.errors import ProviderError
from crucible.runtime.log import SESSION_LOG, ClientLogHandler, SessionLog, SessionLogRouter
from crucible.runtime.memory import MemoryRelief
from crucible.shared.resources import SharedResources


class _Provider:
    def __init__(self, name: str) -> None:
        self.name, self.model, self.closed = name, "m", 0

    async def aclose(self) -> None:
        self.closed += 1


class _Session:
    relief: MemoryRelief

    def memory_components(self) -> dict[str, int]:
        return {"documents": 10, "l1": 999}

    def requests_total(self) -> int:
        return 1

    def provider_notice(self, name: str, error: ProviderError) -> None:
        pass

    def count_batch(self, waits_ms: tuple[float, ...]) -> None:
        pass


async def test_providers_are_shared_per_settings_and_key_and_closed_by_the_last() -> None:
    shared = SharedResources()
    shared.start()
    settings = ProviderSettings(name="p", api_key_env="KEY")
    one, two, three = _Session(), _Session(), _Session()
    made: list[_Provider] = []

    def create() -> Any:
        made.append(_Provider("p"))
        return made[-1]

    a = shared.provider(settings, {"KEY": "k1"}, create, one)
    b = shared.provider(settings, {"KEY": "k1"}, create, two)
    c = shared.provider(settings, {"KEY": "k2"}, create, three)  # another key: its own
    assert a is b and a is not c and len(made) == 2
    shared.release(a, one)
    await asyncio.sleep(0)
    assert made[0].closed == 0  # two still holds it
    shared.release(b, two)
    for _ in range(3):
        await asyncio.sleep(0)
    assert made[0].closed == 1 and made[1].closed == 0
    await shared.aclose()
    assert made[1].closed == 1


async def test_caches_are_shared_per_settings_and_counted_once() -> None:
    shared = SharedResources()
    one, two = _Session(), _Session()
    shared.join(one)
    shared.join(two)
    settings = CacheSettings(disk=False)
    built: list[TieredCache] = []

    def build() -> TieredCache:
        built.append(TieredCache(memory_bytes=1 << 20, ttl_s=60, disk=None))
        return built[-1]

    assert shared.cache((settings, None), build, one) is shared.cache((settings, None), build, two)
    assert len(built) == 1
    components = shared.memory_components()
    assert components["documents"] == 20  # per session, summed
    assert components["l1"] == built[0].memory_bytes()["l1"]  # the one cache, once
    await shared.aclose()


def test_the_sessions_counted_in_status_and_budgeted_are_one_list() -> None:
    """``shared.sessions`` and ``memory.daemon.sessions`` read the same sessions, and a
    session that left is counted by neither, whatever it does after (a late configuration)."""
    from crucible.config.settings import MemorySettings

    shared = SharedResources()
    one, two = _Session(), _Session()
    shared.join(one)
    shared.join(two)
    memory = shared.memory_for(one)
    assert shared.snapshot()["sessions"] == 2
    assert shared.budget.session_snapshot(two)["daemon"]["sessions"] == 2
    assert shared.memory_components()["documents"] == 20
    shared.leave(one)
    memory.reconfigure(MemorySettings(soft_limit_mb=9000, hard_limit_mb=9500))
    assert shared.sessions == 1 and shared.snapshot()["sessions"] == 1
    assert shared.budget.session_snapshot(two)["daemon"]["sessions"] == 1
    assert shared.budget.limits() == MemorySettings()  # the one that left asks for nothing
    assert shared.memory_components()["documents"] == 10
    shared.leave(two)
    assert shared.sessions == 0 and shared.budget.members() == []


def test_a_sessions_records_reach_only_its_own_editor() -> None:
    router = SessionLogRouter()
    logger = logging.getLogger("crucible.test_shared")
    logger.addHandler(router)
    logger.setLevel(logging.INFO)
    first, second = ClientLogHandler(), ClientLogHandler()
    try:
        token = SESSION_LOG.set(SessionLog("INFO", first))
        logger.info("for the first window")
        SESSION_LOG.reset(token)
        token = SESSION_LOG.set(SessionLog("INFO", second))
        logger.info("for the second window")
        SESSION_LOG.reset(token)
        logger.info("the daemon's own")  # no session: no editor
    finally:
        logger.removeHandler(router)
    assert [text for _, text in first._queue] == ["crucible.test_shared: for the first window"]
    assert [text for _, text in second._queue] == ["crucible.test_shared: for the second window"]


async def test_the_daemon_wide_supervisor_logs_as_no_session() -> None:
    shared = SharedResources()
    seen: list[object] = []

    async def run() -> None:
        seen.append(SESSION_LOG.get())

    shared.memory.run = run  # type: ignore[method-assign]
    token = SESSION_LOG.set(SessionLog("INFO", ClientLogHandler()))  # the first session's App
    try:
        shared.start()
    finally:
        SESSION_LOG.reset(token)
    await asyncio.sleep(0)
    assert seen == [None]
    await shared.aclose()


async def test_a_session_that_left_but_is_still_held_is_counted() -> None:
    shared = SharedResources()
    kept, dropped = _Session(), _Session()
    shared.join(kept)
    shared.join(dropped)
    assert shared.snapshot()["ended_in_memory"] == 0  # both still serving
    shared.leave(kept)
    shared.leave(dropped)
    del dropped
    assert shared.snapshot()["ended_in_memory"] == 1  # ``kept`` is still referenced here
    del kept
    assert shared.snapshot()["ended_in_memory"] == 0
