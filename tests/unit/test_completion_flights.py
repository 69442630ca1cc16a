"""The completion service's flights, in process on fake time: a flight post-processes its
answer once, stores it once and hands every seat the same suggestion; stream reuse takes the
rest of a flight's raw text; a stream that breaks mid-way starts over on the other provider.

Providers are :class:`tests.fakes.scripted.ScriptedProvider` behind a real ``ProviderPool``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider

import crucible.completion.service as service_module
from crucible.cache.tiered import TieredCache
from crucible.completion.fetch import StreamProgress, fetch_completion
from crucible.completion.plan import PromptPrivacy, plan_completion
from crucible.completion.service import CompletionRequest, CompletionService
from crucible.completion.suggestion import Suggestion
from crucible.config.settings import CompletionSettings
from crucible.context.privacy import WorkspacePrivacy
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import cut_window
from crucible.providers.errors import ProviderUnavailable
from crucible.resilience.policy import ResiliencePolicy
from crucible.resilience.pool import ProviderPool
from crucible.runtime.telemetry import Telemetry

SOURCE = "def add(a, b):\n    "


def snapshot(text: str, version: int = 1) -> DocumentSnapshot:
    return DocumentSnapshot("file:///w/add.py", "/w/add.py", "python", version, text)


def pool_of(time: FakeTime, *providers: ScriptedProvider) -> ProviderPool:
    members = [(provider, priority) for priority, provider in enumerate(providers)]
    return ProviderPool(members, ResiliencePolicy(probes=False), clock=time.clock, sleep=time.sleep)


def service_on(
    time: FakeTime, provider: ScriptedProvider, *, prefetch: bool = False
) -> tuple[CompletionService, TieredCache, Telemetry]:
    cache = TieredCache(memory_bytes=1 << 20, ttl_s=600, disk=None, clock=time.clock)
    telemetry = Telemetry(time.clock)
    service = CompletionService(
        CompletionSettings(),
        pool_of(time, provider),
        telemetry,
        cache=cache,
        prefetch=prefetch,
        sleep=time.sleep,
        clock=time.clock,
    )
    return service, cache, telemetry


# A first suggestion the user accepts in another python document: a use measured there (no
# call for the chance), after which prefetch pays in python (``prefetch_use.py``).
USE_MEASURED = (Reply(chunks=("x = 1",)), Reply(chunks=()))


async def measure_a_use(time: FakeTime, service: CompletionService) -> None:
    """The user accepts one suggestion (``USE_MEASURED``'s replies) in another document."""
    other = "import os\n"
    first = DocumentSnapshot("file:///w/first.py", "/w/first.py", "python", 1, other)
    await time.run(service.complete(CompletionRequest(first, len(other))))
    await time.advance(1.0)
    accepted = replace(first, version=2, text=other + "x = 1")
    await time.run(service.complete(CompletionRequest(accepted, len(accepted.text))))
    await time.advance(1.0)
    assert service.prefetch_snapshot()["measured_used"] == 1


async def test_a_flight_post_processes_once_stores_once_and_every_seat_gets_its_suggestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b   ",), first_byte=0.1))
    service, cache, telemetry = service_on(time, provider)
    processed: list[str] = []
    real_postprocess = service_module.postprocess

    def counting(raw: str, window: Any) -> Any:
        processed.append(raw)
        return real_postprocess(raw, window)

    monkeypatch.setattr(service_module, "postprocess", counting)
    stored: list[Suggestion] = []
    real_store = cache.store
    monkeypatch.setattr(
        cache, "store", lambda key, value: (stored.append(value), real_store(key, value))
    )

    # The same text and cursor asked twice at once (an editor's inline and menu requests).
    request = CompletionRequest(snapshot(SOURCE), len(SOURCE), invoked=True)
    first, second = await time.run(
        asyncio.gather(service.complete(request), service.complete(request))
    )

    assert first is not None and second is not None
    assert first.text == second.text == "return a + b"
    assert len(provider.calls) == 1
    assert processed == ["return a + b   "]
    assert stored == [Suggestion("return a + b")]
    assert telemetry.snapshot()["requests"]["coalesced"] == 1


async def test_stream_reuse_takes_the_rest_of_the_raw_text_after_what_was_typed() -> None:
    time = FakeTime()
    reply = Reply(chunks=("return", " a", " + b"), first_byte=0.05, gap=0.1)
    provider = ScriptedProvider("local", time, reply)
    service, _, telemetry = service_on(time, provider)
    before = CompletionRequest(snapshot(SOURCE), len(SOURCE), invoked=True)
    typed = SOURCE + "ret"
    after = CompletionRequest(snapshot(typed, 2), len(typed), invoked=True)

    async def typing_on() -> tuple[Any, Any]:
        asked = asyncio.ensure_future(service.complete(before))
        await time.sleep(0.1)  # the stream has produced "return"
        continued = await service.complete(after)
        return await asked, continued

    superseded, continued = await time.run(typing_on())

    assert superseded is None
    assert continued is not None and continued.text == "urn a + b"
    assert len(provider.calls) == 1
    assert telemetry.snapshot()["requests"]["reused"] == 1


async def test_a_shown_suggestion_is_followed_by_a_prefetch_of_the_document_once_accepted() -> None:
    time = FakeTime()
    replies = [*USE_MEASURED, Reply(chunks=("return a + b",)), Reply(chunks=("  # the sum",))]
    provider = ScriptedProvider("local", time, replies)
    service, _, telemetry = service_on(time, provider, prefetch=True)
    await measure_a_use(time, service)

    shown = await time.run(service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE))))
    await time.advance(1.0)  # the prefetch runs in the background
    assert shown is not None and shown.text == "return a + b"
    prefixes = [call.request.prefix for call in provider.calls[2:]]
    assert prefixes == [SOURCE, SOURCE + "return a + b"]
    assert telemetry.snapshot()["requests"]["prefetched"] == 1

    accepted = SOURCE + "return a + b"
    following = CompletionRequest(snapshot(accepted, 2), len(accepted))
    next_one = await time.run(service.complete(following))

    assert next_one is not None and next_one.text == "  # the sum"
    assert telemetry.snapshot()["requests"]["cache_hit"] == 1


async def test_a_stream_broken_mid_way_starts_over_on_the_other_provider() -> None:
    time = FakeTime()
    broken = Reply(chunks=("retu",), error=ProviderUnavailable("first", "connection reset"))
    first = ScriptedProvider("first", time, broken)
    second = ScriptedProvider("second", time, Reply(chunks=("return a", " + b")))
    pool = pool_of(time, first, second)
    document = snapshot(SOURCE)
    window = cut_window(document, len(SOURCE), max_prefix=4000, max_suffix=1000)
    plan = plan_completion(
        CompletionSettings(),
        pool,
        (),
        document,
        window,
        (),
        PromptPrivacy(WorkspacePrivacy(None).rules()),
    )
    assert plan is not None
    progress = StreamProgress()

    raw = await time.run(
        fetch_completion(
            plan,
            progress,
            deadline_s=4.0,
            background=False,
            warm=None,
            telemetry=Telemetry(time.clock),
            on_latency=lambda ms: None,
            clock=time.clock,
        )
    )

    assert raw == progress.raw == "return a + b"
    # Nothing of the broken pass is kept: the progress is the second pass's alone.
    assert progress.produced == "return a + b"
    assert progress.first_chunk_came
    assert progress.broke == frozenset({"first"})
    assert [len(first.calls), len(second.calls)] == [1, 1]
