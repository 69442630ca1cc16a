"""TieredCache: the completion answers the server already has, by key and by type-through.

Three parts behind one face, looked up in this order by the completion service:

1. type-through (``typethrough.py``): the rest of a recent suggestion the user is typing,
2. L1 (``memory.py``): answers by key, in memory, bounded by bytes, with a TTL,
3. L2 (``disk.py``): answers by key in a sqlite file shared by the user's server processes and
   kept across restarts; an L2 hit is promoted to L1;
4. L3 (``team.py``, when ``cache.shared_url`` is set): answers by key in the team's Redis,
   asked within ``cache.shared_timeout_ms`` and skipped past it; a hit is copied into L1 and
   L2. Completion answers only (hover's text answers stay on the user's machine).

Only complete, post-processed answers are stored (the service calls ``store`` after a stream
ended normally and passed the post-processing); errors, timeouts, cancellations and partial
streams never reach it. An answer with empty text is a real answer ("nothing worth suggesting
here") and is cached like any other, so the provider is not asked again at that spot.

Hits and misses are counted here, once, where ``crucible/status`` reads them (``stats``): an
L1 hit, an L2 hit (a row that decodes into an answer), an L3 hit, a miss (a ``lookup`` no level
could answer; ``in_memory`` alone counts no miss), and type-through hits (``TypeThrough.hits``).
The levels count only what is theirs (entries, bytes, evictions, errors; L3 its own lookups,
writes, garbage and latency).

L3 belongs to the team, not to this user: ``clear`` (``crucible.clearCache``) leaves it, and
so does the memory supervisor (it holds nothing in this process but a queue of 256 writes).

The same two levels also keep text answers under their own keys (``cache/keys.py``'s
``text_key``, namespaced, so never a completion's): ``store_text`` / ``lookup_text``, used by
hover explanations. They share L1's byte budget and L2's file; their hits and misses are the
caller's to count, so the completion counts above stay about completions.

Errors: none raised to callers. L2 failures are handled (and counted) inside ``DiskCache``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from crucible.cache.disk import DiskCache
from crucible.cache.memory import ENTRY_OVERHEAD, MemoryCache
from crucible.cache.team import TeamCache
from crucible.cache.typethrough import TypeThrough
from crucible.completion.suggestion import Suggestion

# L1 evictions per event-loop turn while shrinking: ~7.5 ms each on this machine; the last step
# also rebuilds the tables for what is left (~24 ms at 15,000 entries).
_SHRINK_STEP = 2048

logger = logging.getLogger(__name__)


def _size_of(key: str, answer: Suggestion | str) -> int:
    """What an L1 entry holds: its key and answer objects (a text answer is its string; a
    ``Suggestion`` is its object, 48 bytes with slots, and its text) and L1's own per-entry
    overhead. A text shared with a type-through anchor is counted by both: an over-estimate,
    never an under-estimate."""
    own = sys.getsizeof(key) + ENTRY_OVERHEAD
    if isinstance(answer, str):
        return own + sys.getsizeof(answer)
    return own + sys.getsizeof(answer) + sys.getsizeof(answer.text)


class TieredCache:
    """Type-through, then memory, then disk; see the module docstring."""

    def __init__(
        self,
        *,
        memory_bytes: int,
        ttl_s: float,
        disk: DiskCache | None,
        team: TeamCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Completion answers (``Suggestion``) and text answers (``str``) under disjoint keys.
        self._memory: MemoryCache[Suggestion | str] = MemoryCache(
            memory_bytes, ttl_s, size_of=_size_of, clock=clock
        )
        self._typed: TypeThrough[Suggestion] = TypeThrough(ttl_s=ttl_s, clock=clock)
        self._disk = disk
        self.team = team  # L3; its link is App's (one per team Redis), not closed here
        self._opening: asyncio.Task[None] | None = None
        self._hits = {"l1": 0, "l2": 0, "l3": 0}
        self._misses = 0

    def start(self) -> None:
        """Open the disk level in the background (needs a running loop). Lookups made
        meanwhile wait for it: a request right after start-up still finds yesterday's answer."""
        if self._disk is not None and self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(
                self._disk.open(), name="open the disk cache"
            )

    async def open(self) -> None:
        """Open the disk level and wait for it."""
        self.start()
        await self._disk_ready()

    def background_tasks(self) -> int:
        """Background work the levels run that no request waits for: L3's writer."""
        return self.team.background_tasks() if self.team is not None else 0

    async def aclose(self) -> None:
        if self.team is not None:
            await self.team.aclose()
        if self._disk is not None:
            await self._disk_ready()
            await self._disk.close()

    async def _disk_ready(self) -> None:
        if self._opening is not None and not self._opening.done():
            # Shielded: one lookup being cancelled must not cancel the opening for all.
            await asyncio.shield(self._opening)

    # -- lookups --------------------------------------------------------------------------

    def type_through(
        self, document: str, text: str, offset: int, after: str, base: int = 0
    ) -> Suggestion | None:
        """The rest of a recent suggestion that the document now types through (``text``
        holds it from its offset ``base``: ``TypeThrough.find``)."""
        found = self._typed.find(document, text, offset, after, base)
        if found is None:
            return None
        rest = found.value.text[found.typed :]
        return Suggestion(rest, found.value.replace_suffix + found.closer)

    def in_memory(self, key: str) -> Suggestion | None:
        """An L1 hit (counted) or None (not counted: the caller may go on to ``lookup``)."""
        answer = self._memory.get(key)
        if not isinstance(answer, Suggestion):
            return None
        self._hits["l1"] += 1
        return answer

    async def lookup(self, key: str) -> Suggestion | None:
        """L1, then L2 (promoted to L1 on a hit), then L3 within its budget (copied into L1
        and L2 on a hit); a miss of every level is counted."""
        answer = self.in_memory(key)
        if answer is not None:
            return answer
        if self._disk is not None:
            await self._disk_ready()
            stored = await self._disk.get(key)
            answer = Suggestion.decode(stored) if stored is not None else None
            if answer is not None:
                self._hits["l2"] += 1
                self._memory.put(key, answer)
                return answer
        if self.team is not None:
            answer = await self.team.get(key)
            if answer is not None:
                self._hits["l3"] += 1
                self._memory.put(key, answer)
                if self._disk is not None:
                    self._disk.put(key, answer.encode())
                return answer
        self._misses += 1
        return None

    async def lookup_text(self, key: str) -> str | None:
        """A text answer stored under ``key`` (a ``text_key``): L1, then L2 (promoted)."""
        answer = self._memory.get(key)
        if isinstance(answer, str):
            return answer
        if self._disk is None:
            return None
        await self._disk_ready()
        stored = await self._disk.get(key)
        if stored is not None:
            self._memory.put(key, stored)
        return stored

    def text_in_memory(self, key: str) -> str | None:
        """A text answer in L1, without waiting for the disk."""
        answer = self._memory.get(key)
        return answer if isinstance(answer, str) else None

    # -- updates --------------------------------------------------------------------------

    def store_text(self, key: str, text: str) -> None:
        """A complete text answer under ``key`` (a ``text_key``): L1 now, L2 in the next
        write batch."""
        self._memory.put(key, text)
        if self._disk is not None:
            self._disk.put(key, text)

    def store(self, key: str, answer: Suggestion) -> None:
        """A complete, post-processed answer: into L1 now, into L2 in the next write batch,
        into L3 by its background writer."""
        self._memory.put(key, answer)
        if self._disk is not None:
            self._disk.put(key, answer.encode())
        if self.team is not None:
            self.team.put(key, answer)

    def shown(
        self, document: str, offset: int, before: str, after: str, answer: Suggestion
    ) -> None:
        """``answer`` was suggested at the document offset ``offset`` with ``before``/
        ``after`` as the model's window: typing it through is answered from here."""
        self._typed.record(document, offset, before, after, answer.text, answer)

    def forget(self, document: str) -> None:
        self._typed.forget(document)

    async def clear(self) -> dict[str, int]:
        """Empty this user's levels; returns how many entries each had. L3 is the team's and
        is kept (``l3_kept``: 1 when there is one)."""
        cleared = {"l1": self._memory.clear(), "type_through": self._typed.clear(), "l2": 0}
        if self._disk is not None:
            await self._disk_ready()
            cleared["l2"] = await self._disk.clear()
        if self.team is not None:
            cleared["l3_kept"] = 1
        logger.info("cache cleared: %s", cleared)
        return cleared

    # -- runtime budget (the memory supervisor's handle) ------------------------------------

    def clear_memory(self) -> int:
        """Empty L1 only (L2 and type-through stay); returns how many entries it had."""
        dropped = self._memory.clear()
        logger.info("L1 cleared: %d entries", dropped)
        return dropped

    def memory_bytes(self) -> dict[str, int]:
        """What the in-memory parts hold, in bytes, each by its own estimate (O(1)):
        ``l1`` is what its budget counts; ``type_through`` its anchors. L2 is on disk."""
        return {"l1": self._memory.memory_bytes(), "type_through": self._typed.memory_bytes()}

    def set_memory_budget(self, budget_bytes: int) -> None:
        """Shrink (or grow, up to ``memory_mb``) what L1 may use now; evicts at once."""
        self._memory.set_budget(budget_bytes)

    def shrink_memory(self, budget_bytes: int) -> Awaitable[None] | None:
        """``set_memory_budget`` without stalling the event loop: evicts ``_SHRINK_STEP``
        entries now, and returns the rest of the work (None when there is none) to await,
        which evicts a step per loop turn until L1 fits (or a later budget already holds).
        Evicting 43,000 entries at once (a full 32 MB L1 down to a quarter) stalled the loop
        for 232 ms; in steps, for 31 ms at most."""
        if self._memory.set_budget(budget_bytes, most=_SHRINK_STEP):
            return None
        return self._shrink_in_steps()

    async def _shrink_in_steps(self) -> None:
        fits = False
        while not fits:
            await asyncio.sleep(0)  # a turn of the loop for everything else between steps
            fits = self._memory.fit_step(_SHRINK_STEP)

    def restore_memory_budget(self) -> None:
        self._memory.restore_budget()

    # -- status -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        memory = self._memory.stats()
        levels: dict[str, Any] = {
            "l1": {
                "hits": self._hits["l1"],
                "entries": memory.entries,
                "bytes": memory.bytes,
                "budget_bytes": memory.budget_bytes,
                "max_bytes": memory.max_bytes,
                "evictions": memory.evictions,
                "expirations": memory.expirations,
            },
            "l2": {"enabled": False, "hits": 0, "entries": 0, "bytes": 0, "evictions": 0},
        }
        if self._disk is not None:
            disk = self._disk.stats()
            levels["l2"] = {
                "enabled": disk.enabled,
                "hits": self._hits["l2"],
                "entries": disk.entries,
                "bytes": disk.bytes,
                "evictions": disk.evictions,
                "path": disk.path,
                "errors": disk.errors,
                "recoveries": disk.recoveries,
            }
        levels["l3"] = (
            {**self.team.stats(), "hits": self._hits["l3"]}
            if self.team is not None
            else {"enabled": False, "state": "off", "hits": 0}
        )
        return {
            "enabled": True,
            "hits": self._hits["l1"] + self._hits["l2"] + self._hits["l3"] + self._typed.hits,
            "misses": self._misses,
            "type_through_hits": self._typed.hits,
            "type_through_anchors": len(self._typed),
            "levels": levels,
        }
