"""The pool's budget hook (resilience/call_budget.py): what a refusal, a month spent and an
answer do to a request, first with a scripted budget on fake time, then two pools (two
teammates' Crucibles) sharing one real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.redis_server import RedisServer

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.base import FimRequest
from crucible.providers.errors import RateLimited
from crucible.resilience.call_budget import BudgetVerdict, CallCost
from crucible.resilience.errors import BudgetRefused
from crucible.resilience.policy import ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool
from crucible.team.budget import TeamBudget
from crucible.team.redis_link import RedisLink, TeamRedis

FIM = FimRequest(prefix="def f(" * 10, suffix="):", language_id="python", path="a.py")


class Settled:
    def __init__(self, log: list[int]) -> None:
        self.log = log

    def settle(self, answer_chars: int) -> None:
        self.log.append(answer_chars)


class ScriptedBudget:
    """Admits while ``room`` lasts; then refuses, parking for ``park_s``."""

    def __init__(self, budgeted: set[str], room: int, park_s: float = 0.0) -> None:
        self.budgeted, self.room, self.park_s = budgeted, room, park_s
        self.asked: list[tuple[str, CallCost]] = []
        self.settled: list[int] = []
        self.gate: asyncio.Event | None = None  # set: admit waits for it

    def limits(self, provider: str) -> bool:
        return provider in self.budgeted

    async def admit(self, provider: str, cost: CallCost, *, background: bool) -> BudgetVerdict:
        self.asked.append((provider, cost))
        if self.gate is not None:
            await self.gate.wait()
        if self.room <= 0:
            return BudgetVerdict(None, "the team's calls per minute are spent", self.park_s)
        self.room -= 1
        return BudgetVerdict(Settled(self.settled))


def make_pool(
    time: FakeTime, budget: Any, *members: tuple[ScriptedProvider, int], **policy: Any
) -> ProviderPool:
    policy.setdefault("probes", False)
    policy.setdefault("retry", RetryPolicy(budget_min_per_second=100.0))
    return ProviderPool(
        list(members),
        ResiliencePolicy(**policy),
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
        budget=budget,
    )


async def drain(stream: AsyncGenerator[str, None]) -> list[str]:
    return [chunk async for chunk in stream]


async def test_a_refused_provider_is_skipped_for_the_next_and_never_called() -> None:
    time = FakeTime()
    hosted = ScriptedProvider("hosted", time, Reply(("hosted answer",)))
    local = ScriptedProvider("local", time, Reply(("local answer",)))
    budget = ScriptedBudget({"hosted"}, room=1)
    pool = make_pool(time, budget, (hosted, 0), (local, 1))

    assert await time.run(drain(pool.stream_fim(FIM))) == ["hosted answer"]
    assert await time.run(drain(pool.stream_fim(FIM))) == ["local answer"]
    assert (len(hosted.calls), len(local.calls)) == (1, 1)
    # Only the budgeted provider is asked about; the charge is the prompt/4 + max_tokens.
    assert [name for name, _ in budget.asked] == ["hosted", "hosted"]
    assert budget.asked[0][1] == CallCost(len(FIM.prefix) + len(FIM.suffix), FIM.max_tokens)
    snap = next(m for m in pool.snapshot() if m.name == "hosted")
    assert (snap.failures, snap.state, snap.in_flight, snap.parked_remaining_s) == (
        0,
        "closed",
        0,
        0.0,
    )  # a refusal says nothing of its health


async def test_with_no_other_provider_the_request_ends_refused() -> None:
    time = FakeTime()
    hosted = ScriptedProvider("hosted", time)
    pool = make_pool(time, ScriptedBudget({"hosted"}, room=0), (hosted, 0))
    with pytest.raises(BudgetRefused, match="calls per minute"):
        await time.run(drain(pool.stream_fim(FIM)))
    assert hosted.calls == []


async def test_a_month_spent_parks_the_provider() -> None:
    time = FakeTime()
    hosted = ScriptedProvider("hosted", time, Reply(("hosted",)))
    local = ScriptedProvider("local", time, Reply(("local",)))
    budget = ScriptedBudget({"hosted"}, room=0, park_s=86_400.0)
    pool = make_pool(time, budget, (hosted, 0), (local, 1))
    assert await time.run(drain(pool.stream_fim(FIM))) == ["local"]
    budget.room = 10  # even with room again, a parked provider is not asked
    assert await time.run(drain(pool.stream_fim(FIM))) == ["local"]
    assert len(budget.asked) == 1 and hosted.calls == []
    snap = next(m for m in pool.snapshot() if m.name == "hosted")
    assert snap.parked_remaining_s == pytest.approx(86_400.0)
    # A wait for the team's limit, not a failure; status says which limit.
    assert str(snap.health) == "rate_limited"
    assert snap.parked_reason == "the team's calls per minute are spent"


async def test_a_configuration_change_asks_a_month_parked_provider_again() -> None:
    time = FakeTime()
    hosted = ScriptedProvider("hosted", time, Reply(("hosted",)))
    local = ScriptedProvider("local", time, Reply(("local",)))
    budget = ScriptedBudget({"hosted"}, room=0, park_s=86_400.0)
    pool = make_pool(time, budget, (hosted, 0), (local, 1))
    assert await time.run(drain(pool.stream_fim(FIM))) == ["local"]
    # The pool outlives a change of limits (App hands it the budget in force): the park
    # for the month is lifted, since the limit may have been raised.
    budget.room = 10
    pool.use_budget(budget)
    pool.enable_all()
    assert await time.run(drain(pool.stream_fim(FIM))) == ["hosted"]


async def test_each_attempt_settles_once_with_the_text_it_yielded() -> None:
    time = FakeTime()
    failing = ScriptedProvider("failing", time, Reply(chunks=(), error=RateLimited("f", "429")))
    hosted = ScriptedProvider("hosted", time, Reply(("abc", "defg")))
    budget = ScriptedBudget({"failing", "hosted"}, room=10)
    pool = make_pool(time, budget, (failing, 0), (hosted, 1))
    assert await time.run(drain(pool.stream_fim(FIM))) == ["abc", "defg"]
    assert budget.settled == [0, 7]


async def test_no_hedge_goes_to_a_budgeted_provider() -> None:
    time = FakeTime()
    slow = ScriptedProvider(
        "slow", time, [Reply(("A",), first_byte=0.2)] * 10 + [Reply(("late",), first_byte=1.0)]
    )
    hosted = ScriptedProvider("hosted", time, Reply(("B",), first_byte=0.1))
    budget = ScriptedBudget({"hosted"}, room=100)
    pool = make_pool(time, budget, (slow, 0), (hosted, 1), hedging=True)
    for _ in range(10):
        await time.run(drain(pool.stream_fim(FIM)))
    assert await time.run(drain(pool.stream_fim(FIM))) == ["late"]
    assert hosted.calls == [] and budget.asked == []


async def test_a_request_cancelled_while_the_budget_is_asked_gives_its_slot_back() -> None:
    time = FakeTime()
    hosted = ScriptedProvider("hosted", time)
    budget = ScriptedBudget({"hosted"}, room=10)
    budget.gate = asyncio.Event()
    pool = make_pool(time, budget, (hosted, 0))
    task = asyncio.ensure_future(drain(pool.stream_fim(FIM)))
    await time.settle()
    assert next(m for m in pool.snapshot()).in_flight == 1
    task.cancel()
    await asyncio.wait((task,))
    assert next(m for m in pool.snapshot()).in_flight == 0 and hosted.calls == []


# -- two pools, one Redis ----------------------------------------------------------------------


def hosted_settings(**team: int) -> ProviderSettings:
    return ProviderSettings(
        name="hosted",
        kind=ProviderKind.OPENAI,
        base_url="https://api.example.com/v1",
        model="coder-1",
        **team,  # type: ignore[arg-type]
    )


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[list[RedisLink]]:
    made = [RedisLink(TeamRedis(redis_server.url, "", "team-a"), {}) for _ in range(2)]
    for link in made:
        await link.warm()
    yield made
    for link in made:
        await link.aclose()


def teammate(link: RedisLink, settings: ProviderSettings, *providers: Any) -> ProviderPool:
    """One teammate's pool on real time (its budget asks a real Redis)."""
    budget = TeamBudget([settings], link, budget_s=1.0, notify=lambda message: None)
    return ProviderPool(
        [(p, n) for n, p in enumerate(providers)],
        ResiliencePolicy(probes=False, retry=RetryPolicy(budget_min_per_second=100.0)),
        budget=budget,
    )


