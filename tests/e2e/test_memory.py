"""The memory budget, end to end: limits below the real server's RSS move ``pressure`` off
normal and shrink the cache; the hard limit warns the user once; closed documents leave no text
behind. The server's RSS is real (~50 MB after initialize), so limits are set around it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from tests.e2e.conftest import Session, end_of, inline, open_document, provider_options
from tests.e2e.conftest import server_status as status_of
from tests.fakes.provider import FakeProvider, RecordedRequest

pytestmark = pytest.mark.e2e


def unique_reply(request: RecordedRequest) -> str:
    """A different suggestion per prompt, so that each one is its own L1 entry."""
    return f"value_{abs(hash(str(request.body))) % 10**12} + 1"


async def wait_for_pressure(client: Any, wanted: str, seconds: float = 10) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status = await status_of(client)
        if status["memory"]["pressure"] == wanted:
            return status
        assert asyncio.get_running_loop().time() < deadline, status["memory"]
        await asyncio.sleep(0.1)


async def wait_for_l1(client: Any, *, max_bytes: int, seconds: float = 10) -> dict[str, Any]:
    """L1's status once a configuration change rebuilt it with ``max_bytes`` (a change is
    applied after the server pulls the settings: not before the next request is answered)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        l1: dict[str, Any] = (await status_of(client))["cache"]["levels"]["l1"]
        if l1["max_bytes"] == max_bytes:
            return l1
        assert asyncio.get_running_loop().time() < deadline, l1
        await asyncio.sleep(0.05)


async def fill_cache(client: Any, count: int) -> None:
    for i in range(count):
        text = f"def function_{i}(a, b):\n    "
        uri = open_document(client, text, name=f"m{i}.py")
        await inline(client, uri, end_of(text))


def with_memory(options: dict[str, Any], **memory: float) -> dict[str, Any]:
    return {**options, "memory": {"check_interval_s": 0.5, **memory}}


async def test_a_soft_limit_below_rss_elevates_pressure_and_shrinks_the_cache(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = unique_reply
    # A small L1 (40 KB) that 60 answers overflow, and a soft limit no server stays under
    # until the cache is full: then the limit is lowered below the real RSS.
    options = provider_options(fake, cache={"memory_mb": 0.04, "disk": False})
    async with lsp_session(with_memory(options)) as client:
        await fill_cache(client, 60)
        before = await status_of(client)
        l1 = before["cache"]["levels"]["l1"]
        assert before["memory"]["pressure"] == "normal"
        assert l1["bytes"] > 0.5 * l1["max_bytes"]

        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crucible": with_memory(options, soft_limit_mb=16)}
            )
        )
        after = await wait_for_pressure(client, "elevated")
        # A cache rebuilt under pressure (its settings changed) starts at the shrunk budget.
        larger = {**options, "cache": {**options["cache"], "memory_mb": 0.08}}
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crucible": with_memory(larger, soft_limit_mb=16)}
            )
        )
        rebuilt = await wait_for_l1(client, max_bytes=int(0.08 * 2**20))

    memory = after["memory"]
    assert after["scheduling"]["prefetch_paused"] and after["hover"]["prefetch_paused"]
    assert memory["soft_limit_mb"] == 16
    assert memory["shrinks"]["shrink_cache"]["count"] == 1
    assert {"drop_idle_documents", "pause_prefetch", "collect_garbage"} <= set(memory["shrinks"])
    shrunk = after["cache"]["levels"]["l1"]
    assert shrunk["budget_bytes"] == l1["max_bytes"] // 4
    assert shrunk["bytes"] <= shrunk["budget_bytes"] < l1["bytes"]
    assert memory["components"]["l1"] == shrunk["bytes"]
    assert rebuilt["budget_bytes"] == rebuilt["max_bytes"] // 4


async def test_over_the_hard_limit_the_cache_is_cleared_and_the_user_told_once(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = unique_reply
    options = provider_options(fake, cache={"disk": False})
    async with lsp_session(with_memory(options)) as client:
        await fill_cache(client, 10)
        assert (await status_of(client))["cache"]["levels"]["l1"]["entries"] == 10
        assert fake.open_connections >= 1  # kept alive for the next completion

        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crucible": with_memory(options, soft_limit_mb=16, hard_limit_mb=32)}
            )
        )
        status = await wait_for_pressure(client, "critical")
        await asyncio.sleep(2)  # four more samples, all critical: still one message
        messages = [m.message for m in client.messages]
        idle_connections = fake.open_connections

    memory = status["memory"]
    assert memory["shrinks"]["clear_cache"]["count"] == 1
    assert {"cancel_background", "release_connections"} <= set(memory["shrinks"])
    assert status["cache"]["levels"]["l1"]["entries"] == 0
    assert idle_connections == 0  # the provider's keep-alive connections were closed
    warnings = [m for m in messages if "hard limit" in m]
    assert len(warnings) == 1, messages
    assert "over its hard limit of 32 MB" in warnings[0] and "hard_limit_mb" in warnings[0]


async def test_closing_every_document_returns_their_memory(
    fake: FakeProvider, lsp_session: Session
) -> None:
    body = "x = 1  # some code\n" * 2500  # ~50 KB each
    async with lsp_session(provider_options(fake)) as client:
        uris = [open_document(client, body, name=f"big{i}.py") for i in range(20)]
        opened = (await status_of(client))["memory"]["components"]["documents"]
        for uri in uris:
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
        closed = (await status_of(client))["memory"]["components"]["documents"]

    assert opened >= 20 * len(body)
    assert closed < 1024


async def test_status_counts_tasks_threads_and_open_files(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(with_memory(provider_options(fake))) as client:
        memory = (await status_of(client))["memory"]

    assert memory["pressure"] == "normal"
    assert memory["soft_limit_mb"] == 256 and memory["hard_limit_mb"] == 512
    assert memory["tasks"] >= 2  # at least the request's own and the supervisor
    assert memory["threads"] >= 1 and memory["open_files"] >= 3
    assert memory["uss_mb"] is None or 0 < memory["uss_mb"] <= memory["rss_mb"]


async def test_a_hard_limit_not_above_the_soft_one_is_refused_by_name(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = with_memory(provider_options(fake), soft_limit_mb=500, hard_limit_mb=400)
    async with lsp_session(options) as client:
        memory = (await status_of(client))["memory"]
        await asyncio.sleep(0.2)
        messages = [m.message for m in client.messages]

    assert (memory["soft_limit_mb"], memory["hard_limit_mb"]) == (500, 512)
    assert any("memory.hard_limit_mb" in m and "not above soft_limit_mb" in m for m in messages)
