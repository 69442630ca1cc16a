"""LSP frames in a byte stream, seen by the thin client (``shared/client.py``) without
changing it: it splits what the editor and the daemon send to find ``initialize``,
``shutdown`` and ``exit``, while the bytes themselves go on as they came. Standard library
only, as the client is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

__all__ = ["FrameSplitter", "decode_object", "encode_frame"]


class FrameSplitter:
    """Well-formed LSP frames out of a byte stream, for looking at (the bytes go on as
    they came). It resynchronises as ``lsp/framing.py`` does: ``Content-Length:`` cannot occur
    in a valid JSON body, so wherever it appears a new frame starts there (a body cut short
    by the next frame is given up, as the server answers it with a parse error). Junk it
    cannot resynchronise in (8 KB without a header) ends the looking: ``broken`` turns true."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None  # of the body being waited for
        self._scanned = 0  # bytes of that body searched for a header already
        self.broken = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The bodies completed by ``data``."""
        if self.broken:
            return
        self._buffer += data
        while True:
            if self._length is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > 8192:
                        self.broken = True
                    return
                length = _content_length(bytes(self._buffer[:end]))
                if length is None:
                    restart = self._buffer.find(_HEADER, 1)
                    if restart < 0:
                        self.broken = True
                        return
                    del self._buffer[:restart]
                    continue
                del self._buffer[: end + 4]
                self._length, self._scanned = length, 0
            # Only what arrived since the last look is searched (a large body comes in many
            # chunks), from a header's length back, in case one straddles two chunks.
            start = max(0, self._scanned - len(_HEADER))
            cut = self._buffer.find(_HEADER, start, self._length)
            self._scanned = min(len(self._buffer), self._length)
            if cut >= 0:  # the next frame starts inside this body: this one was cut short
                del self._buffer[:cut]
                self._length = None
                continue
            if len(self._buffer) < self._length:
                return
            body = bytes(self._buffer[: self._length])
            del self._buffer[: self._length]
            self._length = None
            yield body

    def unfinished(self) -> bytes:
        """The bytes held of a frame not yet complete, as a stream would carry them."""
        if self._length is None:
            return bytes(self._buffer)
        return b"Content-Length: %d\r\n\r\n" % self._length + bytes(self._buffer)


_HEADER = b"Content-Length:"


def _content_length(headers: bytes) -> int | None:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def encode_frame(message: dict[str, Any]) -> bytes:
    # As lsp/early_start.py writes its frames (that module is not the client's to import:
    # asyncio and the framing it loads would cost every window's start).
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def decode_object(body: bytes) -> dict[str, Any] | None:
    """A body as a JSON object, or None (not JSON, or not an object)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
