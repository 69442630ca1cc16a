"""stdin as an asyncio stream, for ``lsp/framing.py``'s reader: a pipe transport, or a daemon
thread for a regular file. Stdlib only: ``lsp/early_start.py`` reads stdin with it before pygls
is imported, and the server goes on reading the same stream."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading

from crucible.lsp.framing import CHUNK

logger = logging.getLogger(__name__)


async def stdin_stream() -> asyncio.StreamReader:
    """stdin as an asyncio stream: a pipe transport, or a daemon thread for a regular file."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except ValueError:  # not a pipe, socket or terminal: a thread that may block does the reads
        logger.info("stdin is not a pipe; reading it in a thread")
        threading.Thread(
            target=_pump, args=(sys.stdin.buffer.fileno(), reader, loop), daemon=True
        ).start()
    return reader


def _pump(fd: int, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
    while True:
        try:
            data = os.read(fd, CHUNK)
        except OSError:
            data = b""
        try:
            if data:
                loop.call_soon_threadsafe(reader.feed_data, data)
            else:
                loop.call_soon_threadsafe(reader.feed_eof)
        except RuntimeError:  # the loop is closed: the server is done
            return
        if not data:
            return
