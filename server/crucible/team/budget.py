"""TeamBudget: a team's limits on calls and tokens per provider, kept in the team's Redis.

A hosted API limits an organisation, not a machine: 50 teammates' Crucibles each keeping to
the API's requests-per-minute would together send 50 times that. ``[[providers]]``
``team_calls_per_minute``, ``team_tokens_per_minute`` and ``team_tokens_per_month`` give the
whole team's limits, and every Crucible pointing at the same API (kind, address origin and
model: :func:`budget_identity`, hashed; never the key) counts against the same keys in the
Redis of ``[cache] shared_url``, under the team's namespace.

**The script.** One Lua script (:data:`_SCRIPT`) decides a call atomically: per minute limit,
a leaky bucket used as a meter (a token bucket counted from the other side: ``fill`` is what
was taken, leaking at ``limit`` per 60 s, from Redis' own ``TIME``, so teammates' clocks do
not matter); a call fits when ``fill + n <= limit``; then the month's counter (``INCRBY`` on a
key per calendar month, UTC, expiring after 35 days). Either everything is charged or, on
refusal, nothing is written, so a refused call costs the team nothing. The meter form, rather
than a stored count of tokens left, is chosen because every caller passes its own limits: a
teammate whose limit is lower stops sooner but cannot lower the level the others read (a
stored "tokens left" would be clamped to the lowest capacity by whoever called last).

**Tokens.** Charged before the call: prompt characters / 4 + ``max_tokens``
(``resilience/call_budget.py``). No provider module reports usage (they stream text only), so
the correction after the call is the same estimate on what was streamed: prompt / 4 +
answer characters / 4 (at most ``max_tokens``); an attempt that yielded nothing keeps its
prompt charged (a provider that read the prompt may bill it; one that refused bills nothing,
so the count errs on the side of spending less). The correction applies to the **month**
(billing counts what was used); the per-minute meter keeps the estimate, as OpenAI's rate
limiter itself counts ``max_tokens`` when a request arrives. Corrections ride with the next
call's script (no extra round trip); ones not sent yet only over-count.

**In a request's way for a few ms at most.** :meth:`TeamBudget.admit` asks Redis through
``RedisLink.run`` within ``[cache] shared_timeout_ms`` (5 ms): the same promise L3 makes, how
long a keystroke may wait for the team's Redis. Refused: the provider is skipped for this
request (``resilience/call_budget.py``), never waited for. The month spent: parked until the
month ends (UTC), and the user is told once per provider and month.

**Redis unreachable** (off, not installed, down, slow past the budget): the same limits apply
locally, in this process (:class:`LocalMeter`, the same arithmetic on the monotonic clock),
starting from the levels Redis last reported. A member cannot know its share of the team (how
many others are running now), so it takes the team's whole limit: during an outage the team
may exceed it up to N-fold, and the API's own 429s (which the pool honours) are the backstop;
a fraction would starve a team of one. An outage (the link's breaker open, or the library
missing) is said once per configuration; one slow answer is not (under load about one
decision in a hundred passes 5 ms). ``crucible/status`` shows ``team_budget.state`` =
``local``. A decision that timed out may still have been charged in Redis: counted twice,
which errs on the side of spending less. When Redis answers again, it is ``shared`` again; what was
spent locally meanwhile is not added to Redis. A flushed Redis forgives: the meters and the
month's count start from zero (FLUSHALL is the operator's word).

Errors: none raised; every failure of Redis is :class:`RedisUnavailable` from the link,
answered locally.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from crucible.config.settings import ProviderSettings
from crucible.resilience.call_budget import BudgetVerdict, CallCost, tokens_in
from crucible.team.redis_link import LinkScript, LinkState, RedisLink, RedisUnavailable

__all__ = ["LocalMeter", "TeamBudget", "TeamLimits", "budget_identity"]

log = logging.getLogger(__name__)

# A minute meter's key outlives its last call by this much: by then it has leaked empty.
_METER_TTL_MS = 120_000
# A month's counter lives past the month's end, so a clock a little behind still finds it.
_MONTH_TTL_S = 35 * 86_400
# Loading the script ahead, in the background: a connection and a SCRIPT LOAD.
_PREPARE_S = 2.0

# KEYS: calls meter, tokens meter, month counter. ARGV: calls limit, tokens limit, month
# limit (0: none), tokens charged, the month correction to apply first, the month key's TTL
# (s), the meters' TTL (ms).
# Returns: allowed (1/0), why not (0 none, 1 calls, 2 tokens, 3 month), wait ms, calls left,
# tokens left (-1: no limit), tokens used this month.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local calls_limit = tonumber(ARGV[1])
local tokens_limit = tonumber(ARGV[2])
local month_limit = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local correction = tonumber(ARGV[5])

local function level(key, limit)
  if limit <= 0 then return 0 end
  local v = redis.call('HMGET', key, 'fill', 'at')
  local fill = tonumber(v[1]) or 0
  local at = tonumber(v[2]) or now
  local leaked = math.max(0, now - at) * limit / 60000000
  return math.max(0, fill - leaked)
end

if correction ~= 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('INCRBY', KEYS[3], correction) < 0 then
    redis.call('SET', KEYS[3], 0, 'KEEPTTL')
  end
end
local month = tonumber(redis.call('GET', KEYS[3]) or '0')
local calls = level(KEYS[1], calls_limit)
local tokens = level(KEYS[2], tokens_limit)
-- A call bigger than a whole minute's tokens could never fit: it fits an empty meter.
local take = n
if tokens_limit > 0 and take > tokens_limit then take = tokens_limit end

local why, wait = 0, 0
if month_limit > 0 and month + n > month_limit then
  why = 3
elseif calls_limit > 0 and calls + 1 > calls_limit then
  why, wait = 1, (calls + 1 - calls_limit) * 60000 / calls_limit
elseif tokens_limit > 0 and tokens + take > tokens_limit then
  why, wait = 2, (tokens + take - tokens_limit) * 60000 / tokens_limit
end
if why == 0 then
  -- tostring would round the microseconds to 14 digits
  local stamp = string.format('%d', now)
  if calls_limit > 0 then
    calls = calls + 1
    redis.call('HSET', KEYS[1], 'fill', string.format('%.6f', calls), 'at', stamp)
    redis.call('PEXPIRE', KEYS[1], ARGV[7])
  end
  if tokens_limit > 0 then
    tokens = tokens + take
    redis.call('HSET', KEYS[2], 'fill', string.format('%.6f', tokens), 'at', stamp)
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
  end
  if month_limit > 0 then
    month = redis.call('INCRBY', KEYS[3], n)
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
end
local calls_left, tokens_left = -1, -1
if calls_limit > 0 then calls_left = math.floor(calls_limit - calls) end
if tokens_limit > 0 then tokens_left = math.floor(tokens_limit - tokens) end
return {why == 0 and 1 or 0, why, math.ceil(wait), calls_left, tokens_left, month}
"""

