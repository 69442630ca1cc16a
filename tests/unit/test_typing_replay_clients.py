"""The typing replay's baselines behave as its README says: the good client debounces and cancels
the previous request, and a suggestion that no longer fits the screen is counted as stale.

The benchmark prints figures and asserts nothing; these tests keep its baselines honest, so
that a figure against "a good client" is a figure against one.
"""

from __future__ import annotations

import asyncio

import httpx
from benchmarks._typists import Answer, GoodClientTypist
from benchmarks.typing_replay import Typed, _sample
from tests.fakes.provider import FakeProvider, Fault

MODEL = "qwen2.5-coder:1.5b-base"


def _client(fake: FakeProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.base_url, timeout=10, trust_env=False)


async def test_keys_within_the_debounce_cost_one_request_for_the_last_text() -> None:
    with FakeProvider(model=MODEL, reply="pass") as fake:
        async with _client(fake) as http:
            good = GoodClientTypist(http, MODEL, 16, debounce_s=0.3)
            text, keys = "def f():\n    ", []
            for char in "ret":  # no await between keys: all within one debounce
                keys.append(good.type("file:///a.py", 2, text, char))
                text += char
            last = await asyncio.wait_for(keys[-1].answered, 5)
            earlier = [key.answered.result() for key in keys[:-1]]
            await good.abandon()
    assert all(answer.withdrawn and not answer.proposals for answer in earlier)
    assert not last.withdrawn and last.proposals == (text + "pass",)
    [call] = fake.generation_requests()
    assert isinstance(call.body, dict) and call.body["prompt"] == text


async def test_a_key_closes_the_request_in_flight() -> None:
    with FakeProvider(model=MODEL, reply="pass") as fake:
        fake.inject(Fault(latency_ms=2000), times=1)  # the first request is still processing
        async with _client(fake) as http:
            good = GoodClientTypist(http, MODEL, 16, debounce_s=0.0)
            first = good.type("file:///a.py", 2, "x = ", "1")
            assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 1)
            second = good.type("file:///a.py", 3, "x = 1", "2")
            answer = await asyncio.wait_for(second.answered, 5)
            await good.abandon()
        assert first.answered.result().withdrawn
        assert answer.proposals == ("x = 12pass",)
        assert await fake.wait_for_async(lambda f: f.generation_requests()[0].disconnected)
    assert len(fake.generation_requests()) == 2


def test_a_suggestion_that_no_longer_fits_the_screen_is_stale_and_a_withdrawn_one_is_not_sent() -> (
    None
):
    typed = Typed(
        answers=[
            Answer(1.5, ("abXY",)),  # arrives while "ab" is on screen: fits
            Answer(2.0, (), withdrawn=True),  # the client cancelled it itself
            Answer(3.5, ("abXY",)),  # arrives after "c" was typed: stale
            Answer(3.6, ("abcZ",)),  # the last key's own answer: fits
        ],
        final="abc",
        last=3.0,
        screen=[(1.0, "ab"), (2.0, "ab"), (3.0, "abc"), (3.0, "abc")],
    )
    sample = _sample(typed, [], max_concurrent=1)
    assert (sample.stale, sample.withdrawn, sample.sent, sample.answered) == (1, 1, 3, 3)
    assert sample.latency_ms is not None and round(sample.latency_ms) == 600
