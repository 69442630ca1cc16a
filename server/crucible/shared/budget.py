"""``DaemonBudget``: the shared daemon's memory budget, out of each window's ``[memory]``.

One process serves every window, so there is one resident set to keep in check, but each
window brings its own ``[memory]``. The rule:

- **The process**: the daemon's ``MemorySupervisor`` compares RSS with the *largest*
  ``soft_limit_mb`` and the largest ``hard_limit_mb`` any session asks for, and samples at the
  shortest ``check_interval_s``. Each window's limits were chosen for a process holding that
  window: the interpreter and libraries (~60 MB) and a cache, which the daemon holds once for
  all of them. The largest therefore never cuts a window's allowance (a window given 1 GB
  for its large files is not throttled by a window at the defaults), and a window's smaller
  limit cannot make the daemon shed the cache and connections every other window uses (one
  window's configuration would then reach into another's, which the daemon must not allow).
  The sum would let six windows at the defaults reach 1.5 GB before any relief, far past
  anything a leak-free daemon holds (``docs/startup.md``: ~110 MB for six), so it would
  never catch the leak a budget is for. No session: the defaults.
- **Each session**: its own share (its documents, diagnostics, review baselines, telemetry
  and pools: the components an ``App`` keeps for its window alone; the shared caches are the
  daemon's) is compared with its own limits after every sample. Over its soft limit, *that*
  session drops its idle documents' state and pauses its prefetch; over its hard limit it
  also cancels its background work and its window is told once. No other session is touched.
- **Process relief** (RSS over the daemon's limits) acts on what is shared once (each shared
  cache shrunk or cleared with its own budget, each shared provider's idle connections
  closed) and on every session's own state as its own (idle documents only: a window being
  typed in loses nothing it uses); a prefetch stays paused while either its session or the
  process is under pressure.

``crucible/status`` ``memory`` of a session has the process's figures and limits (as
before), plus ``session`` (its own limits, share and level) and ``daemon`` (the rule, the
limits it gives, the sessions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from crucible.cache.tiered import TieredCache
from crucible.config.settings import CacheSettings, MemorySettings
from crucible.providers.base import Provider
from crucible.providers.http_provider import HttpProvider
from crucible.runtime.log import SESSION_LOG
from crucible.runtime.memory import (
    IDLE_DOCUMENT_S,
    MemoryRelief,
    MemorySupervisor,
    Pressure,
)

_MB = 1 << 20
_RELEASE_FRACTION = 0.9  # a session's level goes down a tenth under the limit, as the process's
# What a session's own share leaves out: the shared caches, counted once, as the daemon's.
SHARED_COMPONENTS = ("l1", "type_through")
RULE = "largest soft and hard limit among the sessions, shortest check interval"


class BudgetedSession(Protocol):
    """What the budget needs of one session (its ``App``)."""

    @property
    def relief(self) -> MemoryRelief: ...

    def memory_components(self) -> dict[str, int]: ...

    def requests_total(self) -> int: ...


@dataclass(slots=True)
class _Share:
    """One session's ``[memory]`` and where its own share stands."""

    settings: MemorySettings
    pressure: Pressure = Pressure.NORMAL
    told: bool = False  # of its own hard limit
    told_process: bool = False  # of the daemon's


def own_bytes(session: BudgetedSession) -> int:
    """What ``session`` holds for its window alone (the shared caches left out)."""
    return sum(
        size for name, size in session.memory_components().items() if name not in SHARED_COMPONENTS
    )


