"""App's side of the team Redis: one link per team Redis, kept across unrelated changes and
replaced (the old one closed) when its target changes; warmed only after start; its problem
told once; the redis library never imported on the way to start-up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.redis_server import RedisServer

from crucible.app import App
from crucible.completion.suggestion import Suggestion
from crucible.shared.resources import SharedResources
from crucible.team.redis_link import LinkState


def _options(url: str, **cache: object) -> dict[str, object]:
    return {"cache": {"shared_url": url, "disk": False, **cache}}


async def _until(predicate: object, what: str) -> None:
    for _ in range(200):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_one_link_per_team_redis_warmed_after_start(redis_server: RedisServer) -> None:
    app = App(env={})
    app.initialize(None, _options(redis_server.url))
    link = app.team.link
    assert link is not None and link.state is LinkState.LOADING  # nothing before start
    assert app.cache is not None and app.cache.team is not None
    assert app.cache.team.link is link
    await app.start()
    await _until(lambda: link.state is LinkState.UP, "the link never came up")

    app.change_configuration(_options(redis_server.url, memory_mb=16))
    assert app.team.link is link  # an unrelated change keeps the connection
    assert app.cache is not None and app.cache.team is not None and app.cache.team.link is link

    app.change_configuration(_options(redis_server.url, shared_namespace="team-b"))
    replaced = app.team.link
    assert replaced is not None and replaced is not link
    await _until(lambda: link.state is LinkState.CLOSED, "the old link was not closed")
    await _until(lambda: replaced.state is LinkState.UP, "the new link never came up")
    assert app.cache is not None and app.cache.team is not None
    assert app.cache.team.link is replaced

    await app.aclose()
    assert replaced.state is LinkState.CLOSED


async def test_the_links_problem_is_told_once(redis_server: RedisServer) -> None:
    app = App(env={})
    app.initialize(None, _options(redis_server.url))
    link = app.team.link
    assert link is not None
    for state in (LinkState.DOWN, LinkState.UP, LinkState.DOWN, LinkState.UP, LinkState.DOWN):
        link._set_state(state, "no answer within 5 ms")
    told = [m for m in app._unsent if "team cache" in m]  # said before an editor connected
    assert len(told) == 1 and "not answering" in told[0]
    await app.aclose()


async def test_with_a_team_budget_the_budgets_notice_is_the_one_message(
    redis_server: RedisServer,
) -> None:
    provider = {
        "name": "hosted",
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "team_calls_per_minute": 60,
    }
    app = App(env={})
    app.initialize(None, {**_options(redis_server.url), "providers": [provider]})
    link = app.team.link
    assert link is not None and app.team.budget is not None
    link._set_state(LinkState.DOWN, "no answer within 5 ms")
    assert not [m for m in app._unsent if "team cache" in m]  # the budget tells, at its turn
    await app.aclose()


def test_start_up_does_not_import_redis(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from crucible.app import App, build_server\n"
        "app = App(env={})\n"
        "app.initialize(None, {'cache': {'shared_url': 'redis://127.0.0.1:1'}})\n"
        "build_server(app)\n"
        "assert app.team.link is not None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "[]"


async def test_the_daemons_sessions_share_one_link_and_its_cache(
    redis_server: RedisServer,
) -> None:
    shared = SharedResources()
    first, second = App(env={}, shared=shared), App(env={}, shared=shared)
    other = App(env={"PW": "another password"}, shared=shared)
    # The same settings; another password in the other session's environment.
    for app in (first, second, other):
        app.initialize(None, _options(redis_server.url, shared_password_env="PW"))
    assert first.team.link is not None and first.team.link is second.team.link
    assert first.cache is second.cache
    assert other.team.link is not first.team.link and other.cache is not first.cache
    assert shared.snapshot()["redis_links"] == 2
    for app in (first, second, other):
        await app.start()
    link = first.team.link
    await _until(lambda: link.state is LinkState.UP, "the shared link never came up")
    assert link.calls == 1  # warmed once (one PING), though both sessions asked

    # The memory supervisor's relief empties L1, never the team's answers.
    assert first.cache is not None and first.cache.team is not None
    first.cache.store("c" * 32, Suggestion("kept in L3"))
    await first.cache.team.flush()
    first.relief.clear_cache()
    assert await second.cache.lookup("c" * 32) == Suggestion("kept in L3")  # type: ignore[union-attr]

    await first.aclose()
    assert link.state is LinkState.UP  # the second session still holds it
    await second.aclose()
    await _until(lambda: link.state is LinkState.CLOSED, "the last release did not close it")
    await other.aclose()
    await shared.aclose()


async def test_the_team_caches_writer_is_counted_and_ended_with_the_app(
    redis_server: RedisServer,
) -> None:
    app = App(env={})
    app.initialize(None, _options(redis_server.url))
    await app.start()
    link = app.team.link
    assert link is not None and app.cache is not None and app.cache.team is not None
    await _until(lambda: link.state is LinkState.UP, "the link never came up")
    await _until(lambda: _background(app) == 1, "background work did not settle")
    # The memory supervisor runs all along: 1.

    team = app.cache.team
    app.cache.store("a" * 32, Suggestion("written in the background"))
    assert _background(app) == 2  # the writer is live work, as prefetches are
    await team.flush()
    assert team.counts["writes"] == 1 and _background(app) == 1

    app.cache.store("b" * 32, Suggestion("still queued at shutdown"))
    writer = team._writer
    assert writer is not None and not writer.done()
    await app.aclose()
    assert writer.cancelled() and team.background_tasks() == 0  # cancelled and awaited
    assert team.counts["dropped_writes"] == 1


def _background(app: App) -> int:
    count = app.status()["memory"]["background_tasks"]
    assert isinstance(count, int)
    return count
