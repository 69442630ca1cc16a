"""Helpers for the provider tests: settings pointing at the fake, sample requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.context.snapshot import ContextFile
from crucible.providers.anthropic import AnthropicProvider
from crucible.providers.base import ChatMessage, ChatRequest, FimRequest, Provider
from crucible.providers.codestral import CodestralProvider
from crucible.providers.llamacpp import LlamaCppProvider
from crucible.providers.ollama import OllamaProvider
from crucible.providers.openai import OpenAIProvider

MODEL = "qwen2.5-coder:1.5b-base"
KEY_ENV = "CRUCIBLE_TEST_API_KEY"
KEY = "sk-test-0123456789abcdef"
# Every wire format. The local kind is not one: it speaks llamacpp's to a server it runs
# itself (tests/llama_server/test_local.py).
KINDS = [pytest.param(kind, id=kind.value) for kind in ProviderKind if kind != ProviderKind.LOCAL]
CLASSES: dict[ProviderKind, Callable[[ProviderSettings, httpx.AsyncClient], Provider]] = {
    ProviderKind.OLLAMA: OllamaProvider,
    ProviderKind.OPENAI: OpenAIProvider,
    ProviderKind.LLAMACPP: LlamaCppProvider,
    ProviderKind.ANTHROPIC: AnthropicProvider,
    ProviderKind.CODESTRAL: CodestralProvider,
}
# Kinds whose base_url includes /v1 (the others' is the server root).
WITH_V1 = (ProviderKind.OPENAI, ProviderKind.CODESTRAL)

FIM = FimRequest(
    prefix="def add(a, b):\n    ",
    suffix="\n\nprint(add(1, 2))\n",
    language_id="python",
    path="src/calc.py",
    extra=(ContextFile("src/util.py", "X = 1\n"),),
    max_tokens=64,
    temperature=0.1,
    stop=("\n\n",),
)

CHAT = ChatRequest(
    messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Explain E501.")),
    max_tokens=100,
    temperature=0.3,
    stop=("END",),
)


def settings_for(kind: ProviderKind, root: str, **overrides: Any) -> ProviderSettings:
    """Settings for ``kind`` served at ``root`` (``http://127.0.0.1:PORT``)."""
    base_url = f"{root}/v1" if kind in WITH_V1 else root
    settings = ProviderSettings(name=f"test-{kind}", kind=kind, base_url=base_url, model=MODEL)
    return replace(settings, **overrides)


async def collect(stream: AsyncIterator[str]) -> str:
    return "".join([chunk async for chunk in stream])
