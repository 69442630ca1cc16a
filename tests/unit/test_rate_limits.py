"""A gateway's rate-limit headers: parsing (providers/rate_limits.py), what the HTTP providers
make of them against the loopback fake, and the pool parking a member whose quota is spent
(on fake time, ScriptedProvider members)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pytest
from tests.fakes.clock import FakeTime
from tests.fakes.provider import FakeProvider, Fault
from tests.fakes.scripted import Reply, ScriptedProvider
from tests.providers.support import FIM, collect

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.base import FimRequest, QuotaPause
from crucible.providers.errors import RateLimited
from crucible.providers.openai import OpenAIProvider
from crucible.providers.rate_limits import parse_reset, refusal_pause, spent_quota
from crucible.resilience.policy import ResiliencePolicy, RetryPolicy
from crucible.resilience.pool import ProviderPool

NOW = 1_800_000_000.0  # a wall-clock time, for resets written as a moment


MOMENT = datetime.fromisoformat("2027-01-15T08:00:00+00:00").timestamp()


@pytest.mark.parametrize(
    ("value", "now", "seconds"),
    [
        ("1s", NOW, 1.0),
        ("6m0s", NOW, 360.0),
        ("1h2m3.5s", NOW, 3723.5),
        ("20ms", NOW, 0.02),
        ("59.56s", NOW, 59.56),
        ("12", NOW, 12.0),
        ("0.5", NOW, 0.5),
        (str(NOW + 42), NOW, 42.0),  # a Unix time
        ("2027-01-15T08:00:30Z", MOMENT, 30.0),
        ("2027-01-15T08:00:30+00:00", MOMENT, 30.0),
    ],
)
def test_reset_forms(value: str, now: float, seconds: float) -> None:
    assert parse_reset(value, now) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "soon", "-3", "nan", "2027-01-15T08:00:30", "5 minutes"])
def test_unreadable_resets_are_ignored(value: str) -> None:
    assert parse_reset(value, NOW) is None


def test_a_spent_window_pauses_until_its_reset_the_longest_wins() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1s",
    }
    assert spent_quota(headers, NOW) == QuotaPause(360.0, "requests")
    headers["x-ratelimit-remaining-requests"] = "3"
    assert spent_quota(headers, NOW) == QuotaPause(1.0, "tokens")
    headers["x-ratelimit-remaining-tokens"] = "1500"
    assert spent_quota(headers, NOW) is None
    anthropic = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2027-01-15T08:00:30Z",
    }
    assert spent_quota(anthropic, MOMENT) == QuotaPause(30.0, "requests")


def test_a_refusal_without_a_spent_window_takes_the_longest_reset_named() -> None:
    headers = {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "7s"}
    assert spent_quota(headers, NOW) is None
    assert refusal_pause(headers, NOW) == QuotaPause(7.0, "tokens")
    assert refusal_pause({}, NOW) is None


# -- the HTTP providers, against the loopback fake ---------------------------------------------


def spent(reset: str = "30s", window: str = "requests") -> Fault:
    return Fault(
        headers=(
            (f"x-ratelimit-remaining-{window}", "0"),
            (f"x-ratelimit-reset-{window}", reset),
        )
    )


@pytest.fixture
def gateway() -> Any:
    with FakeProvider(model="coder", reply="return 1") as fake:
        yield fake


def openai(fake: FakeProvider) -> OpenAIProvider:
    settings = ProviderSettings(
        name="gateway", kind=ProviderKind.OPENAI, base_url=f"{fake.base_url}/v1", model="coder"
    )
    return OpenAIProvider(settings)


async def test_an_answer_that_spends_the_quota_pauses_the_provider(gateway: FakeProvider) -> None:
    provider = openai(gateway)
    try:
        assert await collect(provider.stream_fim(FIM)) == "return 1"
        assert provider.spent_quota() is None  # the fake sent no headers
        gateway.inject(spent("30s"), times=1)
        assert await collect(provider.stream_fim(FIM)) == "return 1"  # the answer still counts
        pause = provider.spent_quota()
        assert pause is not None and pause.window == "requests"
        assert 29.0 < pause.seconds <= 30.0
        remaining = (("x-ratelimit-remaining-requests", "12"),)
        gateway.inject(Fault(headers=remaining), times=1)
        await collect(provider.stream_fim(FIM))
        assert provider.spent_quota() is None  # the next answer says there is quota again
    finally:
        await provider.aclose()


async def test_a_spent_quota_is_said_at_info_when_it_is_news_not_on_every_answer(
    gateway: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="crucible.providers.http_provider")
    provider = openai(gateway)

    async def answer(fault: Fault) -> list[int]:
        """The levels of the quota records one answer carrying ``fault`` logs."""
        caplog.clear()
        gateway.inject(fault, times=1)
        await collect(provider.stream_fim(FIM))
        return [r.levelno for r in caplog.records if "quota is spent" in r.getMessage()]

    try:
        assert await answer(spent("30s")) == [logging.INFO]  # it became spent
        assert await answer(spent("30s")) == [logging.DEBUG]  # the same reset, again
        assert await answer(spent("29.5s")) == [logging.DEBUG]  # the same, counted down
        assert await answer(spent("90s")) == [logging.INFO]  # a new reset time
        assert await answer(spent("90s", "tokens")) == [logging.INFO]  # another window
        assert await answer(Fault(headers=(("x-ratelimit-remaining-requests", "12"),))) == []
        assert await answer(spent("90s")) == [logging.INFO]  # spent again after quota came back
    finally:
        await provider.aclose()


async def test_a_429_without_retry_after_carries_the_gateways_reset(
    gateway: FakeProvider,
) -> None:
    provider = openai(gateway)
    headers = (("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "1m30s"))
    gateway.inject(Fault(status=429, headers=headers), times=1)
    try:
        with pytest.raises(RateLimited) as raised:
            await collect(provider.stream_fim(FIM))
    finally:
        await provider.aclose()
    assert (raised.value.retry_after, raised.value.window) == (pytest.approx(90.0), "tokens")


# -- the pool ------------------------------------------------------------------------------------


class GatewayProvider(ScriptedProvider):
    """A scripted provider whose gateway says its quota is spent from its ``spent_on``-th call
    on, for ``reset_s`` fake seconds from that call."""

    def __init__(self, name: str, time: FakeTime, *, spent_on: int, reset_s: float) -> None:
        super().__init__(name, time, Reply(("A",)))
        self.spent_on, self.reset_s = spent_on, reset_s

    def spent_quota(self) -> QuotaPause | None:
        if len(self.calls) < self.spent_on:
            return None
        left = self.calls[self.spent_on - 1].started + self.reset_s - self._time.now
        return QuotaPause(left, "requests") if left > 0 else None


def make_pool(time: FakeTime, *members: Any) -> ProviderPool:
    policy = ResiliencePolicy(probes=False, retry=RetryPolicy(budget_min_per_second=100.0))
    return ProviderPool(
        [(m, n) for n, m in enumerate(members)],
        policy,
        clock=time.clock,
        sleep=time.sleep,
        random=lambda: 0.5,
    )


def snapshot(pool: ProviderPool, name: str) -> Any:
    return next(m for m in pool.snapshot() if m.name == name)


FIM_REQUEST = FimRequest(prefix="x", suffix="", language_id="python", path="a.py")


async def test_the_pool_parks_a_member_whose_quota_is_spent_until_the_reset() -> None:
    time = FakeTime()
    a = GatewayProvider("gateway", time, spent_on=2, reset_s=60.0)
    b = ScriptedProvider("fallback", time, Reply(("B",)))
    pool = make_pool(time, a, b)
    answers = [await time.run(_drain(pool)) for _ in range(3)]
    assert answers == [["A"], ["A"], ["B"]]  # the second answer spent it: the third goes on
    parked = snapshot(pool, "gateway")
    assert parked.parked_remaining_s == pytest.approx(60.0)
    assert parked.parked_reason == "the gateway's requests quota is spent until its reset"
    assert str(parked.health) == "rate_limited"  # a wait, not a failure
    await time.advance(60.0)
    assert await time.run(_drain(pool)) == ["A"]  # reset: asked again
    assert snapshot(pool, "gateway").parked_reason is None
    assert len(a.calls) == 3


async def test_a_pause_is_bounded_and_seen_by_every_pool_sharing_the_provider() -> None:
    time = FakeTime()
    a = GatewayProvider("gateway", time, spent_on=1, reset_s=3600.0)
    completion = make_pool(time, a, ScriptedProvider("b", time, Reply(("B",))))
    chat = make_pool(time, a, ScriptedProvider("c", time, Reply(("C",))))
    assert await time.run(_drain(completion)) == ["A"]
    assert snapshot(completion, "gateway").parked_remaining_s == pytest.approx(300.0)  # cap
    assert await time.run(_drain(chat)) == ["C"]  # never asked: the other pool's answer said
    assert len(a.calls) == 1


async def _drain(pool: ProviderPool) -> list[str]:
    return [chunk async for chunk in pool.stream_fim(FIM_REQUEST)]
