"""ResiliencePolicy: every knob of the provider pool, as the pool reads it.

The numbers are not here: every default lives in ``config/settings.py``, next to the reference
it comes from (``ResilienceSettings`` for the ones a user may set, ``ResilienceConstants`` for
the rest; the figures and their sources are in ``docs/reliability.md``). The dataclasses below
take their defaults from there, so ``ResiliencePolicy()`` is the policy default settings give,
and :func:`policy_for` builds the policy a configuration asks for. Durations are seconds of the
injected monotonic clock.

Concurrency is per provider: :meth:`LimiterPolicy.for_connections` caps a member's limiter at
its own provider's ``max_connections``.

Invalid combinations raise ``ValueError`` at construction, so a bad value is caught where the
policy is built from settings, not in the middle of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from crucible.config.settings import (
    CompletionSettings,
    ProviderSettings,
    ResilienceConstants,
    ResilienceSettings,
    Settings,
)

_SET = ResilienceSettings()
_FIX = ResilienceConstants()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When a provider's circuit opens (``consecutive_failures``, or ``failure_rate`` over the
    last ``window_size`` calls once there are ``minimum_calls``) and how long it stays open
    (``cooldown``, × ``cooldown_multiplier`` per re-open up to ``cooldown_cap``, ±
    ``cooldown_jitter``)."""

    consecutive_failures: int = _SET.failure_threshold
    failure_rate: float = _SET.failure_rate
    window_size: int = _FIX.breaker_window
    minimum_calls: int = _FIX.breaker_minimum_calls
    cooldown: float = _SET.cooldown_ms / 1000
    cooldown_multiplier: float = _FIX.cooldown_multiplier
    cooldown_cap: float = _SET.cooldown_max_ms / 1000
    cooldown_jitter: float = _FIX.cooldown_jitter

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
    """Backoff between chat retries (full jitter from ``base`` up to ``cap``; at most
    ``max_retries`` per provider and request), Retry-After (waited out up to
    ``retry_after_cap``, a longer one parks the provider up to ``park_cap``), and the retry
    budget shared by the pool (``budget_ratio`` of the requests over ``budget_window`` plus
    ``budget_min_per_second``). Retries of an already-tried provider and hedges spend the
    budget; a failover to an untried provider does not (``pool.py`` says why)."""

    max_retries: int = _SET.max_retries
    base: float = _FIX.retry_base_s
    cap: float = _FIX.retry_cap_s
    retry_after_cap: float = _FIX.retry_after_cap_s
    park_cap: float = _FIX.park_cap_s
    budget_ratio: float = _SET.retry_budget
    budget_min_per_second: float = _FIX.budget_min_per_second
    budget_window: float = _FIX.budget_window_s

    def __post_init__(self) -> None:
        _check(self.max_retries >= 0, "max_retries must be >= 0")
        _check(0.0 < self.base <= self.cap, "need 0 < base <= cap")
        _check(0.0 <= self.retry_after_cap <= self.park_cap, "need retry_after_cap <= park_cap")
        _check(self.budget_ratio >= 0.0, "budget_ratio must be >= 0")
        _check(self.budget_min_per_second >= 0.0, "budget_min_per_second must be >= 0")
        _check(self.budget_window > 0.0, "budget_window must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterPolicy:
    """Adaptive concurrency of one provider (AIMD): it starts at ``initial``, stays within
    ``[minimum, maximum]``, grows by ``increase`` per window of fast successes, and shrinks
    ×``decrease`` on a 429 and ×``slow_decrease`` when a first byte took more than
    ``slow_factor`` × its baseline (an EWMA with weight ``baseline_weight``) or never came.

    The pool's policy holds the template (``maximum`` is ``resilience.max_concurrency``);
    each member gets :meth:`for_connections` of its own provider."""

    initial: int = min(ProviderSettings().max_connections, _SET.max_concurrency)
    minimum: int = _FIX.concurrency_minimum
    maximum: int = _SET.max_concurrency
    increase: float = _FIX.concurrency_increase
    decrease: float = _FIX.concurrency_decrease
    slow_decrease: float = _FIX.concurrency_slow_decrease
    slow_factor: float = _FIX.concurrency_slow_factor
    baseline_weight: float = _FIX.concurrency_baseline_weight

    def __post_init__(self) -> None:
        _check(1 <= self.minimum <= self.initial <= self.maximum, "need 1 <= min <= initial <= max")
        _check(self.increase > 0.0, "increase must be > 0")
        _check(0.0 < self.decrease < 1.0, "decrease must be in (0, 1)")
        _check(0.0 < self.slow_decrease < 1.0, "slow_decrease must be in (0, 1)")
        _check(self.slow_factor > 1.0, "slow_factor must be > 1")
        _check(0.0 < self.baseline_weight <= 1.0, "baseline_weight must be in (0, 1]")

    def for_connections(self, max_connections: int) -> LimiterPolicy:
        """This policy for a provider whose connection pool holds ``max_connections``: never
        more in flight than that (extra requests would queue inside httpx, unseen), and
        starting there, the size the user gave that provider."""
        limit = max(self.minimum, min(self.maximum, max_connections))
        return replace(self, initial=limit, maximum=limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResiliencePolicy:
    """All the pool's knobs.

    - Deadlines (reliability §2.5): ``fim_deadline`` (``completion.timeout_ms``) and
      ``chat_deadline`` cover queueing, every retry and the whole stream.
    - ``fim_first_byte`` / ``chat_first_byte``: the cut-off for a provider with no history
      *when another provider can take over*; the last candidate waits until the deadline, and
      one whose recent first bytes are slower gets ``first_byte_factor`` × its p95 (with at
      least ``first_byte_min_samples``), still within the deadline.
    - ``warm_limit``: how long an attempt cut before its first byte runs on to it (``pool.py``,
      warming).
    - Hedging (opt-in, ``hedging``): after the member's ``hedge_percentile`` first byte (at least
      ``hedge_floor``, only with ``hedge_min_samples``), at most once per request.
    - ``probes`` while a circuit is open, each bounded by ``probe_timeout``.
    - ``latency_window``: the recent samples kept per member for its percentiles.
    """

    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: LimiterPolicy = field(default_factory=LimiterPolicy)
    fim_deadline: float = CompletionSettings().timeout_ms / 1000
    chat_deadline: float = _FIX.chat_deadline_s
    fim_first_byte: float = _SET.first_byte_timeout_ms / 1000
    chat_first_byte: float = _FIX.chat_first_byte_s
    first_byte_factor: float = _FIX.first_byte_factor
    first_byte_min_samples: int = _FIX.first_byte_min_samples
    warm_limit: float = _FIX.warm_limit_s
    hedging: bool = _SET.hedging
    hedge_percentile: float = _FIX.hedge_percentile
    hedge_floor: float = _FIX.hedge_floor_s
    hedge_min_samples: int = _FIX.hedge_min_samples
    probes: bool = _SET.health_probes
    probe_timeout: float = _FIX.probe_timeout_s
    latency_window: int = _FIX.latency_window

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


def policy_for(settings: Settings) -> ResiliencePolicy:
    """The policy a configuration asks for. Values the loader accepted one by one but that
    contradict each other are reconciled here, never refused: a cooldown above its cap raises
    the cap, and a first-byte cut-off past the completion deadline is the deadline."""
    resilience = settings.resilience
    cooldown = resilience.cooldown_ms / 1000
    fim_deadline = settings.completion.timeout_ms / 1000
    maximum = resilience.max_concurrency
    return ResiliencePolicy(
        breaker=BreakerPolicy(
            consecutive_failures=resilience.failure_threshold,
            failure_rate=resilience.failure_rate,
            cooldown=cooldown,
            cooldown_cap=max(cooldown, resilience.cooldown_max_ms / 1000),
        ),
        retry=RetryPolicy(max_retries=resilience.max_retries, budget_ratio=resilience.retry_budget),
        limiter=LimiterPolicy(initial=min(LimiterPolicy().initial, maximum), maximum=maximum),
        fim_deadline=fim_deadline,
        fim_first_byte=min(resilience.first_byte_timeout_ms / 1000, fim_deadline),
        hedging=resilience.hedging,
        probes=resilience.health_probes,
    )
