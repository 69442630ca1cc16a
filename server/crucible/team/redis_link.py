"""RedisLink: the one connection to the team's Redis (or Valkey), never in a suggestion's way.

A team's Crucibles share two things through Redis (issue 18): the L3 cache (answers one member
asked for, served to the others) and the budget (calls and tokens per minute a hosted API
allows the whole team). Both go through this link, the only module importing ``redis``:

* **Off the path until ready.** ``redis.asyncio`` costs ~0.1 s to import, so :meth:`warm`
  imports it in a thread after start-up and every :meth:`run` before then answers
  :class:`RedisUnavailable` at once. A machine without the library (the ``team`` extra not
  installed) gets the state ``missing`` and one notice; nothing else changes.
* **A strict time budget per call.** :meth:`run` gives each operation ``budget_s`` (a
  lookup's is ``cache.shared_timeout_ms``, a few milliseconds); past it the caller goes on
  without Redis, and the command is left to finish (2 s more at most) rather than cancelled:
  cancelled mid-reply, redis-py drops the connection, and the next lookup would spend its
  budget making a new one.
* **A breaker.** Three failures in a row (refused, reset, timed out, a reply that is not what
  the command returns) open it: for 5 s, then 10, 20 … up to 2 minutes, Redis is not asked at
  all; then one call tries (``resilience/breaker.py``, the same circuit the providers have).
  An error reply (a full Redis refusing a write with OOM, a read-only replica) is not a
  failure: Redis answered, and lookups still work. It is :class:`RedisRefused`, counted.
* **Connected off the path.** :meth:`warm` also makes the first connection (a PING within
  the connect timeout), so no lookup's budget is spent on a TCP or TLS handshake.
* **One way to run a Lua script** (:class:`LinkScript`: L3's write, the budget's decision),
  and one latency block for status (:func:`latency_ms`: the link's calls, L3's lookups).
* **One message.** Each change of :attr:`state` is passed to the listener App gives, which
  tells the user once per problem (``runtime/notices.py``); ``crucible/status`` shows
  :meth:`status`: the state, calls, failures, timeouts and latency percentiles.

Keys are ``crucible:<namespace>:<kind>:<rest>`` (:meth:`key`): one namespace per team, set by
the user's own configuration (a workspace file can set none of ``cache.shared_*``).

The password is read from the environment variable ``cache.shared_password_env`` names, given
to the client only, and never logged or shown (the URL shown is masked).

Errors: :class:`RedisUnavailable` (a ``CrucibleError``) is the only exception :meth:`run`
raises for Redis' sake; every redis-py error, timeout and connection failure is translated to
it once, here. ``CancelledError`` from the caller passes through.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from crucible.config.settings import CacheSettings
from crucible.config.validate import mask_url
from crucible.errors import CrucibleError
from crucible.resilience.breaker import CircuitBreaker, Transition
from crucible.resilience.policy import BreakerPolicy
from crucible.runtime.samples import RecentSamples

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "LATENCY_SAMPLES",
    "LinkScript",
    "LinkState",
    "RedisLink",
    "RedisRefused",
    "RedisUnavailable",
    "TeamRedis",
    "latency_ms",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures in a row that open the circuit, and how long it stays open: a Redis that is down
# is not asked on every keystroke, and one that comes back is found within a few seconds.
_POLICY = BreakerPolicy(
    consecutive_failures=3,
    failure_rate=1.0,
    window_size=20,
    minimum_calls=20,
    cooldown=5.0,
    cooldown_multiplier=2.0,
    cooldown_cap=120.0,
    cooldown_jitter=0.1,
)
# How long to wait for a TCP or Unix connection: a budgeted call is cut sooner anyway; this
# bounds the background writes, whose budget is longer.
_CONNECT_TIMEOUT_S = 0.5
# Connections the pool may hold: lookups from several documents, writes and the budget.
_MAX_CONNECTIONS = 8
# The round trips whose percentiles status shows (:func:`latency_ms`): the link's, L3's.
LATENCY_SAMPLES = 256
# How much longer a call past its budget is left to finish before it is cancelled (and its
# connection dropped): a Redis paused or stuck for longer is down, not slow.
_HOLD_S = 2.0


class LinkState(StrEnum):
    OFF = "off"  # no cache.shared_url
    LOADING = "loading"  # the redis library is being imported (after start-up)
    MISSING = "missing"  # the library is not installed: pip install 'crucible-lsp[team]'
    UP = "up"  # answering
    DOWN = "down"  # the breaker is open: not asked until its cooldown ends
    CLOSED = "closed"


class RedisUnavailable(CrucibleError):
    """Redis was not asked (off, loading, missing, breaker open) or did not answer in time."""


class RedisRefused(RedisUnavailable):
    """Redis answered with an error reply (full: OOM; read-only replica; a script error): it
    is up, so the breaker counts a success, but the command did not happen."""


@dataclass(frozen=True, slots=True)
class TeamRedis:
    """What the link is connected to, as read from ``[cache]``."""

    url: str
    password_env: str
    namespace: str

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> TeamRedis:
        return cls(settings.shared_url, settings.shared_password_env, settings.shared_namespace)


StateListener = Callable[["LinkState", str], None]


class RedisLink:
    """The team's Redis for one configuration; lives on the event loop."""

    def __init__(
        self,
        target: TeamRedis,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._password = env.get(target.password_env) if target.password_env else None
        self._clock = clock
        self._breaker = CircuitBreaker("shared redis", _POLICY, clock=clock)
        self._breaker.add_listener(self._on_transition)
        self._state = LinkState.OFF if not target.url else LinkState.LOADING
        self._reason = ""
        self._client: Redis | None = None
        # redis-py's error replies (``ResponseError``), known once the library is imported.
        self._refusals: type[BaseException] | tuple[()] = ()
        self._listeners: list[StateListener] = []
        self._warming: asyncio.Future[None] | None = None
        self._latencies = RecentSamples(LATENCY_SAMPLES)
        self.calls = 0
        self.failures = 0
        self.timeouts = 0
        self.skipped = 0  # calls answered unavailable without asking (loading, missing, open)
        self.refused = 0  # error replies: Redis answered, the command did not happen
        self.held = 0  # calls left to finish past their budget (``_left_to_finish``)
        self._held: set[asyncio.Future[Any]] = set()

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def enabled(self) -> bool:
        """Configured: whatever its state, the link may come (back) up."""
        return bool(self.target.url) and self._state not in (LinkState.MISSING, LinkState.CLOSED)

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        """A session of the shared daemon that gave the link back hears no more of it."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def key(self, kind: str, *parts: str) -> str:
        return ":".join(("crucible", self.target.namespace, kind, *parts))

    async def warm(self) -> None:
        """Import the library off the event loop, make the client and its first connection.
        Called by App after start-up (by each session sharing the link in the daemon: they
        all wait for the one warming)."""
        if self._warming is None:
            self._warming = asyncio.ensure_future(self._warm())
        await asyncio.shield(self._warming)

    async def _warm(self) -> None:
        if self._state is not LinkState.LOADING:
            return
        try:
            module: Any = await asyncio.to_thread(importlib.import_module, "redis.asyncio")
        except ImportError:
            self._set_state(
                LinkState.MISSING,
                "the redis library is not installed: pip install 'crucible-lsp[team]'",
            )
            return
        if self._state is not LinkState.LOADING:  # closed while importing
            return
        self._client = module.Redis.from_url(
            self.target.url,
            password=self._password,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            max_connections=_MAX_CONNECTIONS,
            # No retries of its own: the caller's budget and the breaker decide.
            retry_on_timeout=False,
            decode_responses=False,
        )
        self._refusals = module.ResponseError
        self._set_state(LinkState.UP, "")
        # The first connection (a TCP or TLS handshake) is made here, off any request's
        # budget: a lookup allowed 5 ms would otherwise spend them connecting, and fail.
        try:
            await self.run(lambda client: client.ping(), budget_s=_CONNECT_TIMEOUT_S, what="ping")
        except RedisUnavailable:
            pass  # counted; the breaker decides when to try again

    async def run(
        self, operation: Callable[[Redis], Awaitable[T]], *, budget_s: float, what: str
    ) -> T:
        """``operation(client)`` within ``budget_s``, or :class:`RedisUnavailable`."""
        client = self._client
        if client is None or self._state in (LinkState.OFF, LinkState.CLOSED):
            self.skipped += 1
            raise RedisUnavailable(f"shared redis is {self._state}")
        admission = self._breaker.acquire()
        if admission is None:
            self.skipped += 1
            raise RedisUnavailable("shared redis is down (waiting before trying again)")
        self.calls += 1
        started = self._clock()
        # A task of its own, not ``asyncio.timeout``: that cancels the task current when it
        # was entered, and a request's first step runs in its handler's task before going on
        # in another (``scheduling/eager.py``): the handler would be cancelled.
        call = asyncio.ensure_future(_awaited(operation(client)))
        try:
            done, _ = await asyncio.wait((call,), timeout=budget_s)
        except asyncio.CancelledError:
            self._breaker.release(admission)
            self._left_to_finish(call)
            raise
        if not done:
            self.timeouts += 1
            self._failed(admission, f"{what}: no answer within {budget_s * 1000:.0f} ms")
            self._left_to_finish(call)
            late = TimeoutError(f"{what}: no answer within {budget_s * 1000:.0f} ms")
            raise RedisUnavailable(f"shared redis: {what} timed out") from late
        try:
            result = call.result()
        except self._refusals as exc:
            self.refused += 1
            self._breaker.record_success(admission)
            raise RedisRefused(f"shared redis refused {what}: {_describe(exc)}") from exc
        except Exception as exc:  # redis-py's errors, and garbage a command could not parse
            self._failed(admission, f"{what}: {_describe(exc)}")
            raise RedisUnavailable(f"shared redis: {what} failed") from exc
        self._latencies.add(self._clock() - started)
        self._breaker.record_success(admission)
        return result

    def _left_to_finish(self, call: asyncio.Future[Any]) -> None:
        """Past its budget (or its caller gone), a call is left to finish, for at most
        ``_HOLD_S`` more, rather than cancelled: a command cancelled mid-reply costs redis-py
        its connection, and making a new one (a TCP or TLS handshake) would spend the next
        lookup's budget, and the next. The pool's size bounds how many are left so."""
        if call.done():
            _retrieve(call)
            return
        self.held += 1
        self._held.add(call)
        cut = asyncio.get_running_loop().call_later(_HOLD_S, call.cancel)

        def finished(done: asyncio.Future[Any]) -> None:
            cut.cancel()
            self._held.discard(done)
            _retrieve(done)

        call.add_done_callback(finished)

    def status(self) -> dict[str, Any]:
        """``crucible/status``'s view: nothing secret (the URL is masked)."""
        return {
            "state": str(self._state),
            "reason": self._reason,
            "url": mask_url(self.target.url),
            "namespace": self.target.namespace,
            "calls": self.calls,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "skipped": self.skipped,
            "refused": self.refused,
            "held": self.held,
            "latency_ms": latency_ms(self._latencies),
        }

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._state = LinkState.CLOSED
        held, self._held = list(self._held), set()
        for call in held:
            call.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        if client is not None:
            try:
                await client.aclose()
            except Exception as exc:  # closing a broken connection may fail; nothing to do
                log.debug("closing the shared redis client: %s", _describe(exc))

    def _failed(self, admission: Any, reason: str) -> None:
        self.failures += 1
        self._reason = reason
        log.debug("shared redis: %s", reason)
        self._breaker.record_failure(admission, reason)

    def _on_transition(self, transition: Transition) -> None:
        if transition.to_state.value == "open":
            self._set_state(LinkState.DOWN, transition.reason)
        elif transition.to_state.value == "closed" and self._client is not None:
            self._set_state(LinkState.UP, "")

    def _set_state(self, state: LinkState, reason: str) -> None:
        if state is self._state:
            return
        self._state, self._reason = state, reason
        if state is LinkState.DOWN or state is LinkState.MISSING:
            log.warning("shared redis at %s is %s: %s", mask_url(self.target.url), state, reason)
        else:
            log.info("shared redis at %s is %s", mask_url(self.target.url), state)
        for listener in self._listeners:
            listener(state, reason)


class LinkScript:
    """One Lua script run through a :class:`RedisLink`: the one way Crucible runs its scripts
    (L3's write with its size budget, ``cache/team.py``; the team budget's decision,
    ``team/budget.py``).

    redis-py's ``Script`` does the running: EVALSHA, and after NOSCRIPT (a Redis restarted or
    its scripts flushed) SCRIPT LOAD and EVALSHA again. It is registered once, on the first
    client the link gives, and each call names the client it runs on, so it runs on the
    link's client whichever that is. :meth:`load` sends the script ahead (SCRIPT LOAD) off
    any request's path, for a caller whose first call has a budget of a few ms: without it,
    that first call would be three round trips (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    """

    def __init__(self, link: RedisLink, source: str) -> None:
        self.link = link
        self.source = source
        self._script: Any = None  # redis-py's AsyncScript, once registered

    def _registered(self, client: Redis) -> Any:
        if self._script is None:
            self._script = client.register_script(self.source)
        return self._script

    async def load(self, *, budget_s: float, what: str) -> None:
        """SCRIPT LOAD within ``budget_s`` (which also opens a connection, when none is)."""

        async def load(client: Redis) -> None:
            self._registered(client)
            await client.script_load(self.source)

        await self.link.run(load, budget_s=budget_s, what=what)

    async def run(
        self,
        keys: list[str],
        args: list[Any],
        read: Callable[[Any], T],
        *,
        budget_s: float,
        what: str,
    ) -> T:
        """The script's reply for ``keys`` and ``args`` as ``read`` makes it, within
        ``budget_s`` (``RedisLink.run``: :class:`RedisUnavailable` otherwise). ``read`` runs
        within the call, so a reply it cannot read is the link's failure, as any garbage."""

        async def call(client: Redis) -> T:
            return read(await self._registered(client)(keys=keys, args=args, client=client))

        return await self.link.run(call, budget_s=budget_s, what=what)


def latency_ms(round_trips: RecentSamples) -> dict[str, float | None]:
    """``crucible/status``'s ``latency_ms`` of Redis round trips (seconds in ``round_trips``):
    the link's every call, and L3's lookups (``cache/team.py``). The p50 and p99 in ms to the
    µs (a local Redis answers in tens of µs), None before the first round trip."""
    p50, p99 = round_trips.percentile(0.5), round_trips.percentile(0.99)
    return {
        "p50": None if p50 is None else round(p50 * 1000, 3),
        "p99": None if p99 is None else round(p99 * 1000, 3),
    }


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _retrieve(call: asyncio.Future[Any]) -> None:
    """Mark a left call's outcome as seen, so asyncio logs no "exception never retrieved"."""
    if not call.cancelled():
        call.exception()


def _describe(exc: BaseException) -> str:
    """An error in one line, without the password (redis-py's messages carry host and port
    at most, but an AUTH error echoes nothing of ours either way)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
