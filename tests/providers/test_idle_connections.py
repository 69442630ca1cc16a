"""Releasing idle keep-alive connections (the memory supervisor's "critical" tier): the idle
ones close, a stream in flight goes on, and the next request opens a connection anew."""

from __future__ import annotations

from contextlib import aclosing

import httpx

from crucible.config.settings import ProviderKind
from crucible.providers.http_provider import HttpProvider
from tests.fakes.provider import FakeProvider, Fault
from tests.providers.conftest import MakeProvider
from tests.providers.support import FIM, collect


async def test_idle_connections_close_and_a_stream_in_flight_goes_on(
    make: MakeProvider, fake: FakeProvider
) -> None:
    provider = make(ProviderKind.OLLAMA)
    assert isinstance(provider, HttpProvider)
    fake.inject(Fault(chunk_delay_ms=50), times=1)
    async with aclosing(provider.stream_fim(FIM)) as streaming:
        first = await anext(streaming)  # one connection, busy with this slow stream
        # Another request meanwhile takes a second connection, then leaves it kept alive.
        assert await collect(provider.stream_fim(FIM)) == "return a + b"
        assert fake.open_connections == 2

        await provider.release_idle_connections()

        assert await fake.wait_for_async(lambda f: f.open_connections == 1)
        rest = "".join([chunk async for chunk in streaming])
    assert first + rest == "return a + b"
    assert await collect(provider.stream_fim(FIM)) == "return a + b"


async def test_nothing_to_release_before_any_connection_or_without_a_pool(
    make: MakeProvider, fake: FakeProvider
) -> None:
    provider = make(ProviderKind.OLLAMA)
    assert isinstance(provider, HttpProvider)
    await provider.release_idle_connections()  # no connection yet: nothing happens
    assert fake.open_connections == 0
    # A client on another transport (a test's MockTransport) has no pool to release.
    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500)))
    other = make(ProviderKind.OLLAMA, client=mocked)
    assert isinstance(other, HttpProvider)
    await other.release_idle_connections()
    await mocked.aclose()
