"""Resilience: route provider calls around failures, within a deadline, without storms.

``pool.ProviderPool`` is itself a ``Provider``, and ``pool.py`` is the whole life of a request
(its docstring draws the sequence). The rest are primitives, each owning one rule and its own
state, each with its own tests:

- ``policy``   ResiliencePolicy: every knob, derived from ``config/settings.py`` (the defaults)
- ``breaker``  CircuitBreaker: closed / open / half_open per provider, with growing cooldowns
- ``backoff``  full-jitter waits, Retry-After, and the RetryBudget that prevents retry storms
- ``limiter``  AdaptiveLimiter: AIMD concurrency per provider, interactive before background
- ``stream``   PulledStream: a provider's stream read one chunk at a time in a raceable task
- ``probes``   HealthProbes: background probes while a circuit is open
- ``clock``    the injected clock and sleep every timer goes through
- ``errors``   the pool's own additions to the provider error tree
- ``member``   the plain record of one provider in the pool, its health and status snapshot

Nothing here imports httpx or pygls; time and randomness are injected, so unit tests run on a
fake clock and never sleep.
"""
