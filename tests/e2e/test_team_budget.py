"""The team budget end to end: real server processes, one real redis-server, the loopback
fake provider counting what reaches it. Two teammates' Crucibles together keep to the team's
calls per minute; the month spent parks the provider with one message; a Redis stopped or
paused mid-run leaves completions going on under local limits, none waiting for it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import Editor, Session, open_document, server_status, texts
from tests.fakes.provider import FakeProvider, Fault
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "
REPLY = "return a + b"


def team_options(fake: FakeProvider, redis: RedisServer, **team: int) -> dict[str, Any]:
    """One provider on the fake with the team's limits; no cache, so every request asks."""
    return {
        "providers": [
            {
                "name": "hosted",
                "kind": "ollama",
                "base_url": fake.base_url,
                "model": fake.models[0],
                **team,
            }
        ],
        "completion": {"debounce_ms": 0, "timeout_ms": 2000},
        # A generous wait for Redis (5 ms by default): this machine is shared and loaded,
        # and these tests are about what is counted, not how fast (the pause test sets 5).
        "cache": {
            "enabled": False,
            "prefetch": "off",
            "shared_url": redis.url,
            "shared_timeout_ms": 250,
        },
    }


def budget(status: dict[str, Any]) -> dict[str, Any]:
    hosted = next(p for p in status["providers"] if p["name"] == "hosted")
    found: dict[str, Any] = hosted["team_budget"]
    return found


async def redis_up(client: LanguageClient) -> None:
    """The link loads its library after start-up; until then decisions are local."""
    for _ in range(200):
        if (await server_status(client))["team_redis"]["state"] == "up":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the team's Redis link never came up")


async def ask(editor: Editor, n: int) -> list[str]:
    editor.type(f"x{n} = {n}\n    ")  # a new spot each time
    return texts(await asyncio.wait_for(editor.request(invoked=True), 10))


def refilled(started: float, per_minute: int) -> int:
    """Calls the meter gave back since ``started`` (a loaded machine may take seconds): the
    tests allow them, so they assert what is counted, not how fast the machine is."""
    return int((time.monotonic() - started) * per_minute / 60)


def warnings(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Warning]


