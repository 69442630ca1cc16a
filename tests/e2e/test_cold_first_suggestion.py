"""The peers benchmark's cold first suggestion against the real server: a cold start ends on a
suggestion that fits; the warm route (``--shared``, second window) is served by the daemon its
first window started, in a runtime directory of its own, and leaves no daemon and no directory
behind; and the benchmark's client ends Crucible with ``shutdown`` and ``exit``, not a kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks import _peer_cold, _peer_servers
from benchmarks._peer_cold import WarmDaemon, cold_start, warm_start
from benchmarks._peer_typists import INLINE
from benchmarks.peers import MODEL, _initialize, _reply
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

LATENCY_MS = 20


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model=MODEL, reply=_reply, chunk_size=8) as provider:
        yield provider


async def test_a_cold_crucible_serves_a_fitting_suggestion_and_ends_on_exit(
    fake: FakeProvider, tmp_path: Path
) -> None:
    launch = _peer_servers.crucible(tmp_path, fake.base_url, MODEL)

    lsp, sample = await cold_start(launch, INLINE, fake, "e2e", _initialize, LATENCY_MS)
    await lsp.stop()

    assert sample.fit_ms is not None
    assert sample.requests >= 1 and sample.calls >= 1
    assert sample.first_call_ms is not None and sample.first_call_ms < sample.fit_ms
    assert sample.init_ms < sample.fit_ms
    assert lsp.returncode == 0  # it took shutdown and exit (before: killed after 5 s)


async def test_the_warm_route_is_served_and_leaves_no_daemon_behind(
    fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int | None, Path]] = []
    close = WarmDaemon.close

    async def watched_close(self: WarmDaemon) -> None:
        seen.append((self.daemon_pid(), self.runtime))
        await close(self)

    monkeypatch.setattr(WarmDaemon, "close", watched_close)
    launch = _peer_servers.crucible(tmp_path, fake.base_url, MODEL, name="crucible-shared")

    sample = await warm_start(launch, fake, "e2e", _initialize, LATENCY_MS)

    assert sample.fit_ms is not None
    assert sample.calls >= 1  # the second window's own document: a provider call, no cache hit
    ((pid, runtime),) = seen
    assert pid is not None  # the first window started a daemon in the run's own directory
    assert not runtime.exists()
    assert not _peer_cold._alive(pid)
