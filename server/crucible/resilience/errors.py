"""The errors the pool raises of its own; they extend the provider tree, so a caller that
handles ``ProviderTimeout`` / ``ProviderUnavailable`` handles these too::

    ProviderError                    (crucible.providers.errors)
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

from crucible.providers.errors import ProviderTimeout, ProviderUnavailable


class FirstByteTimeout(ProviderTimeout):
    pass


class NoFirstByte(FirstByteTimeout):
    """The provider did not start answering within the warm limit (15 s): stuck or overloaded,
    not merely slow."""


class DeadlineExceeded(ProviderTimeout):
    pass


class NoProviderAvailable(ProviderUnavailable):
    pass
