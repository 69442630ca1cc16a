"""TeamBudget and its Lua script against a real redis-server: calls and tokens per minute, the
month's spend, two members sharing one budget, a member with a lower limit, Redis stopped,
paused and flushed (each decided locally or forgiven as documented in team/budget.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.redis_server import RedisServer

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.resilience.call_budget import BudgetVerdict, CallCost
from crucible.team.budget import TeamBudget, budget_identity, seconds_to_month_end
from crucible.team.redis_link import RedisLink, TeamRedis

# 15 December 2026, noon UTC: the month's key is 2026-12, its end 16.5 days away.
MID_DECEMBER = datetime(2026, 12, 15, 12, tzinfo=UTC).timestamp()
CALL = CallCost(prompt_chars=400, max_tokens=150)  # 100 + 150 = 250 tokens charged


def provider(model: str = "coder-1", **team: int) -> ProviderSettings:
    return ProviderSettings(
        name="hosted",
        kind=ProviderKind.OPENAI,
        base_url="https://api.example.com/v1",
        model=model,
        **team,  # type: ignore[arg-type]
    )


class Member:
    """One teammate's Crucible: its own link to the team's Redis and its own budget."""

    def __init__(self, link: RedisLink, budget: TeamBudget, notices: list[str]) -> None:
        self.link, self.budget, self.notices = link, budget, notices

    async def admit(self, cost: CallCost = CALL) -> BudgetVerdict:
        return await self.budget.admit("hosted", cost, background=False)

    async def admitted(self, count: int, cost: CallCost = CALL) -> int:
        verdicts = [await self.admit(cost) for _ in range(count)]
        return sum(v.allowed for v in verdicts)

    def status(self) -> dict[str, Any]:
        return self.budget.status("hosted")


MemberFactory = Callable[..., Any]


@pytest.fixture
async def members(redis_server: RedisServer) -> AsyncIterator[MemberFactory]:
    made: list[RedisLink] = []

    async def make(
        settings: ProviderSettings, *, budget_s: float = 1.0, wall: float = MID_DECEMBER
    ) -> Member:
        link = RedisLink(TeamRedis(redis_server.url, "", "team-a"), {})
        await link.warm()
        made.append(link)
        notices: list[str] = []
        budget = TeamBudget(
            [settings], link, budget_s=budget_s, notify=notices.append, wall=lambda: wall
        )
        return Member(link, budget, notices)

    yield make
    for link in made:
        await link.aclose()


async def test_calls_per_minute_admit_the_limit_then_refuse_with_the_wait(
    members: MemberFactory,
) -> None:
    one = await members(provider(team_calls_per_minute=6))
    assert await one.admitted(6) == 6
    refused = await one.admit()
    assert not refused.allowed and refused.park_s == 0
    assert "calls per minute" in refused.reason
    # 6 a minute: one more fits 10 s after the sixth (less the few ms since).
    wait_ms = int(re.search(r"room again in (\d+) ms", refused.reason).group(1))  # type: ignore[union-attr]
    assert 9_000 < wait_ms <= 10_000
    status = one.status()
    assert status["state"] == "shared"
    assert (status["calls_remaining"], status["admitted"], status["refused"]) == (0, 6, 1)


async def test_two_members_share_one_budget(members: MemberFactory) -> None:
    settings = provider(team_calls_per_minute=6)
    first, second = await members(settings), await members(settings)
    results = []
    for _ in range(10):  # interleaved, as two teammates typing at once
        results += [(await first.admit()).allowed, (await second.admit()).allowed]
    assert sum(results) == 6
    assert first.status()["admitted"] + second.status()["admitted"] == 6


async def test_the_meter_refills_by_redis_time(
    members: MemberFactory, redis_server: RedisServer
) -> None:
    one = await members(provider(team_calls_per_minute=6))
    assert await one.admitted(7) == 6
    # Ten seconds pass, as Redis' own clock sees it: move the meter's stamp back 10 s.
    key = one.budget._budgets["hosted"].keys[0]
    at = int(redis_server.command("HGET", key, "at").split(b"\r\n")[1])
    redis_server.command("HSET", key, "at", str(at - 10_000_000))
    assert await one.admitted(2) == 1


async def test_tokens_per_minute_count_the_estimate(members: MemberFactory) -> None:
    one = await members(provider(team_tokens_per_minute=1000))
    assert await one.admitted(5) == 4  # 250 tokens each
    refused = await one.admit()
    assert "tokens per minute" in refused.reason
    # A call larger than a whole minute's tokens fits an empty meter, never a used one.
    big = await members(provider("coder-2", team_tokens_per_minute=100))
    assert (await big.admit(CallCost(40_000, 500))).allowed
    assert not (await big.admit(CallCost(4, 1))).allowed


async def test_the_month_spent_parks_until_the_month_ends_and_says_so_once(
    members: MemberFactory, redis_server: RedisServer
) -> None:
    one = await members(provider(team_tokens_per_month=600))
    assert await one.admitted(2) == 2  # 500 of 600
    refused = await one.admit()
    assert not refused.allowed and "month" in refused.reason
    assert refused.park_s == pytest.approx(seconds_to_month_end(MID_DECEMBER))
    assert 16 * 86_400 < refused.park_s < 17 * 86_400
    assert not (await one.admit()).allowed
    assert len(one.notices) == 1 and "monthly budget for hosted" in one.notices[0]
    status = one.status()
    assert (status["month"], status["month_tokens_used"]) == ("2026-12", 500)
    # The month's counter is a key per calendar month that expires.
    month_key = one.budget._budgets["hosted"].keys[2] + ":2026-12"
    ttl = int(redis_server.command("TTL", month_key).strip()[1:])
    assert 30 * 86_400 < ttl <= 35 * 86_400


async def test_the_month_is_corrected_to_what_the_answer_used(members: MemberFactory) -> None:
    one = await members(provider(team_tokens_per_month=10_000))
    first = await one.admit()
    assert first.charge is not None and one.status()["month_tokens_used"] == 250
    first.charge.settle(40)  # 10 tokens of answer: 100 + 10 used, 140 charged too many
    first.charge.settle(40)  # once only
    await one.admit()  # the correction rides with the next call
    assert one.status()["month_tokens_used"] == 110 + 250


async def test_a_member_with_a_lower_limit_stops_sooner_without_lowering_the_others(
    members: MemberFactory,
) -> None:
    team = await members(provider(team_calls_per_minute=6))
    cautious = await members(provider(team_calls_per_minute=2))
    assert await cautious.admitted(3) == 2
    assert await team.admitted(6) == 4  # 6 for the team, 2 of them the cautious member's


async def test_redis_stopped_decides_locally_with_the_same_limits_and_says_so_once(
    members: MemberFactory, redis_server: RedisServer
) -> None:
    one = await members(provider(team_calls_per_minute=6))
    assert await one.admitted(2) == 2
    redis_server.stop()
    # The level Redis last reported (4 left) carries over to the local meter.
    assert await one.admitted(6) == 4
    status = one.status()
    assert status["state"] == "local" and status["calls_remaining"] == 0
    assert len(one.notices) == 1 and "keeps to the team's limits" in one.notices[0]
    assert one.link.state.value == "down"  # the breaker stopped asking


async def test_redis_back_after_an_outage_is_shared_again(redis_server: RedisServer) -> None:
    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    link = RedisLink(TeamRedis(redis_server.url, "", "team-a"), {}, clock=clock)
    await link.warm()
    notices: list[str] = []
    budget = TeamBudget(
        [provider(team_calls_per_minute=6)], link, budget_s=1.0, notify=notices.append
    )
    one = Member(link, budget, notices)
    assert await one.admitted(1) == 1
    redis_server.stop()
    assert await one.admitted(4) == 4 and one.status()["state"] == "local"
    redis_server.start()  # an empty Redis: what was spent locally is not added to it
    clock.now += 10  # past the link's first cooldown (5 s)
    assert await one.admitted(7) == 6
    assert one.status()["state"] == "shared" and len(notices) == 1
    await link.aclose()


async def test_redis_slowed_costs_the_budget_not_more(
    members: MemberFactory, redis_server: RedisServer
) -> None:
    one = await members(provider(team_calls_per_minute=6), budget_s=0.02)
    await one.admit()  # the script is loaded, the connection made
    redis_server.command("CLIENT", "PAUSE", "3000", "ALL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    verdict = await one.admit()
    assert loop.time() - started < 1.0  # a behaviour bound (the pause is 3 s), not a timing
    assert verdict.allowed and one.status()["state"] == "local"
    assert one.notices == []  # one slow answer is not an outage worth a message


async def test_a_flushed_redis_forgives(members: MemberFactory, redis_server: RedisServer) -> None:
    one = await members(provider(team_calls_per_minute=3, team_tokens_per_month=900))
    assert await one.admitted(4) == 3
    redis_server.command("FLUSHALL")
    assert await one.admitted(4) == 3  # full again, and the month's count restarted
    assert one.status()["month_tokens_used"] == 750


async def test_without_a_shared_redis_the_limits_apply_locally() -> None:
    notices: list[str] = []
    budget = TeamBudget(
        [provider(team_calls_per_minute=2)], None, budget_s=0.005, notify=notices.append
    )
    verdicts = [await budget.admit("hosted", CALL, background=False) for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert budget.status("hosted")["state"] == "local" and notices == []
    assert budget.status("other") == {"state": "off"} and not budget.limits("other")


def test_the_identity_is_the_api_not_the_name_nor_the_key() -> None:
    base = provider(team_calls_per_minute=1)
    renamed = ProviderSettings(
        name="theirs",
        kind=base.kind,
        base_url="https://API.example.com/v1/",
        model=base.model,
        api_key_env="OTHER_KEY",
    )
    other_model = ProviderSettings(
        name="hosted", kind=base.kind, base_url=base.base_url, model="coder-2"
    )
    assert budget_identity(base) == budget_identity(renamed)
    assert budget_identity(base) != budget_identity(other_model)
    assert "example" not in budget_identity(base)