class DaemonBudget:
    """The process's supervisor under the rule, and each session's own budget."""

    def __init__(
        self,
        caches: Callable[[], Iterable[tuple[CacheSettings, TieredCache]]],
        providers: Callable[[], Iterable[Provider]],
        components: Callable[[], dict[str, int]],
    ) -> None:
        # Each joined session's share: the daemon's list of sessions (``members``).
        self._shares: dict[BudgetedSession, _Share] = {}
        self._caches = caches
        self._providers = providers
        self._process_paused = False
        self._applied = MemorySettings()  # the limits the supervisor has
        self.supervisor = MemorySupervisor(
            MemorySettings(),
            _DaemonRelief(self),
            components=components,
            activity=lambda: sum(s.requests_total() for s in self._shares),
            on_sample=self.check_sessions,
            tell_once=False,  # each session once: _DaemonRelief.tell_user
        )

    # -- sessions ------------------------------------------------------------------------------

    def join(self, session: BudgetedSession) -> None:
        """``session`` is the daemon's from now (``SharedResources.join``, as its ``App`` is
        built) until it leaves (``App.aclose``)."""
        self._shares.setdefault(session, _Share(MemorySettings()))
        self._apply_rule()

    def leave(self, session: BudgetedSession) -> None:
        self._shares.pop(session, None)
        self._apply_rule()

    def members(self) -> list[BudgetedSession]:
        """The sessions joined and not left: the daemon's one list of its sessions' ``App``s
        (each holds a share, so the budget keeps it; ``SharedResources`` counts and sums
        them from here)."""
        return list(self._shares)

    def view(self, session: BudgetedSession) -> SessionMemory:
        """What ``session``'s ``App`` holds as its ``memory``."""
        self.join(session)
        return SessionMemory(self, session)

    def configure(self, session: BudgetedSession, settings: MemorySettings) -> None:
        share = self._shares.get(session)
        if share is None:  # it left (a configuration arriving as it closed): not joined again
            return
        share.settings = settings
        self._apply_rule()

    def limits(self) -> MemorySettings:
        """The process's budget under the rule (module docstring)."""
        asked = [share.settings for share in self._shares.values()]
        if not asked:
            return MemorySettings()
        return MemorySettings(
            soft_limit_mb=max(s.soft_limit_mb for s in asked),
            hard_limit_mb=max(s.hard_limit_mb for s in asked),
            check_interval_s=min(s.check_interval_s for s in asked),
        )

    def _apply_rule(self) -> None:
        """The rule's limits to the supervisor. When they change while the process is under
        pressure, the level is taken again at once against them (a level per sample, so at
        most twice): a window opening after one with small limits closed should not find
        the daemon still shedding under them until the next sample."""
        limits = self.limits()
        if limits == self._applied:
            return
        self._applied = limits
        self.supervisor.reconfigure(limits)
        token = SESSION_LOG.set(None)  # the daemon's work, not the session's that changed it
        try:
            for _ in range(2):
                if self.supervisor.pressure is Pressure.NORMAL:
                    break
                self.supervisor.check()
        finally:
            SESSION_LOG.reset(token)

    # -- each session's own share ----------------------------------------------------------------

    def check_sessions(self) -> None:
        """After each sample: every session's own share against its own limits."""
        for session, share in list(self._shares.items()):
            level = self._level(share, own_bytes(session))
            if level is share.pressure:
                continue
            previous, share.pressure = share.pressure, level
            relief = session.relief
            if previous is Pressure.NORMAL:
                relief.drop_idle_state(IDLE_DOCUMENT_S)
            relief.pause_background(self._process_paused or level is not Pressure.NORMAL)
            if level is Pressure.CRITICAL:
                relief.cancel_background()
                if not share.told:
                    share.told = True
                    relief.tell_user(self._session_message(session, share))

    @staticmethod
    def _level(share: _Share, held: int) -> Pressure:
        soft, hard = share.settings.soft_limit_mb * _MB, share.settings.hard_limit_mb * _MB
        if held >= hard:
            return Pressure.CRITICAL
        if held >= soft:
            return Pressure.ELEVATED
        if share.pressure is Pressure.NORMAL or held < soft * _RELEASE_FRACTION:
            return Pressure.NORMAL
        return Pressure.ELEVATED

    def _session_message(self, session: BudgetedSession, share: _Share) -> str:
        return (
            f"Crucible: this window holds {own_bytes(session) / _MB:.0f} MB (open documents"
            f" and their state), over its hard limit of {share.settings.hard_limit_mb:g} MB"
            " ([memory] hard_limit_mb). It stopped this window's background work. Close large"
            " files or raise [memory] hard_limit_mb."
        )

    def session_snapshot(self, session: BudgetedSession) -> dict[str, Any]:
        share = self._shares.get(session) or _Share(MemorySettings())
        limits = self.limits()
        return {
            "session": {
                "soft_limit_mb": share.settings.soft_limit_mb,
                "hard_limit_mb": share.settings.hard_limit_mb,
                "own_mb": round(own_bytes(session) / _MB, 1),
                "pressure": str(share.pressure),
            },
            "daemon": {
                "rule": RULE,
                "soft_limit_mb": limits.soft_limit_mb,
                "hard_limit_mb": limits.hard_limit_mb,
                "check_interval_s": limits.check_interval_s,
                "sessions": len(self._shares),
            },
        }

    # -- the process's relief (``_DaemonRelief``) ------------------------------------------------

    def sessions(self) -> list[tuple[BudgetedSession, _Share]]:
        return list(self._shares.items())

    def pause_all(self, paused: bool) -> None:
        self._process_paused = paused
        for session, share in self.sessions():
            session.relief.pause_background(paused or share.pressure is not Pressure.NORMAL)

    def shared_caches(self) -> list[tuple[CacheSettings, TieredCache]]:
        return list(self._caches())

    def shared_providers(self) -> list[HttpProvider]:
        return [p for p in self._providers() if isinstance(p, HttpProvider)]


