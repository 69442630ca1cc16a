"""Prefetch: the next suggestion, computed in the background as if the shown one were accepted.

``accepted`` gives the document and cursor after accepting a suggestion; ``Prefetches`` owns
the background tasks, at most one per document: a document that already has one gets no
other, a document the user moved away from has its task cancelled (which abandons its flight
unless a request joined it), and ``aclose`` stops them all before providers close.

What to prefetch and when (only while no provider stream runs) is the service's decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from crucible.context.snapshot import DocumentSnapshot

logger = logging.getLogger(__name__)


def accepted(
    snapshot: DocumentSnapshot, offset: int, text: str, replace_suffix: int
) -> tuple[DocumentSnapshot, int]:
    """The document once ``text`` (replacing ``replace_suffix`` characters after ``offset``)
    is accepted, and the cursor after it."""
    document = snapshot.text
    after = document[:offset] + text + document[offset + replace_suffix :]
    return replace(snapshot, text=after, version=snapshot.version + 1), offset + len(text)


class Prefetches:
    """At most one background prefetch task per document."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, document: str) -> bool:
        return document in self._tasks

    def start(self, document: str, work: Coroutine[Any, Any, None]) -> None:
        if document in self._tasks:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work, name=f"prefetch {document}")
        self._tasks[document] = task
        task.add_done_callback(lambda done: self._done(document, done))

    def cancel(self, document: str) -> None:
        task = self._tasks.pop(document, None)
        if task is not None:
            task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, document: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(document) is task:
            del self._tasks[document]
        if not task.cancelled() and task.exception() is not None:
            # Background work: its failure is the provider's, already counted and logged.
            logger.debug("prefetch for %s failed: %r", document, task.exception())
