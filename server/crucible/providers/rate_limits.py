"""Rate-limit headers of gateways and hosted APIs: when a provider's quota is spent, and for how
long. Pure: headers in, a ``QuotaPause`` (``providers/base.py``) or None out.

A gateway in front of an inference cluster (LiteLLM, an OpenAI-compatible proxy before vLLM)
or a hosted API says on every answer how much of its quota is left and when it resets::

    x-ratelimit-remaining-requests: 0          OpenAI, LiteLLM, vLLM gateways, Groq, Mistral
    x-ratelimit-reset-requests: 6m0s
    x-ratelimit-remaining-tokens: 0
    x-ratelimit-reset-tokens: 1.5s
    anthropic-ratelimit-requests-remaining: 0  Anthropic (reset as an RFC 3339 time)
    anthropic-ratelimit-requests-reset: 2026-12-07T00:10:00Z

A window whose remaining count is 0 is spent until its reset: asking before then only earns a
429. The reset is written as a Go duration (``1s``, ``6m0s``, ``1h2m3.5s``, ``20ms``, what
OpenAI sends), plain seconds (``12``, ``0.5``), a Unix time (a number past 10^9), or an RFC 3339
/ ISO 8601 time. A value that is none of these is ignored (no pause), as is a negative one.
How long a pause may last is the pool's to bound (``park_cap``, 300 s).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime

from crucible.providers.base import QuotaPause

# (remaining header, reset header, window name), lower-cased as httpx gives them.
WINDOWS: tuple[tuple[str, str, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset", "requests"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset", "tokens"),
)
_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns))+")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_UNIX_TIME = 1e9  # a "seconds" value past this is a point in time (2001 onwards), not a wait


def parse_reset(value: str, now: float) -> float | None:
    """Seconds until a reset header's moment; ``now`` is the wall clock (``time.time()``)."""
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        return max(0.0, number - now) if number >= _UNIX_TIME else number
    if _GO_DURATION.fullmatch(text):
        return sum(float(n) * _UNIT_S[unit] for n, unit in _GO_PART.findall(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _remaining(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def reports_quota(headers: Mapping[str, str]) -> bool:
    """Whether these headers say anything of the quota (a probe's answer often does not)."""
    return any(_remaining(headers, remaining) is not None for remaining, _, _ in WINDOWS)


def spent_quota(headers: Mapping[str, str], now: float) -> QuotaPause | None:
    """The longest wait among the windows these headers say are spent (remaining 0), or None
    when none is (or a spent window names no reset it can read)."""
    return _longest_reset(headers, now, spent_only=True)


def refusal_pause(headers: Mapping[str, str], now: float) -> QuotaPause | None:
    """For a 429 without Retry-After: the spent windows' reset, else the longest reset named
    (a gateway may refuse on a limit it does not count down, a concurrency or budget limit)."""
    spent = spent_quota(headers, now)
    return spent if spent is not None else _longest_reset(headers, now, spent_only=False)


def _longest_reset(
    headers: Mapping[str, str], now: float, *, spent_only: bool
) -> QuotaPause | None:
    """The longest readable reset among the windows (only those at remaining 0 when
    ``spent_only``), or None."""
    longest: QuotaPause | None = None
    for remaining, reset, window in WINDOWS:
        if spent_only:
            left = _remaining(headers, remaining)
            if left is None or left > 0:
                continue
        seconds = parse_reset(headers.get(reset, ""), now)
        if seconds is not None and (longest is None or seconds > longest.seconds):
            longest = QuotaPause(seconds, window)
    return longest
