"""L3, the team's cache on Redis, end to end: real server processes, a real redis-server, the
loopback provider. Two Crucibles share answers (the second asks the provider nothing), nothing
of the document's text reaches Redis, and a Redis stopped or paused mid-run costs no answer:
the provider answers, the user is told once, and ``crucible/status`` says what happened."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

MARKER = "ZQX_TEAM_SECRET_7731"  # in the document only: must never reach Redis
TEXT = f"# {MARKER}\ndef add(a, b):\n    "
SUGGESTION = "return a + b"


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply=SUGGESTION) as provider:
        yield provider


def options(fake: FakeProvider, redis: RedisServer, **cache: Any) -> dict[str, Any]:
    # No disk level: what one process finds, it finds in Redis. A budget a loaded test machine
    # keeps (the default, 5 ms, is for a Redis near the user; the paused test sets its own).
    shared = {
        "shared_url": redis.url,
        "shared_namespace": "team-e2e",
        "shared_timeout_ms": 500,
        "disk": False,
    }
    return provider_options(fake, cache={**shared, **cache})


async def ask(editor: Editor) -> list[str]:
    return texts(await asyncio.wait_for(editor.request(), 10))


async def l3(client: LanguageClient) -> dict[str, Any]:
    status = await server_status(client)
    found: dict[str, Any] = status["cache"]["levels"]["l3"]
    return found


async def until_up(client: LanguageClient) -> None:
    """The link is warmed in the background after start-up: wait for it (a lookup before
    that is skipped, as it should be)."""
    for _ in range(200):
        if (await l3(client))["state"] == "up":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"L3 never came up: {await l3(client)}")


async def until_written(client: LanguageClient, writes: int, field: str = "writes") -> None:
    """Writes are in the background: wait until L3 counts ``writes`` of them (or of
    ``field``: ``write_errors``)."""
    for _ in range(200):
        if (await l3(client))[field] >= writes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"L3 never counted {writes} {field}: {await l3(client)}")


def _redis_contents(redis: RedisServer) -> bytes:
    """Every key and every value in the Redis, as raw bytes (strings, sorted sets, hashes)."""
    found = [redis.command("KEYS", "*")]
    for key in re.findall(rb"\$\d+\r\n([^\r]*)\r\n", found[0]):
        name = key.decode()
        kind = redis.command("TYPE", name)
        if b"string" in kind:
            found.append(redis.command("GET", name))
        elif b"zset" in kind:
            found.append(redis.command("ZRANGE", name, "0", "-1", "WITHSCORES"))
        elif b"hash" in kind:
            found.append(redis.command("HGETALL", name))
    return b"".join(found)


async def test_two_crucibles_share_answers_through_redis(
    fake: FakeProvider, lsp_session: Session, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with lsp_session(options(fake, redis_server)) as first:
        await until_up(first)
        editor = Editor(first, open_document(first, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        await until_written(first, 1)
    assert len(fake.generation_requests()) == 1

    # Another developer's Crucible: its own caches (XDG_CACHE_HOME), the same team Redis.
    env = {"XDG_CACHE_HOME": str(tmp_path / "other-cache")}
    async with lsp_session(options(fake, redis_server), env=env) as second:
        await until_up(second)
        editor = Editor(second, open_document(second, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        stats = await l3(second)
        status = await server_status(second)
    assert len(fake.generation_requests()) == 1  # the second asked the provider nothing
    assert stats["hits"] == 1 and stats["state"] == "up"
    assert status["requests"]["cache_hit"] == 1
    # Nothing of the document is in Redis: keys are digests, values the suggestion.
    contents = _redis_contents(redis_server)
    assert b"crucible:team-e2e:l3:" in contents and SUGGESTION.encode() in contents
    assert MARKER.encode() not in contents and b"add(a, b)" not in contents
    assert b"main.py" not in contents and b"workspace" not in contents


async def test_clear_cache_keeps_the_teams_answers(
    fake: FakeProvider, lsp_session: Session, redis_server: RedisServer
) -> None:
    async with lsp_session(options(fake, redis_server)) as client:
        await until_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        await until_written(client, 1)
        cleared = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="crucible.clearCache")
        )
        assert cleared["l3_kept"] == 1
        editor.type(" ")
        editor.edit(len(editor.text) - 1, len(editor.text), "")  # the same text again
        assert await ask(editor) == [SUGGESTION]  # from Redis, L1 was emptied
        stats = await l3(client)
    assert len(fake.generation_requests()) == 1 and stats["hits"] == 1


async def test_a_redis_stopped_mid_run_costs_no_answer_and_is_told_once(
    fake: FakeProvider, lsp_session: Session, redis_server: RedisServer
) -> None:
    async with lsp_session(options(fake, redis_server)) as client:
        await until_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        redis_server.stop()
        for n in range(6):  # each a new spot: the provider answers every one
            editor.type(f"x{n} = {n}\n    ")
            assert await ask(editor) == [SUGGESTION]
        stats = await l3(client)
        told = [m.message for m in client.messages if "team cache" in m.message]
    assert len(fake.generation_requests()) == 7
    assert stats["state"] == "down" and stats["reason"]
    assert stats["errors"] >= 1 and stats["skipped"] >= 1  # asked, failed, then not asked
    assert len(told) == 1 and "not answering" in told[0]


async def test_a_paused_redis_does_not_hold_back_the_suggestion(
    fake: FakeProvider, lsp_session: Session, redis_server: RedisServer
) -> None:
    async with lsp_session(options(fake, redis_server, shared_timeout_ms=20)) as client:
        await until_up(client)
        redis_server.command("CLIENT", "PAUSE", "4000", "ALL")
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]  # the provider's, within ask's 10 s
        stats = await l3(client)
    assert stats["timeouts"] == 1 and stats["hits"] == 0
    assert len(fake.generation_requests()) == 1


async def _clear_and_ask(client: LanguageClient, editor: Editor) -> list[str]:
    """Empty this machine's levels (L3 stays), then ask at the same spot again."""
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="crucible.clearCache")
    )
    editor.type(" ")
    editor.edit(len(editor.text) - 1, len(editor.text), "")
    return await ask(editor)


