"""The memory supervisor: levels, hysteresis, the actions of each level and the sampling pace,
driven by an injected RSS reading and clock (nothing sleeps, nothing reads the real process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field

import pytest
from tests.fakes.clock import FakeTime

from crucible.config.settings import MemorySettings
from crucible.runtime.memory import IDLE_DOCUMENT_S, MemorySupervisor, Pressure

MB = 1 << 20
LIMITS = MemorySettings(soft_limit_mb=100, hard_limit_mb=200, check_interval_s=10)


@dataclass
class Relief:
    """Records what the supervisor asked for; ``frees`` lowers the fake RSS when L1 shrinks."""

    process: Process
    calls: list[tuple[str, object]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    # True: a shrink and the closing of connections finish later (awaited), as App's do.
    deferred: bool = False

    def limit_cache(self, fraction: float) -> Awaitable[None] | None:
        self.calls.append(("limit_cache", fraction))
        return self._later(10 * MB) if self.deferred and fraction < 1.0 else None

    async def _later(self, frees: int) -> None:
        await asyncio.sleep(0)
        self.process.rss -= frees

    def drop_idle_state(self, idle_s: float) -> None:
        self.calls.append(("drop_idle_state", idle_s))

    def pause_background(self, paused: bool) -> None:
        self.calls.append(("pause_background", paused))

    def cancel_background(self) -> None:
        self.calls.append(("cancel_background", None))

    def clear_cache(self) -> None:
        self.calls.append(("clear_cache", None))
        self.process.rss -= 30 * MB  # the cache's memory goes back

    def release_connections(self) -> Awaitable[None] | None:
        self.calls.append(("release_connections", None))
        return self._later(1 * MB) if self.deferred else None

    def tell_user(self, message: str) -> None:
        self.messages.append(message)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class Process:
    rss: int = 50 * MB
    now: float = 0.0
    requests: int = 0
    collections: int = 0

    def collect(self) -> None:
        self.collections += 1


def supervisor(
    settings: MemorySettings = LIMITS,
) -> tuple[MemorySupervisor, Process, Relief]:
    process = Process()
    relief = Relief(process)
    watcher = MemorySupervisor(
        settings,
        relief,
        components=lambda: {"documents": 120 * MB, "l1": 30 * MB, "telemetry": 0},
        activity=lambda: process.requests,
        read_rss=lambda: process.rss,
        clock=lambda: process.now,
        collect=process.collect,
        trim=lambda: None,
    )
    return watcher, process, relief


def test_under_the_soft_limit_nothing_happens() -> None:
    watcher, process, relief = supervisor()
    for _ in range(5):
        process.requests += 1
        watcher.check()
    assert watcher.pressure is Pressure.NORMAL
    assert relief.calls == [] and watcher.actions == {}


def test_over_the_soft_limit_the_elevated_actions_run_once() -> None:
    watcher, process, relief = supervisor()
    process.rss = 120 * MB
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED
    assert relief.calls == [
        ("limit_cache", 0.25),
        ("drop_idle_state", IDLE_DOCUMENT_S),
        ("pause_background", True),
    ]
    assert process.collections == 1
    assert set(watcher.actions) == {
        "shrink_cache",
        "drop_idle_documents",
        "pause_prefetch",
        "collect_garbage",
    }
    process.now += 5
    watcher.check()  # still elevated: nothing runs again
    assert len(relief.calls) == 3
    assert all(record.count == 1 for record in watcher.actions.values())


def test_each_action_records_the_rss_it_freed() -> None:
    watcher, process, _ = supervisor()
    process.rss = 250 * MB
    watcher.check()
    assert watcher.pressure is Pressure.CRITICAL
    assert watcher.actions["clear_cache"].freed_bytes == 30 * MB
    assert watcher.actions["cancel_background"].freed_bytes == 0


async def test_work_an_action_leaves_to_finish_is_awaited_and_what_it_frees_recorded() -> None:
    watcher, process, relief = supervisor()
    relief.deferred = True
    process.rss = 120 * MB
    watcher.check()
    assert watcher.actions["shrink_cache"].freed_bytes == 0  # the eviction is still going on
    await watcher.finish()
    assert watcher.actions["shrink_cache"].freed_bytes == 10 * MB
    assert process.rss == 110 * MB
    process.rss = 250 * MB
    watcher.check()  # critical: L1 cleared, the limit's rest and the connections awaited
    await watcher.finish()
    assert watcher.actions["release_connections"].freed_bytes == 1 * MB
    assert process.rss == 250 * MB - 30 * MB - 10 * MB - 1 * MB
    await watcher.finish()  # nothing left


def test_critical_runs_both_levels_and_tells_the_user_once_with_the_numbers() -> None:
    watcher, process, relief = supervisor()
    process.rss = 250 * MB
    watcher.check()
    names = relief.names()
    # Straight from normal: the elevated actions first, then the critical ones.
    assert names.index("drop_idle_state") < names.index("clear_cache")
    assert {"cancel_background", "release_connections"} <= set(names)
    assert ("limit_cache", 0.1) in relief.calls
    assert len(relief.messages) == 1
    message = relief.messages[0]
    assert "over its hard limit of 200 MB" in message
    assert "hard_limit_mb" in message and "documents 120 MB" in message
    # Down and back up again: the warning is not repeated.
    process.rss = 150 * MB
    process.now += 60
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED
    process.rss = 250 * MB
    watcher.check()
    assert watcher.pressure is Pressure.CRITICAL
    assert len(relief.messages) == 1
    assert watcher.actions["clear_cache"].count == 2


def test_going_down_needs_the_band_and_the_dwell() -> None:
    watcher, process, relief = supervisor()
    process.rss = 120 * MB
    watcher.check()
    # Past the band but too soon after entering the level: still elevated.
    process.now += 10
    process.rss = 80 * MB
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED
    # Long enough, but under the soft limit only inside the 10 % band: still elevated.
    process.now += 120
    process.rss = 95 * MB
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED
    process.rss = 80 * MB
    watcher.check()
    assert watcher.pressure is Pressure.NORMAL
    assert ("pause_background", False) in relief.calls


def test_a_process_hovering_at_the_limit_does_not_flap() -> None:
    watcher, process, _ = supervisor()
    transitions = []
    for i in range(200):
        process.rss = (99 if i % 2 else 101) * MB  # ±1 % around the soft limit
        process.now += 1
        watcher.check()
        transitions.append(watcher.pressure)
    assert transitions.count(Pressure.NORMAL) == 0  # up once, never back inside the band
    assert watcher.snapshot()["transitions"] == 1


def test_critical_steps_down_one_level_at_a_time() -> None:
    watcher, process, relief = supervisor()
    process.rss = 250 * MB
    watcher.check()
    process.rss = 50 * MB
    process.now += 31
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED
    assert relief.calls[-1] == ("limit_cache", 0.25)
    process.now += 31
    watcher.check()
    assert watcher.pressure is Pressure.NORMAL


def test_back_to_normal_the_cache_budget_returns_gradually() -> None:
    watcher, process, relief = supervisor()
    process.rss = 120 * MB
    watcher.check()
    process.rss = 50 * MB
    process.now += 31
    for _ in range(5):
        watcher.check()
        process.now += 10
    fractions = [value for name, value in relief.calls if name == "limit_cache"]
    assert fractions == [0.25, 0.5, 0.75, 1.0]


def test_the_interval_adapts_to_pressure_and_idleness() -> None:
    watcher, process, _ = supervisor()
    process.requests += 1
    assert watcher.check() == 10  # active, normal
    idle = [watcher.check() for _ in range(5)]
    assert idle == [20, 40, 60, 60, 60]  # doubling while idle, capped at 6x
    process.requests += 1
    assert watcher.check() == 10  # activity brings it back
    process.rss = 120 * MB
    assert watcher.check() == 5  # elevated: twice as often
    process.rss = 250 * MB
    assert watcher.check() == 2.5  # critical: four times as often


def test_new_limits_apply_from_the_next_sample() -> None:
    watcher, process, _ = supervisor()
    process.rss = 120 * MB
    watcher.reconfigure(MemorySettings(soft_limit_mb=500, hard_limit_mb=900))
    watcher.check()
    assert watcher.pressure is Pressure.NORMAL
    watcher.reconfigure(MemorySettings(soft_limit_mb=50, hard_limit_mb=100))
    watcher.check()
    assert watcher.pressure is Pressure.CRITICAL


def test_snapshot_reports_limits_level_actions_and_components() -> None:
    watcher, process, _ = supervisor()
    process.rss = 120 * MB
    watcher.check()
    snapshot = watcher.snapshot()
    assert snapshot["rss_mb"] == 120.0
    assert snapshot["soft_limit_mb"] == 100 and snapshot["hard_limit_mb"] == 200
    assert snapshot["pressure"] == "elevated"
    assert snapshot["shrinks"]["shrink_cache"] == {"count": 1, "freed_bytes": 0}
    assert snapshot["components"]["documents"] == 120 * MB
    # Real counts of this process (the readings are psutil's).
    assert snapshot["threads"] >= 1 and snapshot["open_files"] >= 3


async def test_run_samples_until_cancelled_and_survives_a_failing_sample() -> None:
    time = FakeTime()
    readings: list[int | Exception] = [50 * MB, ValueError("no /proc"), 50 * MB]
    samples: list[float] = []

    def read() -> int:
        samples.append(time.now)
        value = readings.pop(0) if readings else 50 * MB
        if isinstance(value, Exception):
            raise value
        return value

    watcher = MemorySupervisor(
        MemorySettings(check_interval_s=10),
        Relief(Process()),
        read_rss=read,
        clock=time.clock,
        collect=lambda: None,
        trim=lambda: None,
        sleep=time.sleep,
    )
    task = asyncio.create_task(watcher.run())
    await time.advance(100)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # 10 s in, then 20 s (idle: doubled), the failure retried after the plain interval, then
    # the doubling goes on: the failing sample did not end the loop.
    assert [t - 1000 for t in samples] == [10, 30, 40, 80]


def test_raised_limits_let_the_level_down_at_the_next_sample() -> None:
    watcher, process, _ = supervisor()
    process.rss = 250 * MB
    watcher.check()
    assert watcher.pressure is Pressure.CRITICAL
    process.now += 1  # well inside the dwell
    watcher.check()
    assert watcher.pressure is Pressure.CRITICAL  # the same limits: the dwell holds
    watcher.reconfigure(MemorySettings(soft_limit_mb=400, hard_limit_mb=800))
    process.now += 1
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED  # one level a sample, as ever
    watcher.check()
    assert watcher.pressure is Pressure.NORMAL
    process.rss = 410 * MB
    watcher.check()
    process.rss = 300 * MB
    watcher.check()
    assert watcher.pressure is Pressure.ELEVATED  # the same limits again: the dwell holds


async def test_a_shorter_interval_ends_the_wait_for_the_next_sample() -> None:
    process = Process()

    async def forever(seconds: float) -> None:
        await asyncio.get_running_loop().create_future()  # as a 60 s idle nap, for the test

    watcher = MemorySupervisor(
        LIMITS,
        Relief(process),
        read_rss=lambda: process.rss,
        clock=lambda: process.now,
        trim=lambda: None,
        sleep=forever,
    )
    running = asyncio.create_task(watcher.run())
    for _ in range(3):
        await asyncio.sleep(0)
    watcher.reconfigure(LIMITS)  # the same interval: the nap goes on
    for _ in range(3):
        await asyncio.sleep(0)
    assert watcher.snapshot()["samples"] == 0
    watcher.reconfigure(MemorySettings(soft_limit_mb=100, hard_limit_mb=200, check_interval_s=1))
    for _ in range(3):
        await asyncio.sleep(0)
    assert watcher.snapshot()["samples"] == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
