"""Fixtures: a loopback fake provider, an API key in the environment, providers of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from crucible.config.settings import ProviderKind
from crucible.providers.base import Provider
from crucible.providers.registry import create_provider
from tests.fakes.provider import FakeProvider
from tests.providers.support import CLASSES, KEY, KEY_ENV, MODEL, settings_for

MakeProvider = Callable[..., Provider]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model=MODEL, reply="return a + b", chunk_size=4) as server:
        yield server


@pytest.fixture
def with_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test API key, put in the environment variable ``support.KEY_ENV`` names."""
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture
async def make(fake: FakeProvider) -> AsyncIterator[MakeProvider]:
    """``make(kind, root=None, client=None, **settings)``: a provider of ``kind`` at the fake
    (or ``root``), built the way the server builds it (or on ``client``), closed after the test.
    """
    built: list[Provider] = []

    def build(
        kind: ProviderKind,
        root: str | None = None,
        client: httpx.AsyncClient | None = None,
        **overrides: Any,
    ) -> Provider:
        settings = settings_for(kind, root or fake.base_url, **overrides)
        provider = create_provider(settings) if client is None else CLASSES[kind](settings, client)
        built.append(provider)
        return provider

    yield build
    for provider in built:
        await provider.aclose()
