"""HoverService without a server: single-flight per subject, the bound on flights, the
time box, prefetch (errors only, a few per document, not while completions stream), and no
call without a diagnostic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from crucible.cache.tiered import TieredCache
from crucible.config.settings import HoverSettings
from crucible.context.diagnostics import DiagnosticsStore, KnownDiagnostic
from crucible.hover import service as hover_service
from crucible.hover.explanation import ON_ITS_WAY
from crucible.hover.service import HoverDocument, HoverService
from crucible.providers.base import ChatRequest

URI = "file:///w/a.py"
TEXT = "x = 1\ny = radus\nz = 2\n"


class HeldPool:
    """A chat pool whose streams wait until ``release`` and then answer ``text``."""

    def __init__(self, text: str = "Because.") -> None:
        self.text = text
        self.calls: list[ChatRequest] = []
        self.go = asyncio.Event()

    def release(self) -> None:
        self.go.set()

    def stream_chat(
        self, request: ChatRequest, *, background: bool = False, timeout: float | None = None
    ) -> AsyncGenerator[str, None]:
        self.calls.append(request)
        return self._play()

    async def _play(self) -> AsyncGenerator[str, None]:
        await self.go.wait()
        yield self.text


def error(line: int, message: str = "undefined name 'radus'", severity: int = 1) -> KnownDiagnostic:
    return KnownDiagnostic(line, 0, line, 5, message, severity=severity)


def service(
    pool: HeldPool, *, timeout_ms: int = 5000, prefetch: bool = False, busy: bool = False
) -> HoverService:
    hover = HoverService(HoverSettings(timeout_ms=timeout_ms), DiagnosticsStore())
    cache = TieredCache(memory_bytes=1_000_000, ttl_s=60, disk=None)
    pool_any: Any = pool
    hover.reconfigure(
        HoverSettings(timeout_ms=timeout_ms),
        pool_any,
        cache=cache,
        identity=[["fake"]],
        prefetch=prefetch,
        privacy=None,
        redact=True,
        busy=lambda: busy,
    )
    return hover


def document(text: str = TEXT) -> HoverDocument:
    return HoverDocument(URI, "/w/a.py", "python", text)


async def test_no_diagnostic_no_call() -> None:
    pool = HeldPool()
    hover = service(pool)
    assert await hover.hover(document(), 1, 2) is None
    assert pool.calls == [] and hover.counts["hovers"] == 0


async def test_two_hovers_on_one_subject_share_one_call_and_the_third_is_cached() -> None:
    pool = HeldPool()
    hover = service(pool)
    hover.store.replace(URI, 1, [error(1)])
    first = asyncio.create_task(hover.hover(document(), 1, 2))
    second = asyncio.create_task(hover.hover(document(), 1, 3))
    await asyncio.sleep(0)
    pool.release()
    answers = await asyncio.gather(first, second)
    assert all("Because." in a for a in answers if a)
    assert await hover.hover(document(), 1, 1) == answers[0]
    assert len(pool.calls) == 1
    assert hover.counts["explained"] == 2 and hover.counts["cached"] == 1
    await hover.aclose()


async def test_past_the_time_box_the_diagnostic_is_shown_and_the_flight_runs_on() -> None:
    pool = HeldPool()
    hover = service(pool, timeout_ms=100)
    hover.store.replace(URI, 1, [error(1)])
    early = await hover.hover(document(), 1, 2)
    assert early is not None and ON_ITS_WAY in early and "radus" in early
    pool.release()
    await asyncio.sleep(0.01)
    later = await hover.hover(document(), 1, 2)
    assert later is not None and "Because." in later
    assert len(pool.calls) == 1 and hover.counts["timed_out"] == 1
    await hover.aclose()


async def test_flights_are_bounded() -> None:
    pool = HeldPool()
    hover = service(pool, timeout_ms=5)
    lines = [f"v{i} = radus{i}" for i in range(hover_service.MAX_FLIGHTS + 1)]
    hover.store.replace(URI, 1, [error(i, f"undefined name 'radus{i}'") for i in range(len(lines))])
    text = "\n".join(lines)
    answers = [await hover.hover(document(text), i, 1) for i in range(len(lines))]
    assert sum(ON_ITS_WAY in (a or "") for a in answers) == hover_service.MAX_FLIGHTS
    assert hover_service.BUSY in (answers[-1] or "")
    # At most MAX_GENERATING streams are open at once; the rest wait their turn.
    assert len(pool.calls) == hover_service.MAX_GENERATING
    pool.release()
    await hover.aclose()


async def test_prefetch_explains_only_a_few_errors_and_not_while_busy() -> None:
    many = [error(i, f"undefined name 'v{i}'") for i in range(6)]
    text = "\n".join(f"x{i} = v{i}" for i in range(6))
    warning = error(0, "unused", severity=2)

    idle = HeldPool()
    hover = service(idle, prefetch=True)
    hover.store.replace(URI, 1, [warning, *many])
    hover.diagnostics_changed(document(text))
    await asyncio.sleep(0)
    assert hover.counts["prefetched"] == hover_service.PREFETCH_PER_DOCUMENT
    idle.release()
    await hover.aclose()

    busy = HeldPool()
    hover = service(busy, prefetch=True, busy=True)
    hover.store.replace(URI, 1, many)
    hover.diagnostics_changed(document(text))
    await asyncio.sleep(0)
    assert hover.counts["prefetched"] == 0 and busy.calls == []
