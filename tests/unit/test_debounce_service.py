"""The debounce as the completion service applies it, on fake time: the deadline counts from
the document's last edit, and a prefetch makes way for a request the user waits for.

Providers are :class:`tests.fakes.scripted.ScriptedProvider` behind a real ``ProviderPool``.
"""

from __future__ import annotations

from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.unit.test_completion_flights import USE_MEASURED, measure_a_use, service_on, snapshot

from crucible.completion.service import CompletionRequest
from crucible.context.snapshot import DocumentSnapshot

SOURCE = "def add(a, b):\n    "
OTHER = "def sub(a, b):\n    "


async def test_a_request_after_the_user_paused_is_sent_at_once() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b",)))
    service, _, _ = service_on(time, provider)
    document = snapshot(SOURCE)
    service.document_changed(document.uri)
    await time.advance(1.0)  # longer than any pause the rhythm allows
    asked = time.now

    result = await time.run(service.complete(CompletionRequest(document, len(SOURCE))))

    assert result is not None and result.text == "return a + b"
    assert [call.started for call in provider.calls] == [asked]


async def test_a_request_right_after_an_edit_waits_out_the_pause() -> None:
    time = FakeTime()
    provider = ScriptedProvider("local", time, Reply(chunks=("return a + b",)))
    service, _, _ = service_on(time, provider)
    document = snapshot(SOURCE)
    service.document_changed(document.uri)
    asked = time.now

    await time.run(service.complete(CompletionRequest(document, len(SOURCE))))

    # Before any typing the normal gap is debounce_ms / 1.6 (93.75 ms) and the pause that ends
    # a burst 150 ms x 0.8 on an indented empty line; the request starts speculatively when
    # the pause begins, one gap after the edit (issue 16: it started at 120 ms before).
    assert [round(call.started - asked, 3) for call in provider.calls] == [0.094]


async def test_a_running_prefetch_makes_way_for_a_request_the_user_waits_for() -> None:
    time = FakeTime()
    replies = [
        *USE_MEASURED,  # a suggestion accepted first: prefetch pays
        Reply(chunks=("return a + b",)),
        Reply(chunks=("  # the sum",), first_byte=5.0),  # the prefetch: slow to start
        Reply(chunks=("return a - b",)),
    ]
    provider = ScriptedProvider("local", time, replies)
    service, _, telemetry = service_on(time, provider, prefetch=True)
    await measure_a_use(time, service)
    shown = await time.run(
        service.complete(CompletionRequest(snapshot(SOURCE), len(SOURCE), invoked=True))
    )
    await time.advance(0.5)  # the prefetch is waiting for its first byte
    assert shown is not None and service.background_tasks() == 1
    assert [call.ended for call in provider.calls[2:]] == ["completed", "open"]

    asked = time.now
    # Another document: its request needs a provider slot of its own.
    other = DocumentSnapshot("file:///w/sub.py", "/w/sub.py", "python", 1, OTHER)
    answer = await time.run(service.complete(CompletionRequest(other, len(OTHER), invoked=True)))

    assert answer is not None and answer.text == "return a - b"
    assert provider.calls[3].ended in {"closed", "cancelled"}  # the prefetch gave up its slot
    assert provider.calls[4].started == asked  # the request did not wait for it
    assert telemetry.snapshot()["requests"]["prefetched"] >= 1
