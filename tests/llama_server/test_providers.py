"""Crucible's own providers against a real llama.cpp server: ``llamacpp`` speaks ``/infill``,
``openai`` speaks ``/v1/completions`` with a FIM template rendered into the prompt.

The tiny model answers any code prompt with the alphabet, one letter per token, so every
answer is known exactly (``tiny_model.expected_text``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from crucible.config.settings import ProviderKind
from crucible.providers.base import ChatMessage, ChatRequest, FimRequest, Provider
from crucible.providers.registry import create_provider
from tests.llama_server.server import (
    LlamaServerProcess,
    busy_slots,
    tokens_predicted,
    wait_until_idle,
)
from tests.llama_server.tiny_model import expected_text
from tests.providers.support import FIM, settings_for

KINDS = [
    pytest.param(ProviderKind.LLAMACPP, id="llamacpp"),
    pytest.param(ProviderKind.OPENAI, id="openai"),
]
LONG = 3000  # tokens: several seconds of generation, far more than any test reads
MakeProvider = Callable[..., Provider]


@pytest.fixture
async def make(llama_server: LlamaServerProcess) -> AsyncIterator[MakeProvider]:
    """``make(kind, **settings)``: a provider at the real server, built as the server builds
    it (the model name picks the Qwen FIM template for ``openai``), closed after the test."""
    built: list[Provider] = []

    def build(kind: ProviderKind, **overrides: Any) -> Provider:
        provider = create_provider(settings_for(kind, llama_server.root, **overrides))
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.aclose()


def fim(max_tokens: int, **changes: Any) -> FimRequest:
    return replace(FIM, max_tokens=max_tokens, temperature=0.0, **changes)


@pytest.mark.parametrize("kind", KINDS)
async def test_fim_streams_the_answer_token_by_token(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    """The prefix ends in ``uvw``: sent as plain text the model would go on ``xyz…``; it
    starts at ``a`` because the prompt ends with the FIM middle token (``/infill`` builds it
    from the model's FIM tokens, ``openai`` renders the Qwen template), not the prefix."""
    request = fim(8, prefix="letters = 'uvw", suffix="'\nprint(letters)\n")
    chunks = [chunk async for chunk in make(kind).stream_fim(request)]
    assert chunks == list(expected_text(8)) == list("abcdefgh")


@pytest.mark.parametrize("kind", KINDS)
async def test_fim_stop_sequence_ends_the_answer(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    chunks = [chunk async for chunk in make(kind).stream_fim(fim(40, stop=("klm",)))]
    assert "".join(chunks) == "abcdefghij"


@pytest.mark.parametrize("kind", KINDS)
async def test_chat_streams_an_answer(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    request = ChatRequest(
        messages=(ChatMessage("user", "Explain E501"),), max_tokens=6, temperature=0.0
    )
    chunks = [chunk async for chunk in make(kind).stream_chat(request)]
    assert "".join(chunks) == "abcdef" and len(chunks) > 1


@pytest.mark.parametrize("kind", KINDS)
async def test_probe_finds_the_server_ready(kind: ProviderKind, make: MakeProvider) -> None:
    result = await make(kind).probe()
    assert result.ok, result.detail


@pytest.mark.parametrize("kind", KINDS)
async def test_closing_the_stream_stops_generation(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    """What the completion service does on an early stop: read a little, then ``aclose``.
    The server notices the closed connection, cancels the task and frees the slot.

    The tiny model generates ~1,800 tokens a second, the whole LONG answer in ~1.7 s. What it
    generates before the close depends on how soon this (loaded) process gets to close, not on
    the server: a bound of a tenth of the answer was 0.17 s of this process's time, and a
    loaded run went past it (434 tokens). Half the answer tells a cancelled generation from one
    that went on to the end (LONG tokens, idle ~1.7 s after the start) with 0.8 s to spare."""
    before = await tokens_predicted(llama)
    stream = make(kind).stream_fim(fim(LONG))
    assert await anext(stream) == "a"
    assert len(await busy_slots(llama)) == 1  # generating the LONG answer

    await stream.aclose()
    await wait_until_idle(llama, within_s=10.0)

    generated = await tokens_predicted(llama) - before
    assert generated < LONG // 2, f"the server went on generating: {generated} tokens"


@pytest.mark.parametrize("kind", KINDS)
async def test_two_requests_generate_on_two_slots_at_once(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    provider = make(kind)
    first = provider.stream_fim(fim(LONG))
    second = provider.stream_fim(fim(LONG, prefix="x = "))
    try:
        assert list(await asyncio.gather(anext(first), anext(second))) == ["a", "a"]
        # Both answers are being generated at this moment, each on its own slot.
        assert sorted(await busy_slots(llama)) == [0, 1]
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_answers_are_complete_and_identical(
    kind: ProviderKind, make: MakeProvider, llama: httpx.AsyncClient
) -> None:
    """Two streams on two slots, batched together by the server, arrive whole and unmixed."""
    provider = make(kind)

    async def answer(prefix: str) -> str:
        return "".join([chunk async for chunk in provider.stream_fim(fim(300, prefix=prefix))])

    answers = list(await asyncio.gather(answer("def f():\n    "), answer("z = ")))
    assert answers == [expected_text(300)] * 2
