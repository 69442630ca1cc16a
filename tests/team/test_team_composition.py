"""``Team`` (team/composition.py) without a Redis: which configuration changes keep the
budget (new limits applied in place, its counts going on) and which build another."""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from typing import Any

from crucible.config.settings import ProviderKind, ProviderSettings, Settings
from crucible.team.composition import Team
from crucible.team.redis_link import RedisLink, TeamRedis

HOSTED = ProviderSettings(
    name="hosted",
    kind=ProviderKind.OPENAI,
    base_url="https://api.example.com/v1",
    model="coder",
    team_calls_per_minute=60,
)


def team() -> tuple[Team, list[str]]:
    spawned: list[str] = []

    def spawn(work: Coroutine[Any, Any, None], name: str) -> None:
        work.close()  # not run: these tests are about what is kept
        spawned.append(name)

    def lease(target: TeamRedis) -> RedisLink:
        raise AssertionError("no shared_url: no link")

    built = Team(
        lease=lease,
        give_back=lambda link: None,
        spawn=spawn,
        announce=lambda message: None,
        wording=lambda state, reason, url: None,
    )
    return built, spawned


def settings(*providers: ProviderSettings) -> Settings:
    return dataclasses.replace(Settings(), providers=providers)


def test_a_new_limit_is_applied_to_the_budget_in_force() -> None:
    built, spawned = team()
    built.apply(settings(HOSTED))
    budget = built.budget
    assert budget is not None and spawned == ["ready the team's redis"]
    budget._budgets["hosted"].admitted = 3  # counts that must go on

    built.apply(settings(dataclasses.replace(HOSTED, team_calls_per_minute=30)))
    assert built.budget is budget and len(spawned) == 1  # kept, nothing to ready again
    status = budget.status("hosted")
    assert (status["calls_per_minute"], status["admitted"]) == (30, 3)


def test_another_api_or_no_limit_builds_another_budget_or_none() -> None:
    built, _ = team()
    built.apply(settings(HOSTED))
    first = built.budget
    built.apply(settings(dataclasses.replace(HOSTED, model="another")))
    assert built.budget is not None and built.budget is not first  # counted elsewhere
    built.apply(settings(dataclasses.replace(HOSTED, team_calls_per_minute=0)))
    assert built.budget is None
    assert built.status() == {"state": "off"} and built.budget_status("hosted") == {"state": "off"}
