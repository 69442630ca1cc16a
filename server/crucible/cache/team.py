"""TeamCache (L3): answers a team's Crucibles share through the team's Redis (or Valkey).

Looked up after L1 and L2 miss and before the provider (``tiered.py``), within
``cache.shared_timeout_ms``: past it the request goes on to the provider, and the lookup is
left to finish in the background (``RedisLink.run``: cancelled, it would cost its connection).
A hit is copied into L1 and L2 by the tiered cache. Writes never wait: ``put`` queues the
answer (a bounded queue: when it is full the answer is dropped and counted), and one background
task writes the queue, entry by entry. That writer is owned (``runtime/tasks.py``: a failure is
logged, never lost), counted among the live background work (``background_tasks``, which
``crucible/status`` ``memory.background_tasks`` adds up), and cancelled and awaited by
``aclose``.

**What is stored**, per answer, under ``crucible:<namespace>:l3:<cache key>``: the cache key is
a BLAKE2b digest of every input of the answer (``keys.py``: the providers' identities, the
prompt's windows, the relative path, the neighbours, the sampling, the stop rule), so the key
says nothing of the code or the path; the provider identity is inside that digest, so two
teams' models never answer for each other. The value is the post-processed suggestion (the
text the model wrote and how many characters after the cursor it replaces) behind a header:

    magic b"CRL3" | format version (1 byte) | payload length (4) | BLAKE2b-8 of the payload (8)
    | BLAKE2b-16 of the Redis key it was written under (16) | payload (Suggestion.encode, UTF-8)

A read checks all five; anything else (another format version, another key's value copied
here, a truncated or random value) is ``garbage``: counted, never served, and the provider
is asked. Nothing of the document is stored except what the model suggested for it.

**The size budget** (``shared_max_mb``) is Crucible's own, kept by one Lua script run on every
write (atomic, one round trip): the answer is SET with ``PX shared_ttl_s``, its key added to an
index (a sorted set by write time, ``l3-index``) with its size (a hash, ``l3-sizes``) and a
running byte count (``l3-bytes``); then index entries past the TTL leave the count, and the
oldest entries are deleted until the count is within the budget. A Lua script rather than
MULTI: the trimming reads (what is oldest, how large) and decides in the same step, which a
transaction can only do with WATCH and retries, and fifty writers would retry each other. The
count is of the bytes Crucible writes (value, key, index member twice, and 64 bytes each for
Redis' own bookkeeping), an estimate of what Redis holds; the operator's ``maxmemory`` policy
is left as it is. One Redis (or a primary and its replicas), not Redis Cluster: the script
deletes keys it computes.

Errors: none reaches a caller. Redis unavailable, slow, refusing a write (full: OOM) or answering
garbage is counted here (``stats``) and the request goes on with L1/L2 and the provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from crucible.completion.suggestion import Suggestion
from crucible.runtime.samples import RecentSamples
from crucible.runtime.tasks import BackgroundTasks
from crucible.team.redis_link import (
    LATENCY_SAMPLES,
    LinkScript,
    RedisLink,
    RedisUnavailable,
    latency_ms,
)

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "TeamCache", "pack", "unpack"]

MAGIC = b"CRL3"
FORMAT_VERSION = 1
_HEADER = struct.Struct("!4sBI8s16s")  # magic, version, length, checksum, key digest
_QUEUE = 256  # answers waiting to be written; a Redis this far behind loses the newest
_WRITE_BUDGET_S = 0.5  # a write waits for no one, but a stuck one must end
_ENTRY_OVERHEAD = 64  # what Redis keeps per entry besides the bytes Crucible sends (estimate)

# KEYS: the value, the index (member -> write time, ms), the sizes (member -> bytes), the
# byte count. ARGV: value, ttl (ms), budget (bytes), member, size, prefix of value keys.
# Returns how many entries were trimmed to stay within the budget.
_PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, budget, size = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local member, prefix = ARGV[4], ARGV[6]
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[3], KEYS[4]) end
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
local old = redis.call('HGET', KEYS[3], member)
if old then total = total - tonumber(old) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, member)
redis.call('HSET', KEYS[3], member, size)
total = total + size
local function drop(gone)
  total = total - tonumber(redis.call('HGET', KEYS[3], gone) or '0')
  redis.call('HDEL', KEYS[3], gone)
  redis.call('DEL', prefix .. gone)
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 256)) do
  redis.call('ZREM', KEYS[2], gone)
  drop(gone)
end
local trimmed = 0
while total > budget do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then total = 0 break end
  drop(oldest[1])
  trimmed = trimmed + 1
end
if total < 0 then total = 0 end
redis.call('SET', KEYS[4], total, 'PX', ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return trimmed
"""


def _key_digest(redis_key: str) -> bytes:
    return hashlib.blake2b(redis_key.encode(), digest_size=16).digest()


def pack(redis_key: str, answer: Suggestion) -> bytes:
    """The stored form of ``answer`` under ``redis_key`` (the module docstring's header)."""
    payload = answer.encode().encode("utf-8", "surrogatepass")
    checksum = hashlib.blake2b(payload, digest_size=8).digest()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), checksum, _key_digest(redis_key))
    return header + payload


def unpack(redis_key: str, stored: bytes) -> Suggestion | None:
    """The answer ``stored`` holds, or None when it is not one this version wrote for
    ``redis_key``."""
    if len(stored) < _HEADER.size:
        return None
    magic, version, length, checksum, digest = _HEADER.unpack_from(stored)
    payload = stored[_HEADER.size :]
    if (
        magic != MAGIC
        or version != FORMAT_VERSION
        or length != len(payload)
        or hashlib.blake2b(payload, digest_size=8).digest() != checksum
        or digest != _key_digest(redis_key)
    ):
        return None
    try:
        return Suggestion.decode(payload.decode("utf-8", "surrogatepass"))
    except UnicodeDecodeError:
        return None