def _l3_keys(redis: RedisServer) -> list[str]:
    reply = redis.command("KEYS", "crucible:team-e2e:l3:*")
    return [key.decode() for key in re.findall(rb"\$\d+\r\n([^\r]*)\r\n", reply)]


async def test_garbage_flushed_and_full_redis_cost_a_provider_call_not_an_answer(
    fake: FakeProvider, lsp_session: Session, redis_server: RedisServer
) -> None:
    async with lsp_session(options(fake, redis_server)) as client:
        await until_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        await until_written(client, 1)
        [key] = _l3_keys(redis_server)

        # Garbage under the key (another program, another format): ignored, the provider asked.
        redis_server.command("SET", key, "CRL3\x02 not this version's answer")
        assert await _clear_and_ask(client, editor) == [SUGGESTION]
        assert len(fake.generation_requests()) == 2
        await until_written(client, 2)  # and stored again, in this version's format
        assert (await l3(client))["garbage"] == 1
        assert await _clear_and_ask(client, editor) == [SUGGESTION]
        assert len(fake.generation_requests()) == 2  # an L3 hit

        # Flushed: a miss, the provider, stored again.
        redis_server.command("FLUSHALL")
        assert await _clear_and_ask(client, editor) == [SUGGESTION]
        assert len(fake.generation_requests()) == 3
        await until_written(client, 3)
        assert _l3_keys(redis_server) == [key]

        # Full: writes refused and counted; answers go on, and so do lookups.
        redis_server.command("CONFIG", "SET", "maxmemory", "1")
        editor.type("x = 1\n    ")
        assert await ask(editor) == [SUGGESTION]
        await until_written(client, 1, "write_errors")
        assert await _clear_and_ask(client, editor) == [SUGGESTION]  # provider: not stored
        await until_written(client, 2, "write_errors")
        stats = await l3(client)
    assert len(fake.generation_requests()) == 5
    assert stats["write_errors"] == 2 and stats["state"] == "up"
    assert stats["hits"] == 1 and stats["garbage"] == 1
