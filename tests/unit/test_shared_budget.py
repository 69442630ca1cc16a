"""The shared daemon's memory budget (``shared/budget.py``): the rule for the process's
limits, each session's own share held to its own limits, and process relief acting on each
shared cache once and on each session's own state."""

from __future__ import annotations

from collections.abc import Awaitable

from crucible.cache.tiered import TieredCache
from crucible.config.settings import CacheSettings, MemorySettings
from crucible.runtime.memory import MemoryRelief
from crucible.shared.budget import DaemonBudget

MB = 1 << 20


class _Relief:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = False

    def limit_cache(self, fraction: float) -> Awaitable[None] | None:
        self.calls.append("limit_cache")
        return None

    def drop_idle_state(self, idle_s: float) -> None:
        self.calls.append("drop_idle_state")

    def pause_background(self, paused: bool) -> None:
        self.paused = paused

    def cancel_background(self) -> None:
        self.calls.append("cancel_background")

    def clear_cache(self) -> None:
        self.calls.append("clear_cache")

    def release_connections(self) -> Awaitable[None] | None:
        return None

    def tell_user(self, message: str) -> None:
        self.calls.append(f"told: {message}")


class _Session:
    def __init__(self, documents_mb: float = 1) -> None:
        self._relief = _Relief()
        self.documents = int(documents_mb * MB)

    @property
    def relief(self) -> MemoryRelief:
        return self._relief

    @property
    def log(self) -> _Relief:
        return self._relief

    def memory_components(self) -> dict[str, int]:
        return {"documents": self.documents, "l1": 500 * MB}  # l1 is the daemon's, not its own

    def requests_total(self) -> int:
        return 0


def _memory(soft: float, hard: float, interval: float = 10) -> MemorySettings:
    return MemorySettings(soft_limit_mb=soft, hard_limit_mb=hard, check_interval_s=interval)


def test_the_process_gets_the_largest_limits_and_the_shortest_interval() -> None:
    budget = DaemonBudget(list, list, dict)
    one, two = _Session(), _Session()
    budget.view(one).reconfigure(_memory(100, 200, 5))
    budget.view(two).reconfigure(_memory(300, 400, 20))
    assert budget.limits() == _memory(300, 400, 5)
    budget.view(one).reconfigure(_memory(500, 900, 30))  # the last to apply does not decide
    assert budget.limits() == _memory(500, 900, 20)
    budget.leave(one)
    assert budget.limits() == _memory(300, 400, 20)
    budget.leave(two)
    assert budget.limits() == MemorySettings()


def test_a_session_over_its_own_limits_is_relieved_alone() -> None:
    budget = DaemonBudget(list, list, dict)
    heavy, light = _Session(documents_mb=40), _Session(documents_mb=1)
    budget.view(heavy).reconfigure(_memory(16, 32))
    budget.view(light).reconfigure(_memory(16, 32))
    budget.check_sessions()
    assert heavy.log.paused and "cancel_background" in heavy.log.calls
    assert any(c.startswith("told: Crucible: this window holds 40 MB") for c in heavy.log.calls)
    assert not light.log.paused and light.log.calls == []
    # The process's pressure pauses everyone; its end unpauses only those within their own.
    budget.pause_all(True)
    assert light.log.paused and heavy.log.paused
    budget.pause_all(False)
    assert not light.log.paused and heavy.log.paused
    heavy.documents = 10 * MB  # under 0.9 x soft: back to normal, told no more
    budget.check_sessions()
    assert not heavy.log.paused
    heavy.documents = 40 * MB
    budget.check_sessions()
    assert sum(c.startswith("told:") for c in heavy.log.calls) == 1


def test_process_relief_shrinks_each_shared_cache_once_and_tells_each_window() -> None:
    caches = [
        (
            CacheSettings(memory_mb=8, disk=False),
            TieredCache(memory_bytes=8 * MB, ttl_s=60, disk=None),
        ),
        (
            CacheSettings(memory_mb=4, disk=False),
            TieredCache(memory_bytes=4 * MB, ttl_s=60, disk=None),
        ),
    ]
    for _, cache in caches:
        for i in range(50):
            cache.store_text(f"key-{i}", "x" * 1000)
    budget = DaemonBudget(lambda: caches, list, dict)
    sessions = [_Session(), _Session(), _Session()]
    for session in sessions:
        budget.view(session)
    assert all(cache.stats()["levels"]["l1"]["entries"] == 50 for _, cache in caches)
    relief = budget.supervisor._relief
    relief.clear_cache()
    assert all(cache.stats()["levels"]["l1"]["entries"] == 0 for _, cache in caches)
    assert all("clear_cache" not in s.log.calls for s in sessions)  # not once per session
    relief.drop_idle_state(300)
    relief.tell_user("over the limit.")
    for session in sessions:
        assert session.log.calls[0] == "drop_idle_state"
        assert "serves 3 windows; this one holds 1 MB" in session.log.calls[1]


def test_a_level_reached_under_a_closed_windows_limits_is_left_at_once() -> None:
    from crucible.runtime.memory import Pressure

    budget = DaemonBudget(list, list, dict)
    small, roomy = _Session(), _Session()
    budget.view(small).reconfigure(_memory(16, 32))  # this process holds more than 32 MB
    budget.supervisor.check()
    assert budget.supervisor.pressure is Pressure.CRITICAL
    assert small.log.paused
    budget.view(roomy).reconfigure(_memory(60_000, 120_000))
    budget.leave(small)
    assert budget.supervisor.pressure is Pressure.NORMAL  # no sample waited for
    assert not roomy.log.paused


def test_each_window_is_told_of_the_daemons_hard_limit_once() -> None:
    budget = DaemonBudget(list, list, dict)
    first = _Session()
    budget.view(first)
    relief = budget.supervisor._relief
    relief.tell_user("over.")
    relief.tell_user("over.")
    later = _Session()
    budget.view(later)
    relief.tell_user("over.")
    told = [sum(c.startswith("told:") for c in s.log.calls) for s in (first, later)]
    assert told == [1, 1]