_WHY = {1: "calls per minute", 2: "tokens per minute", 3: "tokens this month"}


@dataclass(frozen=True, slots=True)
class TeamLimits:
    """A provider's team limits; 0 is no limit."""

    calls_per_minute: int = 0
    tokens_per_minute: int = 0
    tokens_per_month: int = 0

    @classmethod
    def of(cls, settings: ProviderSettings) -> TeamLimits:
        return cls(
            settings.team_calls_per_minute,
            settings.team_tokens_per_minute,
            settings.team_tokens_per_month,
        )

    @property
    def any(self) -> bool:
        return bool(self.calls_per_minute or self.tokens_per_minute or self.tokens_per_month)


def _ints(reply: Any) -> list[int]:
    """The budget script's reply (a list of integers), read within the call."""
    return [int(x) for x in reply]


def budget_identity(settings: ProviderSettings) -> str:
    """The API a budget counts against: kind, the base URL's origin and the model, hashed
    (an address can name a private host; the key is never part of it). Two teammates'
    providers with different names but the same API share it."""
    parts = urlsplit(settings.base_url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()
    text = "\n".join((str(settings.kind), origin, settings.model))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class LocalMeter:
    """The script's minute meter in this process, for when Redis cannot be asked."""

    __slots__ = ("_at", "_clock", "fill", "limit")

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self.fill = 0.0
        self._at = clock()

    def level(self) -> float:
        now = self._clock()
        self.fill = max(0.0, self.fill - max(0.0, now - self._at) * self.limit / 60.0)
        self._at = now
        return self.fill

    def left(self) -> int:
        return int(self.limit - self.level())

    def seed(self, left: int) -> None:
        """Start from what Redis last said was left."""
        self.fill = float(max(0, self.limit - left))
        self._at = self._clock()


def month_label(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m")


def seconds_to_month_end(wall: float) -> float:
    day = datetime.fromtimestamp(wall, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return max(1.0, calendar.timegm((year, month, 1, 0, 0, 0)) - wall)


@dataclass(slots=True)
class _Charge:
    """One admitted call; its correction reaches the month's count once (``settle``)."""

    owner: ProviderBudget
    cost: CallCost
    month: str
    shared: bool
    settled: bool = False

    def settle(self, answer_chars: int) -> None:
        if self.settled:
            return
        self.settled = True
        used = self.cost.prompt_tokens + min(tokens_in(answer_chars), self.cost.max_tokens)
        self.owner.correct(self, used - self.cost.tokens)


@dataclass(slots=True)
class ProviderBudget:
    """One provider's limits, keys and counts."""

    name: str
    limits: TeamLimits
    keys: tuple[str, str, str]  # calls meter, tokens meter, month prefix
    calls: LocalMeter
    tokens: LocalMeter
    state: str = "local"  # shared | local: where the last decision was made
    refused: int = 0
    admitted: int = 0
    last_refusal: str = ""
    calls_left: int | None = None
    tokens_left: int | None = None
    month: str = ""
    month_used: int = 0
    pending: dict[str, int] = field(default_factory=dict)  # month -> correction not yet sent
    told_month: str = ""  # the month the user was told was spent

    def correct(self, charge: _Charge, delta: int) -> None:
        if delta == 0:
            return
        if charge.shared:
            self.pending[charge.month] = self.pending.get(charge.month, 0) + delta
        elif charge.month == self.month:
            self.month_used = max(0, self.month_used + delta)

    def status(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "state": self.state,
            "calls_per_minute": limits.calls_per_minute,
            "tokens_per_minute": limits.tokens_per_minute,
            "tokens_per_month": limits.tokens_per_month,
            "calls_remaining": self.calls_left,
            "tokens_remaining": self.tokens_left,
            "admitted": self.admitted,
            "refused": self.refused,
            "last_refusal": self.last_refusal or None,
            "month": self.month or None,
            "month_tokens_used": self.month_used,
        }


Notice = Callable[[str], None]


class TeamBudget:
    """Every budgeted provider of one configuration; the pools' ``CallBudget``.

    ``link`` is the team's Redis (None: no ``shared_url``, the limits apply locally);
    ``budget_s`` how long one decision may wait for it; ``notify`` tells the user (once per
    problem). ``clock`` (monotonic) and ``wall`` (epoch seconds, for the calendar month) are
    injected for tests.
    """

    def __init__(
        self,
        providers: Iterable[ProviderSettings],
        link: RedisLink | None,
        *,
        budget_s: float,
        notify: Notice,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._link = link
        self._budget_s = budget_s
        self._notify = notify
        self._wall = wall
        self._told_local = False
        self._budgets: dict[str, ProviderBudget] = {}
        for settings in providers:
            limits = TeamLimits.of(settings)
            if not limits.any:
                continue
            ident = budget_identity(settings)
            keys = (
                _key(link, "calls", ident),
                _key(link, "tokens", ident),
                _key(link, "month", ident),
            )
            self._budgets[settings.name] = ProviderBudget(
                settings.name,
                limits,
                keys,
                LocalMeter(limits.calls_per_minute, clock),
                LocalMeter(limits.tokens_per_minute, clock),
                # Until Redis says otherwise, decisions are meant to be the team's.
                state="local" if link is None else "shared",
            )
        # Loaded ahead by ``prepare``: a decision's budget is a few ms (``LinkScript``).
        self._script = None if link is None else LinkScript(link, _SCRIPT)

    def update_limits(self, providers: Iterable[ProviderSettings]) -> None:
        """The configuration changed the limits of the providers this budget counts for (the
        same names, on the same APIs: App builds a new budget otherwise). The meters and
        counts go on; what is left is unknown until the next decision, and a month limit
        that changed may be told spent again."""
        for settings in providers:
            budget = self._budgets.get(settings.name)
            limits = TeamLimits.of(settings)
            if budget is None or budget.limits == limits:
                continue
            old, budget.limits = budget.limits, limits
            budget.calls.limit, budget.tokens.limit = (
                limits.calls_per_minute,
                limits.tokens_per_minute,
            )
            if limits.calls_per_minute != old.calls_per_minute:
                budget.calls_left = None
            if limits.tokens_per_minute != old.tokens_per_minute:
                budget.tokens_left = None
            if limits.tokens_per_month != old.tokens_per_month:
                budget.told_month = ""
            log.info("team budget for %s: limits now %s", settings.name, limits)

    def limits(self, provider: str) -> bool:
        return provider in self._budgets

    def status(self, provider: str) -> dict[str, Any]:
        budget = self._budgets.get(provider)
        return {"state": "off"} if budget is None else budget.status()

    async def prepare(self) -> None:
        """Load the script into Redis and open a connection, off any request's path: the
        first decision then costs one EVALSHA round trip, within its few ms (loading the
        script and connecting in a request's 5 ms failed on a loaded machine)."""
        if self._script is None or not self._budgets:
            return
        try:
            await self._script.load(budget_s=_PREPARE_S, what="load the budget script")
        except RedisUnavailable as exc:  # the first decision will load it, or decide locally
            log.info("team budget: the script was not loaded ahead (%s)", exc)

    async def admit(self, provider: str, cost: CallCost, *, background: bool) -> BudgetVerdict:
        budget = self._budgets.get(provider)
        if budget is None:
            return BudgetVerdict(_Unbudgeted())
        month = month_label(self._wall())
        if budget.month != month:  # a new month: nothing spent yet as far as we know
            budget.month, budget.month_used = month, 0
            for old in [m for m in budget.pending if m != month]:
                del budget.pending[old]
        try:
            answer = await self._ask_redis(budget, cost, month)
        except RedisUnavailable as exc:
            return self._decide_locally(budget, cost, month, str(exc))
        return self._verdict(budget, cost, month, answer, shared=True)

    async def _ask_redis(self, budget: ProviderBudget, cost: CallCost, month: str) -> list[int]:
        script = self._script
        if script is None:
            raise RedisUnavailable("no [cache] shared_url: the team's limits apply here alone")
        limits = budget.limits
        correction = budget.pending.pop(month, 0)
        keys = [budget.keys[0], budget.keys[1], f"{budget.keys[2]}:{month}"]
        args = [
            limits.calls_per_minute,
            limits.tokens_per_minute,
            limits.tokens_per_month,
            cost.tokens,
            correction,
            _MONTH_TTL_S,
            _METER_TTL_MS,
        ]

        try:
            answer = await script.run(keys, args, _ints, budget_s=self._budget_s, what="budget")
        except RedisUnavailable:
            if correction:  # not sent: keep it for the next call
                budget.pending[month] = budget.pending.get(month, 0) + correction
            raise
        if len(answer) != 6:
            raise RedisUnavailable(f"the budget script answered {len(answer)} values, not 6")
        return answer

    def _decide_locally(
        self, budget: ProviderBudget, cost: CallCost, month: str, why: str
    ) -> BudgetVerdict:
        if budget.state != "local":
            self._went_local(budget, why)
        self._tell_local(why)
        limits = budget.limits
        calls, tokens = budget.calls.level(), budget.tokens.level()
        take = min(cost.tokens, limits.tokens_per_minute) if limits.tokens_per_minute else 0
        reason, wait = 0, 0.0
        if limits.tokens_per_month and budget.month_used + cost.tokens > limits.tokens_per_month:
            reason = 3
        elif limits.calls_per_minute and calls + 1 > limits.calls_per_minute:
            reason = 1
            wait = (calls + 1 - limits.calls_per_minute) * 60_000 / limits.calls_per_minute
        elif limits.tokens_per_minute and tokens + take > limits.tokens_per_minute:
            reason = 2
            wait = (tokens + take - limits.tokens_per_minute) * 60_000 / limits.tokens_per_minute
        if reason == 0:
            if limits.calls_per_minute:
                budget.calls.fill += 1
            if limits.tokens_per_minute:
                budget.tokens.fill += take
            if limits.tokens_per_month:
                budget.month_used += cost.tokens
        answer = [
            int(reason == 0),
            reason,
            int(wait),
            budget.calls.left() if limits.calls_per_minute else -1,
            budget.tokens.left() if limits.tokens_per_minute else -1,
            budget.month_used,
        ]
        return self._verdict(budget, cost, month, answer, shared=False)

    def _went_local(self, budget: ProviderBudget, why: str) -> None:
        budget.state = "local"
        # Start from Redis' last word: a teammate-heavy minute stays heavy here.
        if budget.calls_left is not None and budget.limits.calls_per_minute:
            budget.calls.seed(budget.calls_left)
        if budget.tokens_left is not None and budget.limits.tokens_per_minute:
            budget.tokens.seed(budget.tokens_left)
        log.warning("team budget for %s: deciding locally (%s)", budget.name, why)

    def _tell_local(self, why: str) -> None:
        """Once per configuration, and only for an outage: the link's breaker open, or the
        library missing. Not for one slow answer (on a loaded machine about one decision in
        a hundred passes 5 ms), a Redis still loading its library at start-up, or a team
        that configured none (status says ``local``)."""
        link = self._link
        if self._told_local or link is None:
            return
        if link.state not in (LinkState.DOWN, LinkState.MISSING):
            return
        self._told_local = True
        self._notify(
            "Crucible: the team's Redis cannot be asked for the providers' shared budget"
            f" ({why}); this Crucible keeps to the team's limits on its own until it"
            " answers. (crucible-lsp doctor for details)"
        )

    def _verdict(
        self, budget: ProviderBudget, cost: CallCost, month: str, answer: list[int], *, shared: bool
    ) -> BudgetVerdict:
        allowed, reason, wait_ms, calls_left, tokens_left, month_used = answer
        if shared and budget.state != "shared":
            budget.state = "shared"
            log.info("team budget for %s: shared through the team's Redis", budget.name)
        budget.calls_left = None if calls_left < 0 else calls_left
        budget.tokens_left = None if tokens_left < 0 else tokens_left
        budget.month_used = month_used
        if allowed:
            budget.admitted += 1
            return BudgetVerdict(_Charge(budget, cost, month, shared))
        budget.refused += 1
        what = _WHY.get(reason, "budget")
        if reason == 3:
            park = seconds_to_month_end(self._wall())
            budget.last_refusal = f"the team's {what} are spent until the month ends"
            if budget.told_month != month:
                budget.told_month = month
                self._notify(
                    f"Crucible: the team's monthly budget for {budget.name}"
                    f" ({budget.limits.tokens_per_month} tokens) is spent; it is not asked"
                    " again until the month ends (UTC). Raise team_tokens_per_month to go on."
                )
            return BudgetVerdict(None, budget.last_refusal, park)
        budget.last_refusal = f"the team's {what} are spent (room again in {wait_ms} ms)"
        return BudgetVerdict(None, budget.last_refusal)


class _Unbudgeted:
    def settle(self, answer_chars: int) -> None:
        return None


def _key(link: RedisLink | None, kind: str, ident: str) -> str:
    """``crucible:<namespace>:budget:{<identity>}:<kind>``: the identity in braces is a Redis
    Cluster hash tag, so one script's three keys live on one node."""
    tagged = "{" + ident + "}"
    if link is None:
        return f"budget:{tagged}:{kind}"
    return link.key("budget", tagged, kind)
