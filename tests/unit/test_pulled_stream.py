"""PulledStream: a provider's stream read one chunk at a time in a task, closed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from crucible.providers.errors import ProviderUnavailable
from crucible.resilience.stream import PulledStream


class Source:
    def __init__(self, chunks: tuple[str, ...], *, hang: bool = False) -> None:
        self.chunks = chunks
        self.hang = hang
        self.opened = 0
        self.ended = "open"

    async def gen(self) -> AsyncGenerator[str, None]:
        self.opened += 1
        try:
            for chunk in self.chunks:
                yield chunk
            if self.hang:
                await asyncio.Event().wait()
            self.ended = "completed"
        except GeneratorExit:
            self.ended = "closed"
            raise
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise


async def test_chunks_are_pulled_one_at_a_time_then_none() -> None:
    source = Source(("a", "b"))
    stream = PulledStream("p", source.gen)
    assert source.opened == 0  # nothing is opened before the first pull
    seen = []
    while True:
        task = stream.pull()
        assert stream.pull() is task  # one pull at a time
        await task
        assert stream.ready()
        chunk = stream.take()
        if chunk is None:
            break
        seen.append(chunk)
    assert seen == ["a", "b"]
    assert (source.opened, source.ended) == (1, "completed")
    with pytest.raises(RuntimeError):
        stream.take()  # nothing pulled
    await stream.aclose()


async def test_an_error_while_opening_arrives_at_take() -> None:
    def broken() -> AsyncGenerator[str, None]:
        raise ProviderUnavailable("p", "HTTP 503")

    stream = PulledStream("p", broken)
    await asyncio.wait((stream.pull(),))
    with pytest.raises(ProviderUnavailable):
        stream.take()
    await stream.aclose()


async def test_closing_cancels_a_pending_pull_and_closes_the_generator_once() -> None:
    source = Source(("a",), hang=True)
    stream = PulledStream("p", source.gen)
    await stream.pull()
    assert stream.take() == "a"
    pending = stream.pull()
    await asyncio.sleep(0)
    assert not pending.done()  # hanging after its first chunk
    await stream.aclose()
    assert pending.cancelled()
    assert source.ended == "cancelled"
    await stream.aclose()  # twice is fine
