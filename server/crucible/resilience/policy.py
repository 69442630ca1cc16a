"""ResiliencePolicy: every knob of the provider pool, with its default and where it comes from.

The reference numbers, each with its source, are collected in ``docs/reliability.md`` (cited
below as "reliability §n"). Library defaults there are built for high-traffic services; one
editor makes a few provider calls per second at most, so the values here follow the choices for
an interactive, single-user server (reliability §2.6) unless a field says otherwise.
Durations are seconds of the injected monotonic clock.

Invalid combinations raise ``ValueError`` at construction, so a bad value is caught where the
policy is built from settings, not in the middle of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crucible.config.settings import ResilienceSettings


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When a provider's circuit opens and how long it stays open.

    - ``consecutive_failures`` 5: Envoy outlier detection ``consecutive_5xx`` = 5
      (reliability §2.1, kept in §2.6).
    - ``failure_rate`` 0.5: Resilience4j ``failureRateThreshold`` 50 %, Hystrix
      ``errorThresholdPercentage`` 50 % (reliability §2.1).
    - ``window_size`` 20 calls: Hystrix ``requestVolumeThreshold`` 20 (reliability §2.1); a count
      window, because one editor's traffic comes in bursts that a time window would misread.
    - ``minimum_calls`` 10: reliability §2.6 ("min 10"); Resilience4j's 100 is for servers.
    - ``cooldown`` 5 s: Hystrix ``sleepWindow`` 5000 ms, Polly ``BreakDuration`` 5 s
      (reliability §2.1). Envoy's base ejection is 30 s; we start lower because background probes
      (``ResiliencePolicy.probes``) keep a dead provider away from user traffic anyway, and a
      local server the user just restarted should be back in seconds.
    - ``cooldown_multiplier`` 2: "×2 per re-open" (reliability §2.6; Envoy multiplies its base
      ejection time by the number of ejections).
    - ``cooldown_cap`` 60 s: Resilience4j ``waitDurationInOpenState`` 60 s (reliability §2.1); below
      Envoy's 300 s cap for the same reason as the base. Staying closed for this long also resets
      the growth, as Envoy decays its ejection multiplier while a host is healthy.
    - ``cooldown_jitter`` 0.1: "±10 % jitter" (reliability §2.6), so members that tripped together
      are not probed in lockstep.
    """

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window_size: int = 20
    minimum_calls: int = 10
    cooldown: float = 5.0
    cooldown_multiplier: float = 2.0
    cooldown_cap: float = 60.0
    cooldown_jitter: float = 0.1

    def __post_init__(self) -> None:
        _check(self.consecutive_failures >= 1, "consecutive_failures must be >= 1")
        _check(0.0 < self.failure_rate <= 1.0, "failure_rate must be in (0, 1]")
        _check(self.window_size >= 1, "window_size must be >= 1")
        _check(1 <= self.minimum_calls <= self.window_size, "minimum_calls must be 1..window_size")
        _check(0.0 < self.cooldown <= self.cooldown_cap, "need 0 < cooldown <= cooldown_cap")
        _check(self.cooldown_multiplier >= 1.0, "cooldown_multiplier must be >= 1")
        _check(0.0 <= self.cooldown_jitter < 1.0, "cooldown_jitter must be in [0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Backoff between chat retries, Retry-After, and the retry budget shared by the pool.

    - ``max_retries`` 2 per provider and request: the Stainless SDKs' ``DEFAULT_MAX_RETRIES`` 2,
      i.e. the SRE book's "at most 3 attempts" and AWS standard mode's ``max_attempts`` 3
      (reliability §2.2).
    - ``base`` 100 ms: AWS SDK base delay (reliability §2.2). ``cap`` 2 s: reliability §2.6.
      The delay is full jitter, ``random(0, min(cap, base·2^(n−1)))`` for retry n (AWS
      "Exponential Backoff And Jitter", gRPC A6; reliability §2.2).
    - ``retry_after_cap`` 10 s: a Retry-After up to this is waited out (with the backoff as a
      floor). The Stainless SDKs honour up to 60 s with a 600 s timeout (reliability §2.2); our chat
      deadline is 30 s, so anything past a third of it is better spent on another provider.
      Longer values park the provider for that long (reliability §2.6: "beyond that → mark
      provider down until then") and the request fails over.
    - ``park_cap`` 300 s: the longest a Retry-After can park a provider; Envoy's
      ``max_ejection_time`` 300 s (reliability §2.1).
    - ``budget_ratio`` 0.2 over ``budget_window`` 10 s, plus ``budget_min_per_second`` 0.3:
      Envoy ``retry_budget`` 20 % with a minimum of 3 (reliability §2.1/§2.6), as a Finagle-style
      floor of 0.3 retries/s (3 per 10 s window, the Hystrix rolling window, reliability §2.1), so
      an idle editor's one failing request can still retry while a storm cannot multiply load
      past 1.2× plus the floor. Retries of an already-tried provider and hedges spend it; a
      failover to an untried provider does not (``pool.py`` says why).
    """

    max_retries: int = 2
    base: float = 0.1
    cap: float = 2.0
    retry_after_cap: float = 10.0
    park_cap: float = 300.0
    budget_ratio: float = 0.2
    budget_min_per_second: float = 0.3
    budget_window: float = 10.0

    def __post_init__(self) -> None:
        _check(self.max_retries >= 0, "max_retries must be >= 0")
        _check(0.0 < self.base <= self.cap, "need 0 < base <= cap")
        _check(0.0 <= self.retry_after_cap <= self.park_cap, "need retry_after_cap <= park_cap")
        _check(self.budget_ratio >= 0.0, "budget_ratio must be >= 0")
        _check(self.budget_min_per_second >= 0.0, "budget_min_per_second must be >= 0")
        _check(self.budget_window > 0.0, "budget_window must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterPolicy:
    """Adaptive concurrency per provider (AIMD).

    docs/reliability.md has no AIMD anchor; the shape is TCP congestion avoidance (RFC 5681:
    about +1 per window of successes, halve on loss), and the bounds come from what the
    endpoints do (reliability §3):

    - ``minimum`` 1: Ollama's ``OLLAMA_NUM_PARALLEL`` defaults to 1 per model, so a local server
      may only ever serve one request at a time; the limit must be able to get there.
    - ``initial`` 4: the default ``max_connections`` of a provider's httpx pool.
    - ``maximum`` 8: an editor rarely has more streams worth running at once; keep it at or below
      the provider's ``max_connections``, or the extra requests queue inside httpx instead.
    - ``increase`` 1 per window of ``limit`` fast successes, and only while at least half the
      limit is in use (a limit that was never the constraint has not been tested).
    - ``decrease`` 0.5 on RateLimited (429): TCP halving.
    - ``slow_decrease`` 0.9 when the first byte took more than ``slow_factor`` 2× the baseline
      (an EWMA of first-byte latency with weight ``baseline_weight`` 0.05, about the last 20
      calls) or never came: latency is a noisier overload signal than a 429, so it backs off
      gently.
    """

    initial: int = 4
    minimum: int = 1
    maximum: int = 8
    increase: float = 1.0
    decrease: float = 0.5
    slow_decrease: float = 0.9
    slow_factor: float = 2.0
    baseline_weight: float = 0.05

    def __post_init__(self) -> None:
        _check(1 <= self.minimum <= self.initial <= self.maximum, "need 1 <= min <= initial <= max")
        _check(self.increase > 0.0, "increase must be > 0")
        _check(0.0 < self.decrease < 1.0, "decrease must be in (0, 1)")
        _check(0.0 < self.slow_decrease < 1.0, "slow_decrease must be in (0, 1)")
        _check(self.slow_factor > 1.0, "slow_factor must be > 1")
        _check(0.0 < self.baseline_weight <= 1.0, "baseline_weight must be in (0, 1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResiliencePolicy:
    """All the pool's knobs.

    Deadlines (reliability §2.5/§2.6: the request is the root deadline, it covers every retry and
    the whole stream, and "first-token deadline separate from total"):

    - ``fim_deadline`` 3 s and ``chat_deadline`` 30 s: reliability §2.6 (completion 3 s, code
      action 30 s; a hover caller passes its 10 s as ``timeout=``).
    - ``fim_first_byte`` 1.5 s: half the completion deadline, so one failover still fits. It is
      the cut-off for a provider with no history *when another provider can take over*; a
      provider that is the last candidate left waits until the deadline (there is nothing to
      fail over to, so cutting it would only throw its answer away), and one whose own recent
      first bytes are slower gets ``first_byte_factor`` 2 × its p95 (with at least
      ``first_byte_min_samples`` 3 samples), still within the deadline. A local model on a CPU
      takes seconds to process a new prompt and milliseconds for the same prompt again (its
      prompt cache): a constant cut-off would cut every cold prompt and so never warm the cache.
    - ``warm_limit`` 15 s: an attempt cut before its first byte (failover, the deadline, or a
      superseded prompt the next one shares) is not closed at once: it keeps its slot until the
      provider's first byte or this long after it started, so its prompt is processed (the
      server's prompt cache is warm for the next request) and the provider's verdict is known:
      a first byte means *slow*, recorded as a success and a latency sample; nothing means
      *failed*. 15 s covers a cold model load (Ollama loads a model on first use, reliability §3)
      and a long prompt on two CPU cores.
    - ``chat_first_byte`` 10 s: a third of the chat deadline; leaves room for a cold model load
      (Ollama loads a model on first use, reliability §3) and for two failovers.

    Hedging (reliability §2.3, "The Tail at Scale"; off by default per reliability §2.6):

    - ``hedging`` False. When on, a request that has no first byte after the member's recent
      ``hedge_percentile`` 0.95 first-byte latency goes to the next candidate too (p95 limits
      the extra load to about 5 %); at most one hedge per request (Polly
      ``MaxHedgedAttempts`` 1).
    - ``hedge_floor`` 0.1 s so noise on a very fast member does not hedge every call, and
      ``hedge_min_samples`` 10, below which a p95 means nothing and there is no hedge.

    Health and statistics:

    - ``probes`` True: while a circuit is open, ``provider.probe()`` runs once per open window,
      when the cooldown ends (reliability RES-01/RES-02: one probe per break window).
    - ``probe_timeout`` 5 s: httpx's default inactivity timeout (reliability §2.3).
    - ``latency_window`` 50: the "recent" latency samples kept per member for percentiles.
    """

    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: LimiterPolicy = field(default_factory=LimiterPolicy)
    fim_deadline: float = 3.0
    chat_deadline: float = 30.0
    fim_first_byte: float = 1.5
    chat_first_byte: float = 10.0
    first_byte_factor: float = 2.0
    first_byte_min_samples: int = 3
    warm_limit: float = 15.0
    hedging: bool = False
    hedge_percentile: float = 0.95
    hedge_floor: float = 0.1
    hedge_min_samples: int = 10
    probes: bool = True
    probe_timeout: float = 5.0
    latency_window: int = 50

    def __post_init__(self) -> None:
        for name in ("fim_deadline", "chat_deadline", "fim_first_byte", "chat_first_byte"):
            _check(getattr(self, name) > 0.0, f"{name} must be > 0")
        _check(self.first_byte_factor >= 1.0, "first_byte_factor must be >= 1")
        _check(self.first_byte_min_samples >= 1, "first_byte_min_samples must be >= 1")
        _check(self.warm_limit > 0.0, "warm_limit must be > 0")
        _check(0.0 < self.hedge_percentile <= 1.0, "hedge_percentile must be in (0, 1]")
        _check(self.hedge_floor >= 0.0, "hedge_floor must be >= 0")
        _check(self.hedge_min_samples >= 1, "hedge_min_samples must be >= 1")
        _check(self.probe_timeout > 0.0, "probe_timeout must be > 0")
        _check(self.latency_window >= 1, "latency_window must be >= 1")


def policy_for(
    settings: ResilienceSettings, *, fim_deadline_ms: int, max_connections: int
) -> ResiliencePolicy:
    """The policy a ``[resilience]`` table asks for. Values the loader accepted one by one but
    that contradict each other are reconciled here, never refused: a cooldown above its cap
    raises the cap, and no provider is given more concurrency than its connection pool
    (``max_connections``), or extra requests would queue inside httpx, unseen."""
    cooldown = settings.cooldown_ms / 1000
    maximum = max(1, min(settings.max_concurrency, max_connections))
    fim_deadline = fim_deadline_ms / 1000
    return ResiliencePolicy(
        breaker=BreakerPolicy(
            consecutive_failures=settings.failure_threshold,
            failure_rate=settings.failure_rate,
            cooldown=cooldown,
            cooldown_cap=max(cooldown, settings.cooldown_max_ms / 1000),
        ),
        retry=RetryPolicy(max_retries=settings.max_retries, budget_ratio=settings.retry_budget),
        limiter=LimiterPolicy(initial=min(LimiterPolicy().initial, maximum), maximum=maximum),
        fim_deadline=fim_deadline,
        fim_first_byte=min(settings.first_byte_timeout_ms / 1000, fim_deadline),
        hedging=settings.hedging,
        probes=settings.health_probes,
    )
