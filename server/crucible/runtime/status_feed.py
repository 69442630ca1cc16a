"""StatusFeed: the overall state an editor's status bar shows, pushed on change, rate-limited.

The payload is the ``crucible/didChangeStatus`` notification's (the wire contract)::

    {"state": "ready" | "busy" | "degraded" | "offline" | "disabled",
     "message": str,
     "providers": [{"name": str, "state": "ready" | "slow" | "failing" | "offline"
                                          | "rate_limited" | "disabled"}]}

How the state is decided (:func:`overall`), first match wins:

    disabled   inline completion is off, or no provider has the completion role
    offline    no completion provider is ready or slow (each is failing, offline, rate limited
               or disabled)
    busy       a completion the user waits for is being fetched from a provider
    degraded   some completion provider is failing, offline, rate limited or disabled; another
               serves
    ready      otherwise (a slow provider is still ready: its message says it is slow)

A rate-limited provider (parked until a rate limit resets: nothing is wrong with it) has words
of its own: when it is the only reason for ``offline`` or ``degraded``, the message is
"Crucible: waiting for NAME's rate limit (resets at 14:32:05)", plus who serves meanwhile,
rather than a problem's or "some providers are failing". The reset is a wall-clock time, not
"in 42 s", so the words stay true while the editor shows them without a notification a second.

Rate limit: at most one notification per ``min_interval`` (100 ms). A change inside the interval
is sent when it ends, as the state *then*: a fetch that starts and ends within it is never seen
as busy, so a fast provider does not make the status bar flicker, and a stream never sends one
per chunk. Nothing is sent while the state is unchanged. A state that time alone will change
(a rate limit resetting) is looked at again then (``wake_in``), so the status bar does not keep
saying "waiting" until the next request.

Errors: none raised; ``send`` must not raise.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crucible.resilience.member import Health

_WAKE_MARGIN_S = 0.05  # after a rate limit's reset, when the status is looked at again
_UNHEALTHY = (Health.FAILING, Health.OFFLINE, Health.RATE_LIMITED, Health.DISABLED)


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    name: str
    health: Health
    completion: bool  # serves inline completion (only those decide the state)
    resets_in_s: float = 0.0  # rate limited: seconds until it is asked again


def overall(
    *,
    enabled: bool,
    providers: Sequence[ProviderHealth],
    busy: bool,
    problems: Sequence[str],
    wall_now: float | None = None,
) -> dict[str, Any]:
    """The ``crucible/didChangeStatus`` payload for this moment (``wall_now``: the time of
    day a rate limit's reset is counted from, ``time.time()`` unless given)."""
    listed = [{"name": p.name, "state": str(p.health)} for p in providers]
    serving = [p for p in providers if p.completion]
    healthy = [p for p in serving if p.health not in _UNHEALTHY]
    # Providers that only wait for a rate limit's reset, when nothing else is wrong.
    unserving = [p for p in serving if p.health in _UNHEALTHY]
    waiting = all(p.health is Health.RATE_LIMITED for p in unserving)
    if not enabled or not serving:
        why = "inline completion is off" if not enabled else "no provider has the completion role"
        state, message = "disabled", f"Crucible: {why}"
    elif not healthy:
        state = "offline"
        if waiting:
            message = _waiting(unserving, [], wall_now)
        else:
            message = problems[-1] if problems else _summary("no provider is answering", serving)
    elif busy:
        state, message = "busy", "Crucible: fetching a suggestion"
    elif unserving:
        state = "degraded"
        if waiting:
            message = _waiting(unserving, healthy, wall_now)
        else:
            message = problems[-1] if problems else _summary("some providers are failing", serving)
    else:
        state, message = "ready", "Crucible: ready"
        slow = [p.name for p in healthy if p.health is Health.SLOW]
        if slow:
            message += f" ({', '.join(slow)} slow: first tokens take seconds)"
    return {"state": state, "message": message, "providers": listed}


def _waiting(
    limited: Sequence[ProviderHealth], serving: Sequence[ProviderHealth], wall_now: float | None
) -> str:
    """``Crucible: waiting for a's rate limit (resets at 14:32:05); b serves meanwhile``."""
    now = time.time() if wall_now is None else wall_now
    waits = ", ".join(
        f"{p.name}'s rate limit (resets at {_clock_time(now + p.resets_in_s)})" for p in limited
    )
    message = f"Crucible: waiting for {waits}"
    if serving:
        names = ", ".join(p.name for p in serving)
        message += f"; {names} {'serves' if len(serving) == 1 else 'serve'} meanwhile"
    return message


def _clock_time(at: float) -> str:
    """The local time of day of ``at`` (seconds since the epoch), rounded up to the second."""
    return time.strftime("%H:%M:%S", time.localtime(math.ceil(at)))


def _summary(what: str, providers: Sequence[ProviderHealth]) -> str:
    states = ", ".join(f"{p.name} {p.health}" for p in providers)
    return f"Crucible: {what} ({states}). (crucible-lsp doctor for details)"


class StatusFeed:
    """Sends the payload ``compute`` gives whenever it changes, at most once per interval."""

    def __init__(
        self,
        compute: Callable[[], dict[str, Any]],
        *,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        wake_in: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._compute = compute
        # Seconds until time alone changes the state (a rate limit resets), or None; asked
        # right after ``compute``, so it may answer from what ``compute`` read.
        self._wake_in = wake_in
        self._wake: asyncio.TimerHandle | None = None
        self._min_interval = min_interval
        self._clock = clock
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one connect() was called on
        self._last: dict[str, Any] | None = None
        self._last_at = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    @property
    def last(self) -> dict[str, Any] | None:
        """What the editor was last told (None before it was connected)."""
        return self._last

    def connect(self, send: Callable[[dict[str, Any]], None]) -> None:
        """The editor is ready for notifications: tell it the state now. Called on the event
        loop that serves, where a deferred send will run."""
        self._loop = asyncio.get_running_loop()
        self._send = send
        self._last = None
        self._flush()

    def changed(self) -> None:
        """Something the state depends on changed: send if the state did, when allowed."""
        if self._send is None or self._loop is None or self._timer is not None:
            return  # not connected yet, or a send is already due (it reads the state then)
        wait = self._last_at + self._min_interval - self._clock()
        if wait <= 0:
            self._flush()
            return
        self._timer = self._loop.call_later(wait, self._flush)

    def close(self) -> None:
        for handle in (self._timer, self._wake):
            if handle is not None:
                handle.cancel()
        self._timer = self._wake = None
        self._send = None

    def _flush(self) -> None:
        self._timer = None
        if self._send is None:
            return
        payload = self._compute()
        self._schedule_wake()
        if payload == self._last:
            return
        self._last = payload
        self._last_at = self._clock()
        self._send(payload)

    def _schedule_wake(self) -> None:
        """Look again when time alone changes the state; a little after, since a loop's
        timer may fire a clock tick early."""
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        delay = self._wake_in()
        if delay is not None and self._loop is not None:
            self._wake = self._loop.call_later(max(0.0, delay) + _WAKE_MARGIN_S, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self.changed()