# Each request below costs 2 + 128 tokens ("xN = " and "):" are 8 characters).
@pytest.mark.parametrize(
    ("team", "allowed"),
    [({"team_calls_per_minute": 6}, 6), ({"team_tokens_per_minute": 3 * 130}, 3)],
    ids=["calls", "tokens"],
)
async def test_two_teammates_never_exceed_the_teams_limit(
    links: list[RedisLink], team: dict[str, int], allowed: int
) -> None:
    time = FakeTime()  # the scripted providers answer at once: nothing sleeps
    settings = hosted_settings(**team)
    theirs = [ScriptedProvider("hosted", time, Reply(("answer",))) for _ in range(2)]
    pools = [teammate(link, settings, p) for link, p in zip(links, theirs, strict=True)]

    outcomes: list[str] = []
    for n in range(10):
        for pool in pools:
            request = dataclasses.replace(FIM, prefix=f"x{n} = ")
            try:
                outcomes += await drain(pool.stream_fim(request))
            except BudgetRefused:
                outcomes.append("refused")
    assert sum(len(p.calls) for p in theirs) == allowed
    assert outcomes.count("answer") == allowed and outcomes.count("refused") == 20 - allowed


async def test_refused_by_the_team_a_teammate_fails_over_to_its_local_model(
    links: list[RedisLink],
) -> None:
    time = FakeTime()
    settings = hosted_settings(team_calls_per_minute=2)
    hosted = ScriptedProvider("hosted", time, Reply(("hosted",)))
    local = ScriptedProvider("local", time, Reply(("local",)))
    busy = teammate(links[0], settings, ScriptedProvider("hosted", time))
    for _ in range(2):
        await drain(busy.stream_fim(FIM))
    pool = teammate(links[1], settings, hosted, local)
    assert await drain(pool.stream_fim(FIM)) == ["local"]
    assert hosted.calls == []
