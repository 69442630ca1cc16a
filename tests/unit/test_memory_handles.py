"""The memory supervisor's handles, without a server and on fake time: forgetting idle
documents (completion state, neighbour candidates), pausing and cancelling prefetch (completion
and hover), counting background tasks; and that a document closed while its answer lands gets
no state back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.unit.test_completion_flights import USE_MEASURED, measure_a_use

from crucible.cache.tiered import TieredCache
from crucible.completion.service import CompletionRequest, CompletionService
from crucible.config.settings import CompletionSettings, HoverSettings
from crucible.context.diagnostics import DiagnosticsStore, KnownDiagnostic
from crucible.context.neighbours import OpenFile
from crucible.context.recent import RecentDocuments
from crucible.context.snapshot import DocumentSnapshot
from crucible.hover.service import HoverDocument, HoverService
from crucible.providers.base import ChatRequest
from crucible.resilience.policy import ResiliencePolicy
from crucible.resilience.pool import ProviderPool
from crucible.runtime.log import MAX_RECORD_CHARS, ClientLogHandler
from crucible.runtime.tasks import BackgroundTasks
from crucible.runtime.telemetry import Telemetry

SOURCE = "def add(a, b):\n    "
A, B = "file:///w/a.py", "file:///w/b.py"


def snapshot(uri: str = A, text: str = SOURCE, version: int = 1) -> DocumentSnapshot:
    return DocumentSnapshot(uri, uri.removeprefix("file://"), "python", version, text)


def asked(uri: str = A, text: str = SOURCE) -> CompletionRequest:
    return CompletionRequest(snapshot(uri, text), len(text), invoked=True)


def completion_on(
    time: FakeTime, provider: ScriptedProvider, *, prefetch: bool = False
) -> tuple[CompletionService, TieredCache]:
    cache = TieredCache(memory_bytes=1 << 20, ttl_s=600, disk=None, clock=time.clock)
    pool = ProviderPool(
        [(provider, 0)], ResiliencePolicy(probes=False), clock=time.clock, sleep=time.sleep
    )
    service = CompletionService(
        CompletionSettings(alternatives=1),
        pool,
        Telemetry(time.clock),
        cache=cache,
        prefetch=prefetch,
        sleep=time.sleep,
        clock=time.clock,
    )
    return service, cache


def state_of(service: CompletionService, uri: str) -> dict[str, bool]:
    """Which per-document maps of the service hold ``uri``."""
    return {
        "rhythm": uri in service._debounce._documents,
        "pending": uri in service._latest,
        "newest_prefix": uri in service._newest_prefix,
        "prefetch": uri in service._prefetches._tasks,
        "last_active": uri in service._last_active,
    }


NOTHING = dict.fromkeys(("rhythm", "pending", "newest_prefix", "prefetch", "last_active"), False)


# -- completion: a closed document leaves nothing ----------------------------------------------


async def test_a_document_closed_in_the_turn_its_answer_lands_gets_no_anchor_or_prefetch() -> None:
    time = FakeTime()
    replies = [Reply(chunks=("return a + b",), first_byte=0.5), Reply(chunks=("  # sum",))]
    provider = ScriptedProvider("local", time, replies)
    service, cache = completion_on(time, provider, prefetch=True)
    request = asyncio.ensure_future(service.complete(asked()))
    await time.settle()
    (flight,) = list(service._flights)
    # didClose handled in the very turn the answer lands: the request's waiter wakes after it.
    flight.task.add_done_callback(lambda _: service.document_closed(A))

    assert await time.run(request) is None  # superseded by the close
    await time.advance(5.0)

    assert cache.stats()["type_through_anchors"] == 0
    assert len(provider.calls) == 1  # no prefetch for the closed document
    assert state_of(service, A) == NOTHING
    assert service.documents() == 0 and service.background_tasks() == 0


# -- completion: drop_idle ----------------------------------------------------------------------


async def test_drop_idle_forgets_the_documents_untouched_for_idle_s() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b",)))
    service, cache = completion_on(time, provider)
    service.document_changed(A)
    shown = await time.run(service.complete(asked(A)))
    assert shown is not None and cache.stats()["type_through_anchors"] == 1
    time.now += 100.0
    service.document_changed(B)

    assert service.drop_idle(60.0) == 1

    assert state_of(service, A) == NOTHING
    assert cache.stats()["type_through_anchors"] == 0
    assert service.documents() == 1 and state_of(service, B)["last_active"]
    assert service.drop_idle(60.0) == 0  # B was edited just now
    time.now += 60.0
    assert service.drop_idle(60.0) == 1 and service.documents() == 0


async def test_drop_idle_leaves_a_document_whose_request_is_pending() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b",), first_byte=500.0))
    service, _ = completion_on(time, provider)
    request = asyncio.ensure_future(service.complete(asked(A)))
    await time.settle()
    time.now += 100.0  # the clock moves; the provider has not answered yet

    assert service.drop_idle(60.0) == 0
    assert state_of(service, A)["pending"]
    request.cancel()
    await asyncio.wait((request,))


# -- completion: prefetch paused, background cancelled -----------------------------------------


async def test_no_prefetch_starts_while_paused_and_status_says_so() -> None:
    time = FakeTime()
    replies = [*USE_MEASURED, Reply(chunks=("return a + b",)), Reply(chunks=("  # sum",))]
    provider = ScriptedProvider("local", time, replies)
    service, _ = completion_on(time, provider, prefetch=True)
    await measure_a_use(time, service)  # a suggestion accepted first: prefetch pays
    service.pause_prefetch(True)

    assert await time.run(service.complete(asked())) is not None
    await time.advance(5.0)
    assert len(provider.calls) == 2 + 1
    assert service.scheduling_snapshot()["prefetch_paused"] is True

    service.pause_prefetch(False)
    other = SOURCE + "x = 1\n"
    assert await time.run(service.complete(asked(A, other))) is not None
    await time.advance(5.0)
    assert len(provider.calls) == 2 + 3  # the request, and its prefetch again
    assert service.scheduling_snapshot()["prefetch_paused"] is False


async def test_cancel_background_stops_running_prefetches_only() -> None:
    time = FakeTime()
    replies = [
        *USE_MEASURED,
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # sum",), first_byte=30.0),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _ = completion_on(time, provider, prefetch=True)
    await measure_a_use(time, service)  # a suggestion accepted first: prefetch pays
    assert await time.run(service.complete(asked())) is not None
    await time.advance(1.0)  # the prefetch's stream waits for its first byte
    assert service.background_tasks() == 1 and len(provider.calls) == 2 + 2

    assert service.cancel_background() == 1
    await time.settle()

    assert provider.calls[3].ended in ("cancelled", "closed")
    assert service.background_tasks() == 0
    assert service.scheduling_snapshot()["in_flight"] == 0
    assert service.cancel_background() == 0


async def test_cancel_background_leaves_a_request_the_user_waits_on() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b",), first_byte=1.0))
    service, _ = completion_on(time, provider, prefetch=True)
    request = asyncio.ensure_future(service.complete(asked()))
    await time.settle()

    assert service.cancel_background() == 0

    result = await time.run(request)
    assert result is not None and result.text == "return a + b"


# -- RecentDocuments.drop_idle -----------------------------------------------------------------


def open_file(uri: str) -> OpenFile:
    return OpenFile(uri, uri, "python", 10, lambda n: "x = 1\n"[:n])


def test_recent_documents_drop_those_untouched_for_idle_s_and_take_them_back_on_an_edit() -> None:
    time = FakeTime()
    recent = RecentDocuments(clock=time.clock)
    recent.touch(open_file(A))
    time.now += 30.0
    recent.touch(open_file(B))
    time.now += 40.0

    assert recent.drop_idle(60.0) == [A]
    assert list(recent) == [B]
    assert [f.uri for f in recent.candidates("file:///w/c.py", max_size=100)] == [B]
    assert recent.drop_idle(60.0) == []

    recent.touch(open_file(A))  # its next edit brings it back
    assert list(recent) == [A, B]
    time.now += 100.0
    assert recent.drop_idle(60.0) == [B, A] and len(recent) == 0


# -- hover: prefetch paused, background cancelled ----------------------------------------------

HOVER_URI = "file:///w/h.py"
HOVER_TEXT = "\n".join(f"x{i} = v{i}" for i in range(3))


class HeldChat:
    """A chat pool whose streams wait until ``release``, then answer."""

    def __init__(self) -> None:
        self.calls: list[ChatRequest] = []
        self.go = asyncio.Event()

    def stream_chat(
        self, request: ChatRequest, *, background: bool = False, timeout: float | None = None
    ) -> Any:
        self.calls.append(request)
        return self._play()

    async def _play(self) -> Any:
        await self.go.wait()
        yield "Because."


def hover_on(pool: HeldChat) -> HoverService:
    settings = HoverSettings(timeout_ms=5000)
    hover = HoverService(settings, DiagnosticsStore())
    pool_any: Any = pool
    hover.reconfigure(
        settings,
        pool_any,
        cache=TieredCache(memory_bytes=1_000_000, ttl_s=60, disk=None),
        identity=[["fake"]],
        prefetch=True,
        privacy=None,
        redact=True,
        busy=lambda: False,
    )
    return hover


def with_errors(hover: HoverService, uri: str = HOVER_URI) -> HoverDocument:
    errors = [KnownDiagnostic(i, 0, i, 2, f"undefined name 'v{i}'", severity=1) for i in range(3)]
    hover.store.replace(uri, 1, errors)
    return HoverDocument(uri, uri.removeprefix("file://"), "python", HOVER_TEXT)


async def test_hover_starts_no_prefetch_while_paused() -> None:
    pool = HeldChat()
    hover = hover_on(pool)
    hover.pause_prefetch(True)
    hover.diagnostics_changed(with_errors(hover))
    await asyncio.sleep(0)
    assert pool.calls == [] and hover.counts["prefetched"] == 0
    assert hover.snapshot()["prefetch_paused"] is True

    hover.pause_prefetch(False)
    hover.diagnostics_changed(with_errors(hover))
    await asyncio.sleep(0)
    assert hover.counts["prefetched"] == 3 and hover.snapshot()["prefetch_paused"] is False
    pool.go.set()
    await hover.aclose()


async def test_hover_cancel_background_spares_the_flight_a_hover_waits_on() -> None:
    pool = HeldChat()
    hover = hover_on(pool)
    document = with_errors(hover)
    hover.diagnostics_changed(document)
    await asyncio.sleep(0)
    assert hover.background_tasks() == 3
    waiting = asyncio.ensure_future(hover.hover(document, 0, 1))  # joins the first prefetch
    await asyncio.sleep(0)
    assert hover.background_tasks() == 2

    assert hover.cancel_background() == 2
    await asyncio.sleep(0)

    assert hover.background_tasks() == 0 and hover.snapshot()["in_flight"] == 1
    pool.go.set()
    answer = await waiting
    assert answer is not None and "Because." in answer
    # A cancelled subject hovered later gets a flight of its own, not the cancelled one.
    later = await hover.hover(document, 1, 1)
    assert later is not None and "Because." in later
    await hover.aclose()


async def test_hover_prefetches_of_a_closed_document_are_cancelled() -> None:
    pool = HeldChat()
    hover = hover_on(pool)
    hover.diagnostics_changed(with_errors(hover, HOVER_URI))
    other = "file:///w/other.py"
    hover.diagnostics_changed(with_errors(hover, other))
    await asyncio.sleep(0)
    # The same text and errors make the same subjects: one set of flights, first asked by h.py.
    assert hover.background_tasks() == 3

    assert hover.document_closed(other) == 0
    assert hover.document_closed(HOVER_URI) == 3
    await asyncio.sleep(0)
    assert hover.background_tasks() == 0 and hover.snapshot()["in_flight"] == 0


# -- BackgroundTasks and the client log ---------------------------------------------------------


async def test_background_tasks_are_counted_until_they_end() -> None:
    tasks = BackgroundTasks(asyncio.get_running_loop())
    go = asyncio.Event()
    tasks.spawn(go.wait(), "one")
    tasks.spawn(go.wait(), "two")
    assert len(tasks) == 2
    go.set()
    await tasks.aclose()
    assert len(tasks) == 0


def test_a_huge_log_record_waits_for_the_client_cut_to_a_bounded_size() -> None:
    handler = ClientLogHandler(capacity=4)
    huge = "x" * 5_000_000
    record = logging.LogRecord("crucible.x", logging.WARNING, __file__, 1, huge, None, None)
    handler.emit(record)
    ((_, text),) = handler._queue
    assert len(text) < MAX_RECORD_CHARS + 100
    assert text.endswith("--log-file has them)")
