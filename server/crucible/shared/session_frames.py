"""``InitializeFirst``: a daemon session's frames, held behind its ``initialize`` until that is
handled.

The thin client answers the editor's ``initialize`` itself, at once (``shared/client.py``), so
the editor sends what follows (``initialized``, ``didOpen``, the first completion) without
waiting, and the daemon reads them right behind ``initialize``. pygls runs the ``initialize``
handler as a task, which awaits the session's start (``App.start``) after applying the
editor's ``initializationOptions``: the frames behind it would be dispatched meanwhile, to a
session still on its default configuration (measured: a code action listed and a completion
asked there went to the default provider, not the one the editor configured). A plain server
on stdio holds them the same way (``lsp/early_start.py``, ``EarlyFrames``); a TCP client
waits for the answer itself.

Only the first frame is looked at (the first an editor sends is ``initialize``); every frame
is passed on unchanged. Errors: none of its own; a read's exception reaches the server as it
would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from crucible.lsp import jsonrpc
from crucible.lsp.framing import Frame, FrameError, FrameReader

logger = logging.getLogger(__name__)

INITIALIZE = "initialize"
# How long the frames behind ``initialize`` wait for it (as ``early_start`` waits).
INITIALIZE_HANDLED_S = 30.0


class InitializeFirst:
    """A ``FrameSource`` (``lsp/server.py``) over ``reader``; ``requests`` are the protocol's
    requests in progress by id (pygls's ``_request_futures``), where ``initialize`` is found
    once dispatched."""

    def __init__(self, reader: FrameReader, requests: Mapping[Any, Any]) -> None:
        self._reader = reader
        self._requests = requests
        self._first = True
        self._initialize: jsonrpc.MsgId | None = None

    @property
    def junk_bytes(self) -> int:
        return self._reader.junk_bytes

    async def next(self) -> Frame | FrameError | None:
        if self._initialize is not None:
            await self._handled(self._initialize)
            self._initialize = None
        item = await self._reader.next()
        if self._first and isinstance(item, Frame):
            self._first = False
            parsed = jsonrpc.parse_body(item.body)
            if isinstance(parsed, jsonrpc.Request) and parsed.method == INITIALIZE:
                self._initialize = parsed.id
        return item

    async def _handled(self, msg_id: jsonrpc.MsgId) -> None:
        """Until the ``initialize`` handler has finished (its answer is sent by then)."""
        future = self._requests.get(msg_id)
        if future is None:  # answered already, or refused before any handler ran
            return
        done, _ = await asyncio.wait({asyncio.wrap_future(future)}, timeout=INITIALIZE_HANDLED_S)
        if not done:
            logger.warning(
                "initialize not handled in %g s: serving what followed it", INITIALIZE_HANDLED_S
            )
