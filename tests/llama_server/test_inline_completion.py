"""Inline completions end to end: the real Crucible server process over LSP (pytest-lsp),
configured with the ``llamacpp`` or ``openai`` kind, against a real llama.cpp server running
the tiny deterministic model (which answers the alphabet, one letter per token)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lsprotocol import types

from tests.e2e.conftest import Session, end_of, inline, open_document, server_status
from tests.llama_server.server import LlamaServerProcess, tokens_predicted, wait_until_idle

pytestmark = pytest.mark.e2e

KINDS = ["llamacpp", "openai"]
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


def options(server: LlamaServerProcess, kind: str, **completion: Any) -> dict[str, Any]:
    base_url = f"{server.root}/v1" if kind == "openai" else server.root
    provider = {"name": f"real-{kind}", "kind": kind, "base_url": base_url, "model": "tiny"}
    if kind == "openai":
        provider["fim_template"] = "qwen"  # the tiny model's FIM tokens are Qwen2.5-Coder's
    settings = {"debounce_mode": "fixed", "debounce_ms": 0, "temperature": 0.0, **completion}
    # Prefetch (on by default for a loopback provider) would add a call these tests count.
    return {"providers": [provider], "completion": settings, "cache": {"prefetch": "off"}}


@pytest.mark.parametrize("kind", KINDS)
async def test_suggests_the_models_answer_at_the_cursor(
    kind: str, llama_server: LlamaServerProcess, llama: httpx.AsyncClient, lsp_session: Session
) -> None:
    async with lsp_session(options(llama_server, kind, max_tokens=8)) as client:
        uri = open_document(client, PREFIX + SUFFIX)
        result = await inline(client, uri, end_of(PREFIX))
        status = await server_status(client)

    assert [item.insert_text for item in result.items] == ["abcdefgh"]
    cursor = types.Position(1, 4)
    assert result.items[0].range == types.Range(cursor, cursor)
    assert (status["upstream"]["calls"], status["upstream"]["errors"]) == (1, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_single_line_suggestion_stops_the_servers_generation(
    kind: str, llama_server: LlamaServerProcess, llama: httpx.AsyncClient, lsp_session: Session
) -> None:
    """Mid-line only the rest of the line is wanted: Crucible stops reading at the newline the
    model writes after ``z`` and closes the stream, and llama.cpp stops generating the 3000
    tokens it was asked for and frees the slot."""
    text = "price = 3\nquantity = 4\ntotal = price"
    before = await tokens_predicted(llama)
    async with lsp_session(options(llama_server, kind, max_tokens=3000)) as client:
        uri = open_document(client, text)
        result = await inline(client, uri, end_of(text))
        await wait_until_idle(llama, within_s=2.0)
        generated = await tokens_predicted(llama) - before

    assert [item.insert_text for item in result.items] == ["abcdefghijklmnopqrstuvwxyz"]
    assert generated < 300, f"the server went on generating: {generated} tokens"
