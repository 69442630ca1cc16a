"""``SharedResources``: what every session of the shared daemon uses in common.

The daemon (``shared/daemon.py``) builds one of these, and each session's ``App`` is given it
(``App(shared=...)``); a plain ``crucible-lsp --stdio`` has none and builds its own of each.
It owns three things:

- the response caches: one ``TieredCache`` (one L1, the sqlite L2) per identical
  ``CacheSettings`` and disk file, so sessions configured alike (the usual case: one user, one
  user file) share every answer; a session configured otherwise gets its own.
  ``crucible.clearCache`` empties the one its window uses, and says so to the others
  (``clear_cache``);
- the providers: one per identical ``ProviderSettings`` *and* resolved API key (the value of
  ``api_key_env`` in the session's environment), so one connection pool per provider serves
  every window, and a window never sends another window's key;
- the links to a team's Redis (``team/redis_link.py``): one per identical ``TeamRedis`` and
  resolved password, so the windows of one user share its connections, its breaker and its
  state (one notice per session, each from its own listener); a cache using a link is shared
  only with sessions sharing that link;
- the memory budget (``shared/budget.py``): one supervisor for the process, whose limits are
  the largest any session's ``[memory]`` asks for, and each session's own share held to its
  own limits; relief acts on each shared cache and provider once, and on each session's own
  state.

Caches and providers are leased: ``cache`` / ``provider`` hand out the shared instance and
count the lease; ``release`` gives it back, and the last release closes it (on the daemon's
loop, in the background). A provider's notices (a model that cannot fill in the middle) and
batch counts go to every session holding it.

Errors: none of its own; closing a cache or provider logs what fails and goes on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import weakref
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from crucible.cache.tiered import TieredCache
from crucible.config.settings import CacheSettings, ProviderSettings
from crucible.providers.base import Provider
from crucible.providers.errors import ProviderError
from crucible.providers.http import api_key
from crucible.providers.http_provider import HttpProvider
from crucible.providers.openai import OpenAIProvider
from crucible.runtime.log import SESSION_LOG, SessionLog
from crucible.runtime.memory import MemoryRelief, MemorySupervisor
from crucible.runtime.tasks import BackgroundTasks
from crucible.shared.budget import SHARED_COMPONENTS, DaemonBudget, SessionMemory
from crucible.team.redis_link import RedisLink, TeamRedis

logger = logging.getLogger(__name__)

T = TypeVar("T", TieredCache, Provider, RedisLink)


class SessionBackend(Protocol):
    """What the shared resources need of one session's ``App``."""

    @property
    def relief(self) -> MemoryRelief:
        """The session's share of the memory supervisor's requests."""
        ...

    def memory_components(self) -> dict[str, int]: ...

    def requests_total(self) -> int: ...

    def provider_notice(self, name: str, error: ProviderError) -> None:
        """A shared provider worked around a problem (``HttpProvider.on_notice``)."""
        ...

    def count_batch(self, waits_ms: tuple[float, ...]) -> None: ...


@dataclass
class _Lease(Generic[T]):
    value: T
    holders: list[SessionBackend] = field(default_factory=list)