class SessionMemory:
    """A session's ``memory`` (``runtime/memory.py`` ``MemoryBudget``): its ``[memory]``
    goes to the daemon's budget; its status shows the process, itself and the rule."""

    def __init__(self, budget: DaemonBudget, session: BudgetedSession) -> None:
        self._budget = budget
        self._session = session

    @property
    def cache_fraction(self) -> float:
        return self._budget.supervisor.cache_fraction

    def reconfigure(self, settings: MemorySettings) -> None:
        self._budget.configure(self._session, settings)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._budget.supervisor.snapshot(),
            **self._budget.session_snapshot(self._session),
        }


class _DaemonRelief:
    """The process supervisor's requests: what is shared, once; each session's own, on it."""

    def __init__(self, budget: DaemonBudget) -> None:
        self._budget = budget

    def limit_cache(self, fraction: float) -> Awaitable[None] | None:
        waits: list[Awaitable[None]] = []
        for settings, cache in self._budget.shared_caches():
            if fraction >= 1.0:
                cache.restore_memory_budget()
                continue
            rest = cache.shrink_memory(int(settings.memory_mb * fraction * _MB))
            if rest is not None:
                waits.append(rest)
        return _all(waits) if waits else None

    def drop_idle_state(self, idle_s: float) -> None:
        for session, _ in self._budget.sessions():
            session.relief.drop_idle_state(idle_s)

    def pause_background(self, paused: bool) -> None:
        self._budget.pause_all(paused)

    def cancel_background(self) -> None:
        for session, _ in self._budget.sessions():
            session.relief.cancel_background()

    def clear_cache(self) -> None:
        for _, cache in self._budget.shared_caches():
            cache.clear_memory()

    def release_connections(self) -> Awaitable[None] | None:
        providers = self._budget.shared_providers()
        if not providers:
            return None
        return _all([provider.release_idle_connections() for provider in providers])

    def tell_user(self, message: str) -> None:
        """Each session once (its window is told when the process first goes critical while
        it is open; a window opened later is told the first time after that)."""
        for session, share in self._budget.sessions():
            if share.told_process:
                continue
            share.told_process = True
            held = own_bytes(session) / _MB
            session.relief.tell_user(
                f"{message} (The shared server serves {len(self._budget.sessions())} windows;"
                f" this one holds {held:.0f} MB of it.)"
            )


async def _all(waits: list[Awaitable[None]]) -> None:
    await asyncio.gather(*waits)
