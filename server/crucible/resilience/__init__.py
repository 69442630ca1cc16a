"""Resilience: route provider calls around failures, within a deadline, without storms.

``pool.ProviderPool`` is itself a ``Provider``; the rest are its parts, each with one job:

- ``policy``   ResiliencePolicy: every knob, its default and the reference it comes from
- ``breaker``  CircuitBreaker: closed / open / half_open per provider, with growing cooldowns
- ``backoff``  full-jitter waits, Retry-After, and the RetryBudget that prevents retry storms
- ``limiter``  AdaptiveLimiter: AIMD concurrency per provider, interactive before background
- ``member``   one provider's state in the pool and its status snapshot
- ``routing``  which member a request asks next; failover, retry and hedge decisions
- ``attempt``  one stream from one member, settled exactly once
- ``probes``   HealthProbes: background probes while a circuit is open
- ``clock``    the injected clock and sleep every timer goes through
- ``errors``   the pool's own additions to the provider error tree

Nothing here imports httpx or pygls; time and randomness are injected, so unit tests run on a
fake clock and never sleep.
"""
