"""HealthProbes: bring a provider whose circuit is open back without spending user requests.

When a member's circuit opens, an owned task sleeps out the cooldown and then runs
``provider.probe()`` as the half-open trial (reliability RES-01/RES-02: one probe per open window):

- probe failed (or no answer within ``probe_timeout``): the circuit re-opens with a longer
  cooldown and the loop waits for the next window, so a long outage costs one cheap request per
  window and no user request;
- probe ok: the trial slot is released and the circuit stays half-open; the next real request
  is the trial that closes it. A probe (listing models) proves the endpoint answers and knows
  the model, not that generation works, so it does not close the circuit by itself.

If a real request takes the trial first, its verdict decides and the loop ends. Tasks are
cancelled by :meth:`HealthProbes.aclose`. Errors from ``probe()`` are reported as a failed
probe; ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import logging

from crucible.resilience.breaker import BreakerState
from crucible.resilience.clock import Clock
from crucible.resilience.member import Member

log = logging.getLogger(__name__)


class HealthProbes:
    def __init__(self, clock: Clock, timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout
        self._closed = False
        self._loops: dict[str, asyncio.Task[None]] = {}  # by member name: one loop each

    def watch(self, member: Member) -> None:
        """Start probing ``member`` (its circuit just opened) unless a probe loop already runs."""
        running = self._loops.get(member.name)
        if self._closed or (running is not None and not running.done()):
            return  # a running loop handles every re-open, including its own
        # A circuit opens on a request's failure, and requests run on the loop.
        self._loops[member.name] = asyncio.get_running_loop().create_task(
            self._loop(member), name=f"crucible-probe-{member.name}"
        )

    async def run(self, member: Member) -> tuple[bool, str]:
        """One probe, bounded by the timeout: (ok, detail)."""
        task = asyncio.get_running_loop().create_task(member.provider.probe())
        try:
            await self._clock.wait([task], self._clock.now() + self._timeout)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        if task.cancelled():
            return False, f"no answer within {self._timeout:g} s"
        try:
            result = task.result()
        except Exception as exc:  # a health check reports, it does not crash the loop
            return False, type(exc).__name__
        return result.ok, result.detail

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._loops.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _loop(self, member: Member) -> None:
        breaker = member.breaker
        while breaker.state is BreakerState.OPEN:
            await self._clock.sleep(breaker.cooldown_remaining())
            admission = breaker.acquire()
            if admission is None:
                continue  # woke a hair early, or a request took the trial (then the loop ends)
            try:
                ok, detail = await self.run(member)
            except BaseException:
                breaker.release(admission)  # cancelled (aclose): the trial goes back unused
                raise
            if ok:
                breaker.release(admission)
                log.info("provider %s: probe ok; the next request is the trial", member.name)
                return
            log.debug("provider %s: probe failed: %s", member.name, detail)
            breaker.record_failure(admission, "probe failed")