class TeamCache:
    """L3 over one ``RedisLink``; see the module docstring. Lives on the event loop."""

    def __init__(
        self,
        link: RedisLink,
        *,
        timeout_s: float,
        ttl_s: float,
        max_bytes: int,
        queue: int = _QUEUE,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.link = link
        self._timeout_s = timeout_s
        self._ttl_ms = int(ttl_s * 1000)
        self._max_bytes = max_bytes
        self._clock = clock
        self._queue: deque[tuple[str, Suggestion]] = deque()
        self._queue_size = queue
        self._writer: asyncio.Task[None] | None = None
        self._tasks: BackgroundTasks | None = None  # made on the loop of the first write
        # Not loaded ahead: a write waits for no request, and its first call may take the
        # round trips of loading it (``LinkScript``).
        self._put = LinkScript(link, _PUT)
        self._latencies = RecentSamples(LATENCY_SAMPLES)
        self._prefix = link.key("l3", "")
        self._index_keys = [link.key("l3-index"), link.key("l3-sizes"), link.key("l3-bytes")]
        self.counts = dict.fromkeys(
            (
                "hits",
                "misses",
                "garbage",
                "timeouts",
                "skipped",
                "errors",
                "writes",
                "write_errors",
                "dropped_writes",
                "trimmed",
            ),
            0,
        )

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    # -- lookups ------------------------------------------------------------------------------

    async def get(self, key: str) -> Suggestion | None:
        """The team's answer for ``key``, or None (a miss, garbage, Redis unavailable or
        slower than the budget: each counted)."""
        if not self.link.enabled:
            return None
        redis_key = self.redis_key(key)
        started = self._clock()
        try:
            stored = await self.link.run(
                lambda client: client.get(redis_key), budget_s=self._timeout_s, what="L3 lookup"
            )
        except RedisUnavailable as exc:
            if isinstance(exc.__cause__, TimeoutError):
                self.counts["timeouts"] += 1
                self._latencies.add(self._clock() - started)
            elif exc.__cause__ is None:
                self.counts["skipped"] += 1  # not asked: loading, down, closed
            else:
                self.counts["errors"] += 1
            return None
        self._latencies.add(self._clock() - started)
        if stored is None:
            self.counts["misses"] += 1
            return None
        answer = unpack(redis_key, stored) if isinstance(stored, bytes) else None
        if answer is None:
            self.counts["garbage"] += 1
            logger.debug("L3: ignored a value that is not this version's answer for its key")
            return None
        self.counts["hits"] += 1
        return answer

    # -- writes -------------------------------------------------------------------------------

    def put(self, key: str, answer: Suggestion) -> None:
        """Queue ``answer`` for writing; never waits. A full queue drops it (counted)."""
        if not self.link.enabled:
            return
        if len(self._queue) >= self._queue_size:
            self.counts["dropped_writes"] += 1
            return
        self._queue.append((key, answer))
        if self._writer is None or self._writer.done():
            if self._tasks is None:
                self._tasks = BackgroundTasks(asyncio.get_running_loop())
            self._writer = self._tasks.spawn(self._write_queue(), name="write to the team cache")

    def background_tasks(self) -> int:
        """Tasks running work no request waits for: the writer, while it writes."""
        return len(self._tasks) if self._tasks is not None else 0

    async def flush(self) -> None:
        """Wait until everything queued so far was written (or failed)."""
        while self._writer is not None and not self._writer.done():
            # Waited for, not awaited: the writer's failure is its owner's to log, and a
            # caller cancelled here leaves the writer running.
            await asyncio.wait([self._writer])

    async def _write_queue(self) -> None:
        while self._queue:
            key, answer = self._queue.popleft()
            redis_key = self.redis_key(key)
            value = pack(redis_key, answer)
            size = len(value) + len(redis_key) + 2 * len(key) + _ENTRY_OVERHEAD
            if size > self._max_bytes:
                self.counts["dropped_writes"] += 1
                continue
            keys = [redis_key, *self._index_keys]
            args = [value, self._ttl_ms, self._max_bytes, key, size, self._prefix]
            try:
                trimmed = await self._put.run(
                    keys, args, int, budget_s=_WRITE_BUDGET_S, what="L3 write"
                )
            except RedisUnavailable as exc:
                # Refused (full: OOM), failed or not asked: the answer is kept in L1/L2 only.
                self.counts["write_errors"] += 1
                logger.debug("L3: an answer was not written: %s", exc)
                continue
            self.counts["writes"] += 1
            self.counts["trimmed"] += trimmed

    # -- lifetime and status ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop writing (what is queued is dropped: the link is closing too)."""
        self.counts["dropped_writes"] += len(self._queue)
        self._queue.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        if self._tasks is not None:
            await self._tasks.aclose()

    def stats(self) -> dict[str, Any]:
        """``crucible/status`` ``cache.levels.l3``: the link's state, this level's counts,
        its hit rate among the lookups Redis answered, and the lookups' latency."""
        counts = self.counts
        asked = counts["hits"] + counts["misses"] + counts["garbage"]
        link = self.link.status()
        return {
            "enabled": True,
            "state": link["state"],
            "reason": link["reason"],
            "url": link["url"],
            "namespace": link["namespace"],
            **counts,
            "hit_rate": round(counts["hits"] / asked, 3) if asked else None,
            "queued": len(self._queue),
            "latency_ms": latency_ms(self._latencies),
        }