async def test_two_crucibles_together_keep_to_the_teams_calls_per_minute(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    options = team_options(fake, redis_server, team_calls_per_minute=6)
    async with lsp_session(options) as first, lsp_session(options) as second:
        editors = []
        for client in (first, second):
            await redis_up(client)
            editors.append(Editor(client, open_document(client, TEXT), TEXT))
        answers = []
        started = time.monotonic()
        for n in range(10):  # both typing at once
            for editor in editors:
                answers.append(await ask(editor, n))
        extra = refilled(started, 6)  # 0 unless the 20 requests took 10 s or more
        statuses = [budget(await server_status(c)) for c in (first, second)]

    assert len(fake.generation_requests()) == 6 + extra
    assert answers.count([REPLY]) == 6 + extra and answers.count([]) == 14 - extra
    assert [s["state"] for s in statuses] == ["shared", "shared"]
    assert sum(s["admitted"] for s in statuses) == 6 + extra
    assert sum(s["refused"] for s in statuses) == 14 - extra
    assert all(s["calls_per_minute"] == 6 for s in statuses)


async def test_a_new_team_limit_keeps_the_provider_and_applies_at_once(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    options = team_options(fake, redis_server, team_calls_per_minute=100)
    fake.inject(Fault(status=500), times=1)  # something for the breaker to remember
    async with lsp_session(options) as client:
        await redis_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        before = [await ask(editor, n) for n in range(2)]
        first = await server_status(client)
        # Two calls were made this minute: a limit of 2 leaves no room.
        lowered = team_options(fake, redis_server, team_calls_per_minute=2)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crucible": lowered})
        )
        for _ in range(200):
            changed = await server_status(client)
            if budget(changed)["calls_per_minute"] == 2:
                break
            await asyncio.sleep(0.02)
        after = await ask(editor, 2)
        last = await server_status(client)

    assert before == [[], [REPLY]]  # the 500, then an answer
    hosted = next(p for p in changed["providers"] if p["name"] == "hosted")
    # The same member: its calls, failures and breaker window went on (a new provider and
    # pool would start from 0).
    assert (hosted["calls"], hosted["failures"], hosted["calls_in_window"]) == (2, 1, 2)
    assert budget(changed)["admitted"] == budget(first)["admitted"] == 2  # the same budget
    # The new limit applies to the next call: refused, no provider call.
    assert after == []
    assert len(fake.generation_requests()) == 2
    assert budget(last)["refused"] == 1 and "calls per minute" in budget(last)["last_refusal"]


async def test_the_month_spent_parks_the_provider_with_one_message(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    # Each request is charged its prompt / 4 + max_tokens (64), then corrected to what its
    # answer used (12 characters, 3 tokens): more than 200 // 64 = 3 calls fit in 200.
    options = team_options(fake, redis_server, team_tokens_per_month=200)
    options["completion"]["max_tokens"] = 64
    async with lsp_session(options) as client:
        await redis_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        answers = [await ask(editor, n) for n in range(16)]
        status = await server_status(client)

    served = answers.count([REPLY])
    assert served > 200 // 64  # the corrections gave back what the answers did not use
    assert answers == [[REPLY]] * served + [[]] * (16 - served)  # then nothing, all month
    assert len(fake.generation_requests()) == served
    hosted = next(p for p in status["providers"] if p["name"] == "hosted")
    assert hosted["parked_remaining_s"] > 0  # until the month ends (UTC)
    # Asked once more (refused: it parked), then not asked at all while parked.
    assert budget(status)["refused"] == 1
    assert 0 < budget(status)["month_tokens_used"] <= 200
    spent = [m for m in warnings(client) if "monthly budget" in m]
    assert len(spent) == 1 and "until the month ends" in spent[0]


async def test_redis_stopped_mid_run_local_limits_apply_and_completions_go_on(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    options = team_options(fake, redis_server, team_calls_per_minute=6)
    async with lsp_session(options) as client:
        await redis_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        before = [await ask(editor, n) for n in range(2)]
        redis_server.stop()
        after = [await ask(editor, n) for n in range(2, 8)]
        status = await server_status(client)

    assert before == [[REPLY]] * 2
    # The 4 calls Redis last said were left, then refused locally: the team's limit holds.
    assert after == [[REPLY]] * 4 + [[]] * 2
    assert len(fake.generation_requests()) == 6
    assert budget(status)["state"] == "local"
    told = [m for m in warnings(client) if "shared budget" in m]
    assert len(told) == 1 and "keeps to the team's limits" in told[0]


async def test_redis_paused_no_request_waits_for_it(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    options = team_options(fake, redis_server, team_calls_per_minute=60)
    options["cache"]["shared_timeout_ms"] = 5
    async with lsp_session(options) as client:
        await redis_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor, 0) == [REPLY]
        redis_server.command("CLIENT", "PAUSE", "20000", "ALL")
        started = time.monotonic()
        answers = [await ask(editor, n) for n in range(1, 4)]
        elapsed = time.monotonic() - started
        status = await server_status(client)

    assert answers == [[REPLY]] * 3
    # A behaviour bound, not a timing: a request that waited for Redis would take the rest of
    # its 20 s pause; one that does not, a few milliseconds to a few hundred under load. The
    # bound is half-way between the two.
    assert elapsed < 10.0
    assert budget(status)["state"] == "local"
    assert status["team_redis"]["timeouts"] >= 1


async def test_a_flushed_redis_forgives_and_completions_go_on(
    fake: FakeProvider, redis_server: RedisServer, lsp_session: Session
) -> None:
    options = team_options(fake, redis_server, team_calls_per_minute=3)
    async with lsp_session(options) as client:
        await redis_up(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        before = [await ask(editor, n) for n in range(4)]
        redis_server.command("FLUSHALL")
        after = [await ask(editor, n) for n in range(4, 8)]
        status = await server_status(client)

    assert before == after == [[REPLY]] * 3 + [[]]  # the meter starts full again
    assert len(fake.generation_requests()) == 6
    assert budget(status)["state"] == "shared" and budget(status)["refused"] == 2
