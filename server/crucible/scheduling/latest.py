"""LatestWins: per document, only the newest request is worth answering.

Each request takes a ``Ticket`` for its document; taking a new one supersedes the previous
ticket, whose holder is told at once (``ticket.superseded`` completes) so it can answer
empty instead of leaving the editor waiting for a suggestion for text that no longer exists.
"""

from __future__ import annotations

import asyncio


class Ticket:
    __slots__ = ("document", "superseded")

    def __init__(self, document: str) -> None:
        self.document = document
        self.superseded: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def is_current(self) -> bool:
        return not self.superseded.done()


class LatestWins:
    def __init__(self) -> None:
        self._current: dict[str, Ticket] = {}

    def begin(self, document: str) -> Ticket:
        """A ticket for a new request on ``document``; the previous one is superseded."""
        ticket = Ticket(document)
        previous = self._current.get(document)
        self._current[document] = ticket
        if previous is not None and not previous.superseded.done():
            previous.superseded.set_result(None)
        return ticket

    def end(self, ticket: Ticket) -> None:
        """The request holding ``ticket`` has been answered."""
        if self._current.get(ticket.document) is ticket:
            del self._current[ticket.document]

    def forget(self, document: str) -> None:
        """The document was closed: supersede whatever is pending for it."""
        ticket = self._current.pop(document, None)
        if ticket is not None and not ticket.superseded.done():
            ticket.superseded.set_result(None)

    def __len__(self) -> int:
        return len(self._current)
