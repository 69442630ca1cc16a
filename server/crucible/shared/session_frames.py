"""``SessionFrames``: a daemon session's frames, held where a plain server on stdio holds
them: behind ``initialize`` until it is handled, and ``exit`` until the requests before it
are answered.

The thin client answers the editor's ``initialize`` itself, at once (``shared/client.py``), so
the editor sends what follows (``initialized``, ``didOpen``, the first completion) without
waiting, and the daemon reads them right behind ``initialize``. pygls runs the ``initialize``
handler as a task, which awaits the session's start (``App.start``) after applying the
editor's ``initializationOptions``: the frames behind it would be dispatched meanwhile, to a
session still on its default configuration (found with the e2e suite run through the daemon:
a code action listed and a status asked there saw the default provider, not the one the
editor configured). ``exit`` right behind ``shutdown`` would end the session, and close its
connection, before ``shutdown`` (which closes the session's providers and cache) is
answered. A plain server on stdio holds both the same way (``lsp/early_start.py``,
``EarlyFrames``); a TCP client waits for each answer itself.

Frames are looked at until the ``initialize`` request (the first an editor sends; a client
that sends others before it gets -32002 for them), at most ``LOOK_FRAMES``; after it only
small bodies that contain ``"exit"`` are parsed. Every frame is passed on unchanged.
Errors: none of its own; a read's exception reaches the server as it would.
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
EXIT = "exit"
# How long the frames behind ``initialize`` wait for it, and ``exit`` for the requests
# before it (as ``early_start`` waits).
INITIALIZE_HANDLED_S = 30.0
REQUESTS_ANSWERED_S = 5.0
LOOK_FRAMES = 16  # frames looked at for initialize, at most
_SMALL = 256  # an exit notification's body is ~40 bytes


class SessionFrames:
    """A ``FrameSource`` (``lsp/server.py``) over ``reader``; ``requests`` are the protocol's
    requests in progress by id (pygls's ``_request_futures``): a request is there once
    dispatched, until answered."""

    def __init__(self, reader: FrameReader, requests: Mapping[Any, Any]) -> None:
        self._reader = reader
        self._requests = requests
        self._looking = LOOK_FRAMES
        self._initialize: jsonrpc.MsgId | None = None

    @property
    def junk_bytes(self) -> int:
        return self._reader.junk_bytes

    async def next(self) -> Frame | FrameError | None:
        if self._initialize is not None:
            future = self._requests.get(self._initialize)
            self._initialize = None
            if future is not None and not await _answered([future], INITIALIZE_HANDLED_S):
                logger.warning(
                    "initialize not handled in %g s: serving what followed it", INITIALIZE_HANDLED_S
                )
        item = await self._reader.next()
        if not isinstance(item, Frame):
            return item
        if self._looking:
            self._looking -= 1
            parsed = jsonrpc.parse_body(item.body)
            if isinstance(parsed, jsonrpc.Request) and parsed.method == INITIALIZE:
                self._looking = 0
                self._initialize = parsed.id
        elif len(item.body) <= _SMALL and b'"exit"' in item.body:
            parsed = jsonrpc.parse_body(item.body)
            if isinstance(parsed, jsonrpc.Notification) and parsed.method == EXIT:
                await _answered(list(self._requests.values()), REQUESTS_ANSWERED_S)
        return item


async def _answered(futures: list[Any], within_s: float) -> bool:
    """Whether every one of ``futures`` finished within ``within_s`` seconds."""
    if not futures:
        return True
    _, pending = await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=within_s)
    return not pending