class SharedResources:
    """Caches, providers and the memory supervisor of the daemon; see the module docstring."""

    def __init__(self) -> None:
        # Which sessions are joined is the budget's to say (``budget.members``: each holds a
        # share of it from join to leave); what is kept here per session is looked up only.
        # Every session that joined, for as long as something holds it: one that has left
        # and is still here is a leak (``ended_in_memory``).
        self._joined: weakref.WeakSet[SessionBackend] = weakref.WeakSet()
        self._logs: dict[SessionBackend, SessionLog | None] = {}  # each session's, for _tell
        self._caches: dict[Hashable, _Lease[TieredCache]] = {}
        self._providers: dict[Hashable, _Lease[Provider]] = {}
        self._links: dict[Hashable, _Lease[RedisLink]] = {}
        self._tasks: BackgroundTasks | None = None
        self._unstarted: list[Coroutine[Any, Any, None]] = []
        self._supervising: asyncio.Task[None] | None = None
        self.budget = DaemonBudget(self._cache_settings, self.providers, self.memory_components)
        # Its limits are the budget's rule over the sessions' [memory] (``shared/budget.py``).
        self.memory: MemorySupervisor = self.budget.supervisor

    # -- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        """On the daemon's loop: the supervisor samples from now on. Later calls do nothing."""
        if self._tasks is not None:
            return
        self._tasks = BackgroundTasks(asyncio.get_running_loop())
        self._supervising = self._daemon_wide(self.memory.run(), "memory supervisor")
        waiting, self._unstarted = self._unstarted, []
        for work in waiting:
            self._daemon_wide(work, "close a shared resource")

    def _daemon_wide(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as the daemon's, not as the session whose call started it: a task
        inherits the context it was created in, and with it the session's log (its records
        would go to that window, and keep going there after it closed)."""
        assert self._tasks is not None
        token = SESSION_LOG.set(None)
        try:
            return self._tasks.spawn(work, name=name)
        finally:
            SESSION_LOG.reset(token)

    def join(self, session: SessionBackend) -> None:
        """Called in the session's task as its ``App`` is built: its log is the one set.
        A session counts here from then until ``leave`` (``App.aclose``); the daemon counts
        its connection for longer (``Daemon.sessions_served``: from its welcome, through
        the wait for the server's import, to the connection's end)."""
        self._joined.add(session)
        self._logs[session] = SESSION_LOG.get()
        self.budget.join(session)

    def leave(self, session: SessionBackend) -> None:
        self._logs.pop(session, None)
        self.budget.leave(session)

    def memory_for(self, session: SessionBackend) -> SessionMemory:
        """``session``'s view of the daemon's memory budget (``shared/budget.py``)."""
        return self.budget.view(session)

    def _tell(self, session: SessionBackend, message: str) -> None:
        """Log ``message`` at INFO as ``session``'s: to its editor and its file only."""
        token = SESSION_LOG.set(self._logs.get(session))
        try:
            logger.info("%s", message)
        finally:
            SESSION_LOG.reset(token)

    @property
    def sessions(self) -> int:
        """Sessions joined and not left (``join``)."""
        return len(self.budget.members())

    def ended_in_memory(self) -> int:
        """Sessions that have left but whose ``App`` is still in memory: each holds its
        server, documents and state, so a count that grows with the windows closed is a leak
        (``tests/e2e/test_shared_endurance.py``). An App is a web of cycles, freed by the
        cycle collector on its own schedule, so a count above 0 is taken again after a full
        collection (a few ms; status is asked for on demand, not polled)."""
        live = self.budget.members()
        if not any(session not in live for session in self._joined):
            return 0
        gc.collect()
        return sum(1 for session in self._joined if session not in live)

    def snapshot(self) -> dict[str, Any]:
        """For crucible/status ``shared``: the daemon's pid, its sessions, what they share."""
        return {
            "pid": os.getpid(),
            "sessions": self.sessions,
            "caches": len(self._caches),
            "providers": len(self._providers),
            "redis_links": len(self._links),
            "ended_in_memory": self.ended_in_memory(),
        }

    async def aclose(self) -> None:
        if self._supervising is not None:
            self._supervising.cancel()
        values: list[TieredCache | Provider | RedisLink] = [
            *self.caches(),
            *self.providers(),
            *(lease.value for lease in self._links.values()),
        ]
        self._caches, self._providers, self._links = {}, {}, {}
        for value in values:
            await _close(value)
        waiting, self._unstarted = self._unstarted, []
        await asyncio.gather(*waiting, return_exceptions=True)
        if self._tasks is not None:
            await self._tasks.aclose()

    # -- leases --------------------------------------------------------------------------------

    def cache(
        self, key: Hashable, build: Callable[[], TieredCache], holder: SessionBackend
    ) -> TieredCache:
        """The cache for ``key`` (its settings and disk file), built on first use."""
        lease = self._caches.get(key)
        if lease is None:
            lease = self._caches[key] = _Lease(build())
        lease.holders.append(holder)
        return lease.value

    def provider(
        self,
        settings: ProviderSettings,
        env: Mapping[str, str],
        create: Callable[[], Provider],
        holder: SessionBackend,
    ) -> Provider:
        """The provider for ``settings`` with the key ``env`` gives it, created on first use;
        its notices and batch counts go to every holder."""
        key = (settings, api_key(settings, env))
        lease = self._providers.get(key)
        if lease is None:
            provider = create()
            lease = self._providers[key] = _Lease(provider)
            holders = lease.holders
            if isinstance(provider, HttpProvider):
                provider.env = env
                provider.on_notice = lambda error: _notify(holders, settings.name, error)
            if isinstance(provider, OpenAIProvider):
                provider.on_batch = lambda waits: _count(holders, waits)
        lease.holders.append(holder)
        return lease.value

    def redis_link(
        self, target: TeamRedis, env: Mapping[str, str], holder: SessionBackend
    ) -> RedisLink:
        """The link to ``target`` with the password ``env`` gives it, made on first use."""
        password = env.get(target.password_env) if target.password_env else None
        key = (target, password)
        lease = self._links.get(key)
        if lease is None:
            lease = self._links[key] = _Lease(RedisLink(target, env))
        lease.holders.append(holder)
        return lease.value

    def release(self, value: TieredCache | Provider | RedisLink, holder: SessionBackend) -> None:
        """``holder`` no longer uses ``value``; the last holder's release closes it."""
        if isinstance(value, TieredCache):
            self._release(self._caches, value, holder)
        elif isinstance(value, RedisLink):
            self._release(self._links, value, holder)
        else:
            self._release(self._providers, value, holder)

    def _release(self, table: dict[Hashable, _Lease[T]], value: T, holder: SessionBackend) -> None:
        for key, lease in list(table.items()):
            if lease.value is value:
                if holder in lease.holders:
                    lease.holders.remove(holder)
                if not lease.holders:
                    del table[key]
                    self._spawn(_close(lease.value))
                return

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._tasks is None:
            self._unstarted.append(work)
        else:
            self._daemon_wide(work, "close a shared resource")

    async def clear_cache(self, cache: TieredCache, holder: SessionBackend) -> dict[str, int]:
        """``crucible.clearCache`` from ``holder``'s window: ``cache`` is emptied for every
        window using it (an answer belongs to no window: any window's prompt may be served
        by it). The answer says how many other windows share it (``shared_with``), and each
        of them is told in its log."""
        cleared = await cache.clear()
        lease = next((lease for lease in self._caches.values() if lease.value is cache), None)
        others = list(dict.fromkeys(h for h in (lease.holders if lease else []) if h != holder))
        for other in others:
            self._tell(
                other,
                "the response cache this window shares was emptied by crucible.clearCache"
                " in another window",
            )
        if others:
            logger.info("the cache cleared is shared with %d other windows", len(others))
        return {**cleared, "shared_with": len(others)}

    def _cache_settings(self) -> list[tuple[CacheSettings, TieredCache]]:
        """Each shared cache with the settings it was built for (leases are keyed by them)."""
        return [
            (key[0], lease.value)
            for key, lease in self._caches.items()
            if isinstance(key, tuple) and isinstance(key[0], CacheSettings)
        ]

    def caches(self) -> list[TieredCache]:
        return [lease.value for lease in self._caches.values()]

    def providers(self) -> list[Provider]:
        return [lease.value for lease in self._providers.values()]

    # -- the memory supervisor's view ----------------------------------------------------------

    def memory_components(self) -> dict[str, int]:
        """Bytes per component over every session; each cache counted once."""
        total: dict[str, int] = {}
        for session in self.budget.members():
            for name, size in session.memory_components().items():
                if name not in SHARED_COMPONENTS:
                    total[name] = total.get(name, 0) + size
        for cache in self.caches():
            for name, size in cache.memory_bytes().items():
                if name in SHARED_COMPONENTS:
                    total[name] = total.get(name, 0) + size
        return total


def _notify(holders: Iterable[SessionBackend], name: str, error: ProviderError) -> None:
    for holder in list(holders):
        try:
            holder.provider_notice(name, error)
        except Exception:  # one session's trouble must not reach another's
            logger.exception("a session could not take a provider's notice")


def _count(holders: Iterable[SessionBackend], waits_ms: tuple[float, ...]) -> None:
    for holder in list(holders):
        try:
            holder.count_batch(waits_ms)
        except Exception:
            logger.exception("a session could not count a provider's batch")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


async def _close(value: _Closable) -> None:
    try:
        await value.aclose()
    except Exception:
        logger.exception("closing a shared resource failed")
