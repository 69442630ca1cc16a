"""StatusFeed: the overall state an editor's status bar shows, pushed on change, rate-limited.

The payload is the ``crucible/didChangeStatus`` notification's (the wire contract)::

    {"state": "ready" | "busy" | "degraded" | "offline" | "disabled",
     "message": str,
     "providers": [{"name": str, "state": "ready" | "slow" | "failing" | "offline" | "disabled"}]}

How the state is decided (:func:`overall`), first match wins:

    disabled   inline completion is off, or no provider has the completion role
    offline    no completion provider is ready or slow (each is failing, offline or disabled)
    busy       a completion the user waits for is being fetched from a provider
    degraded   some completion provider is failing, offline or disabled; another serves
    ready      otherwise (a slow provider is still ready: its message says it is slow)

Rate limit: at most one notification per ``min_interval`` (100 ms). A change inside the interval
is sent when it ends, as the state *then*: a fetch that starts and ends within it is never seen
as busy, so a fast provider does not make the status bar flicker, and a stream never sends one
per chunk. Nothing is sent while the state is unchanged.

Errors: none raised; ``send`` must not raise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crucible.resilience.member import Health

_UNHEALTHY = (Health.FAILING, Health.OFFLINE, Health.DISABLED)


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    name: str
    health: Health
    completion: bool  # serves inline completion (only those decide the state)


def overall(
    *,
    enabled: bool,
    providers: Sequence[ProviderHealth],
    busy: bool,
    problems: Sequence[str],
) -> dict[str, Any]:
    """The ``crucible/didChangeStatus`` payload for this moment."""
    listed = [{"name": p.name, "state": str(p.health)} for p in providers]
    serving = [p for p in providers if p.completion]
    healthy = [p for p in serving if p.health not in _UNHEALTHY]
    if not enabled or not serving:
        why = "inline completion is off" if not enabled else "no provider has the completion role"
        state, message = "disabled", f"Crucible: {why}"
    elif not healthy:
        state = "offline"
        message = problems[-1] if problems else _summary("no provider is answering", serving)
    elif busy:
        state, message = "busy", "Crucible: fetching a suggestion"
    elif len(healthy) < len(serving):
        state = "degraded"
        message = problems[-1] if problems else _summary("some providers are failing", serving)
    else:
        state, message = "ready", "Crucible: ready"
        slow = [p.name for p in healthy if p.health is Health.SLOW]
        if slow:
            message += f" ({', '.join(slow)} slow: first tokens take seconds)"
    return {"state": state, "message": message, "providers": listed}


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
    ) -> None:
        self._compute = compute
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send = None

    def _flush(self) -> None:
        self._timer = None
        if self._send is None:
            return
        payload = self._compute()
        if payload == self._last:
            return
        self._last = payload
        self._last_at = self._clock()
        self._send(payload)
