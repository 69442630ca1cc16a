"""CallBudget: the pool's seam for a budget a provider call must fit in (a team's limits).

The pool asks a ``CallBudget`` before each attempt at a provider, with the call's
:class:`CallCost`, and tells it what the answer used once the attempt ends. What the budget
is (a token bucket in the team's Redis, ``team/budget.py``) is not the pool's business: this
module is the whole contract, so ``resilience/`` imports nothing above it.

The rules the pool keeps (``pool.py``):

* asked after a concurrency permit is held, before the breaker's admission: a call the
  budget refuses holds nothing and says nothing of the provider's health;
* refused: the provider is skipped for this request, as if it had answered 429 with no
  Retry-After (the next candidate is asked at once; with none, the request ends with
  :class:`~crucible.resilience.errors.BudgetRefused`); ``park_s`` > 0 parks it that long;
* every admitted attempt is settled exactly once, with the characters of text it yielded;
* a hedge never goes to a provider with a budget: it would spend a call the team pays for to
  save a few hundred milliseconds.

Raises nothing; ``admit`` must answer within its own small time budget (a few ms), whatever
the budget's storage does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from crucible.providers.base import ChatRequest, FimRequest

__all__ = ["BudgetVerdict", "CallBudget", "CallCost", "Charge", "tokens_in"]

# Characters per token: the usual rule of thumb for English and code with BPE tokenizers
# (OpenAI's "a token is ~4 characters"); an estimate, corrected after the answer where the
# budget corrects anything.
CHARS_PER_TOKEN = 4


def tokens_in(chars: int) -> int:
    """The estimated tokens of ``chars`` characters (rounded up: a few characters cost one)."""
    return math.ceil(max(0, chars) / CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class CallCost:
    """What one call is estimated to cost before it is made."""

    prompt_chars: int
    max_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return tokens_in(self.prompt_chars)

    @property
    def tokens(self) -> int:
        """The charge before the call: the prompt's estimate plus the most it may answer."""
        return self.prompt_tokens + self.max_tokens

    @classmethod
    def of_fim(cls, request: FimRequest) -> CallCost:
        extra = sum(len(f.path) + len(f.text) for f in request.extra)
        return cls(len(request.prefix) + len(request.suffix) + extra, request.max_tokens)

    @classmethod
    def of_chat(cls, request: ChatRequest) -> CallCost:
        return cls(sum(len(m.content) for m in request.messages), request.max_tokens)


class Charge(Protocol):
    """An admitted call's claim on the budget; settled once when its attempt ends."""

    def settle(self, answer_chars: int) -> None:
        """The attempt ended having yielded ``answer_chars`` characters (0: none)."""
        ...


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """The budget's answer for one call: a ``charge`` to settle, or why not."""

    charge: Charge | None
    reason: str = ""
    park_s: float = 0.0  # > 0: do not ask this provider again for that long (month spent)

    @property
    def allowed(self) -> bool:
        return self.charge is not None


class CallBudget(Protocol):
    def limits(self, provider: str) -> bool:
        """Whether calls to ``provider`` are budgeted at all (no: never asked about it)."""
        ...

    async def admit(self, provider: str, cost: CallCost, *, background: bool) -> BudgetVerdict:
        """Whether a call to ``provider`` costing ``cost`` may be made now. Fast: a few ms."""
        ...
