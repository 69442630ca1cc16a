"""LatestWins: per document, only the newest request is worth answering.

Each request takes a ``Ticket`` for its document; taking a new one supersedes the previous
ticket, whose holder is told at once (``ticket.superseded`` completes) so it can answer
empty instead of leaving the editor waiting for a suggestion for text that no longer exists.

A request for the very same document state (text and cursor) as the pending one does not
supersede it: nothing the first one would answer is stale. That is a client asking twice for
one keystroke (Neovim with both inline completion and the completion menu), and both are
answered; a later request supersedes them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class _Slot:
    """The pending requests for one state of one document."""

    __slots__ = ("holders", "state", "superseded")

    def __init__(self, state: Hashable | None) -> None:
        self.state = state
        self.holders = 1
        self.superseded: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Ticket:
    __slots__ = ("_slot", "document")

    def __init__(self, document: str, slot: _Slot) -> None:
        self.document = document
        self._slot = slot

    @property
    def superseded(self) -> asyncio.Future[None]:
        return self._slot.superseded

    @property
    def is_current(self) -> bool:
        return not self._slot.superseded.done()


class LatestWins:
    def __init__(self) -> None:
        self._current: dict[str, _Slot] = {}

    def begin(self, document: str, state: Hashable | None = None) -> Ticket:
        """A ticket for a new request on ``document``. The pending ones are superseded,
        unless they were asked for the same ``state`` (None never matches)."""
        previous = self._current.get(document)
        if (
            previous is not None
            and state is not None
            and previous.state == state
            and not previous.superseded.done()
        ):
            previous.holders += 1
            return Ticket(document, previous)
        slot = self._current[document] = _Slot(state)
        if previous is not None and not previous.superseded.done():
            previous.superseded.set_result(None)
        return Ticket(document, slot)

    def end(self, ticket: Ticket) -> None:
        """The request holding ``ticket`` has been answered."""
        slot = ticket._slot
        slot.holders -= 1
        if slot.holders <= 0 and self._current.get(ticket.document) is slot:
            del self._current[ticket.document]

    def forget(self, document: str) -> None:
        """The document was closed: supersede whatever is pending for it."""
        slot = self._current.pop(document, None)
        if slot is not None and not slot.superseded.done():
            slot.superseded.set_result(None)

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, document: object) -> bool:
        """Whether a request for ``document`` is pending."""
        return document in self._current
