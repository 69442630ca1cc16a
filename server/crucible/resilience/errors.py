"""The errors the pool raises of its own; they extend the provider tree, so a caller that
handles ``ProviderTimeout`` / ``ProviderUnavailable`` handles these too::

    ProviderError                    (crucible.providers.errors)
    ├── RateLimited
    │   └── BudgetRefused            the team's budget refused the call (``call_budget.py``)
    ├── ProviderTimeout
    │   ├── FirstByteTimeout         an attempt produced no first chunk in time (then failover)
    │   │   └── NoFirstByte          not even while warming, ``warm_limit`` after it started
    │   └── DeadlineExceeded         the request's total deadline passed (retries and stream)
    └── ProviderUnavailable
        └── NoProviderAvailable      every member open, parked by Retry-After, or already tried

Anything else the pool raises is a member's own ``ProviderError`` (the last one, when every
candidate failed) or ``CancelledError``.
"""

from __future__ import annotations

from crucible.providers.errors import ProviderTimeout, ProviderUnavailable, RateLimited


class FirstByteTimeout(ProviderTimeout):
    pass


class NoFirstByte(FirstByteTimeout):
    """The provider did not start answering within the warm limit (15 s): stuck or overloaded,
    not merely slow."""


class DeadlineExceeded(ProviderTimeout):
    pass


class NoProviderAvailable(ProviderUnavailable):
    pass


class BudgetRefused(RateLimited):
    """The team's budget has no room for a call to this provider now (or this month): it was
    not asked, as if it had answered 429 with no Retry-After."""
