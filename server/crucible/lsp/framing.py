"""FrameReader: the LSP base protocol's framing (``Content-Length`` headers) read defensively.

pygls's reader trusts the stream: it buffers whatever ``Content-Length`` says (no cap: a header
of 10^12 makes it try), skips a frame whose headers it does not understand without a word, and
once a length is wrong it stays out of step for good. This reader never holds more than one
permitted body, and finds the next frame again after any damage.

What it yields, one per call of ``next()``:

    Frame(body)                a body of the declared length, not yet decoded (jsonrpc.py does)
    FrameError(kind, id, ...)  a frame that cannot be served; ``id`` is the request's id when
                               the start of its body shows one, so its sender can be answered
    None                       end of input

The rules:

* Header lines end with CRLF (a bare LF is accepted); header names are case-insensitive; only
  ``Content-Length`` matters, other headers (``Content-Type``) are skipped; a header block ends
  with an empty line. Empty lines between frames are skipped.
* A block without a valid ``Content-Length`` (missing, negative, not a number) is a
  ``FrameError(MISSING_LENGTH)``; the body that follows has no known end, so it is skipped as
  junk until the next frame start (below).
* A ``Content-Length`` above ``max_body`` is a ``FrameError(TOO_LARGE)``: the body is read and
  dropped in chunks as it arrives, never held, so memory stays flat whatever the header claims.
* Resynchronisation: the bytes ``Content-Length: <digits>`` followed by a line break never occur
  in a valid JSON body (outside a string ``C`` starts no JSON token; inside one a raw line break
  is forbidden). So wherever they occur inside a body, an oversized body being dropped, or junk
  between frames, a new frame starts there: the damaged frame is reported and the next one is
  served. A body whose declared length is too long therefore cannot swallow the frames after it.
* Bytes outside any frame (junk) are dropped with a count, not answered: they carry no request.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass, field

CHUNK = 1 << 16  # bytes asked of the stream at a time
# The largest message body served. Past it the body is dropped unread: a document of tens of
# megabytes is already far past what completions can use, and JSON escaping can double its
# size on the wire; 64 MiB keeps a broken or hostile client from making the server allocate
# what its header claims (clangd draws the same line at 1 GiB).
MAX_MESSAGE_BYTES = 64 << 20
MAX_HEADER_LINE = 8 << 10  # a longer "header line" is junk
_OVERLAP = 64  # bytes kept when dropping junk, in case a frame start straddles two chunks

# A frame start, anywhere: the header name, a length, a line break.
_FRAME_START = re.compile(rb"content-length[ \t]*:[ \t]*[0-9]+[ \t]*\r?\n", re.IGNORECASE)
_HINTS = (b"ontent-", b"ONTENT-")  # fast literal search before the regex confirms a start
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:[ \t]*(.*?)[ \t]*")
_LENGTH = re.compile(rb"[0-9]{1,20}")
# The header block every client writes (vscode-jsonrpc: the length alone; pygls: and its type).
_PLAIN_HEADERS = re.compile(
    rb"Content-Length: ([0-9]{1,20})\r\n"
    rb"(?:Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n)?\r\n"
)
# The request id at the start of a body, where clients put it: {"jsonrpc":"2.0","id":7,...}.
# Only string-valued keys may come before it, so the match is a top-level member for sure.
_LEADING_ID = re.compile(
    rb'\s*\{(?:\s*"(?:jsonrpc|method)"\s*:\s*"[^"\\]*"\s*,)*'
    rb'\s*"id"\s*:\s*(-?[0-9]{1,18}|"[^"\\]{0,256}")\s*[,}]'
)


class FrameFault(enum.Enum):
    MISSING_LENGTH = "a header block without a valid Content-Length"
    TOO_LARGE = "a message above the size limit"
    CUT_SHORT = "a body cut short by the next frame"


@dataclass(frozen=True)
class Frame:
    body: bytes
    # False when nothing the client sent after this frame was read yet (the reader's buffer
    # and its stream's are empty): whatever it sent next can only be handled on a later loop
    # turn, so a request's handler may run now instead of on the next turn with the same
    # order (``lsp/fast_lane.py``). True when unknown.
    more_buffered: bool = field(default=True, compare=False)
    # How long the frame was held, read but unhandled, behind the server's start-up load
    # (``lsp/early_start.py``); 0 when it is handled as it arrives. A request's debounce
    # counts it as time already waited (``AdaptiveDebounce.wait``'s ``waited_ms``).
    waited_s: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class FrameError:
    fault: FrameFault
    request_id: int | str | None  # the id seen at the start of the body, if any
    declared: int | None = None  # the Content-Length it declared, if any


def leading_id(data: bytes | bytearray) -> int | str | None:
    """The request id a body starts with, if it starts like a request (else None)."""
    match = _LEADING_ID.match(data, 0, 4096)
    if match is None:
        return None
    raw = match.group(1)
    if raw.startswith(b'"'):
        return raw[1:-1].decode("utf-8", "replace")
    return int(raw)


def frame_start(data: bytes | bytearray, start: int = 0, before: int | None = None) -> int:
    """Where the first frame start (``Content-Length: N`` + line break) in ``data`` at or after
    ``start`` begins, if it begins before ``before``; else -1. It may end past ``before``."""
    before = len(data) if before is None else before
    position = start
    while position < before:
        # A start before ``before`` has its hint ("ontent-", one byte in) before ``before + 8``:
        # searching further would rescan the frames already buffered behind this one.
        hits = [hit for hint in _HINTS if (hit := data.find(hint, position, before + 8)) >= 0]
        if not hits or min(hits) - 1 >= before:
            return -1
        hit = min(hits) - 1  # the "C"/"c" before "ontent-"
        if hit >= start and _FRAME_START.match(data, hit):
            return hit
        position = min(hits) + 1
    return -1


class FrameReader:
    """Frames from an asyncio stream, within ``max_body`` bytes each (see the module doc)."""

    def __init__(self, stream: asyncio.StreamReader, max_body: int) -> None:
        self._stream = stream
        self._max_body = max_body
        self._buffer = bytearray()
        self._eof = False
        # Whether the last read took everything its stream held: ``read(CHUNK)`` returns fewer
        # than CHUNK bytes only when it emptied the stream's buffer.
        self._drained = False
        self.junk_bytes = 0  # dropped outside any frame, for the log

    async def next(self) -> Frame | FrameError | None:
        if not self._buffer:
            await self._fill()  # a message usually arrives whole: then it is a plain frame
        buffered = self._plain_frame()
        if buffered is not None:
            return buffered
        length: int | None = None
        in_block = False
        while True:
            line = await self._header_line()
            if line is None:
                return None
            if not line:
                if not in_block:
                    continue  # blank lines between frames
                break
            header = _HEADER.fullmatch(line)
            if header is None:
                continue  # not a header: _header_line already looked for a frame start in it
            in_block = True
            if header.group(1).lower() == b"content-length":
                value = header.group(2)
                length = int(value) if _LENGTH.fullmatch(value) else None  # the last one wins
        if length is None:
            await self._fill_some()
            return FrameError(FrameFault.MISSING_LENGTH, leading_id(self._buffer))
        if length > self._max_body:
            return await self._drop_body(length)
        return await self._body(length)

    def _plain_frame(self) -> Frame | None:
        """The next frame when it is already buffered whole behind a plain header block, and
        its body holds no frame start: the common case, taken with one regex match instead of
        line by line (the same frame the general path below would return, at about a third
        of its cost)."""
        header = _PLAIN_HEADERS.match(self._buffer)
        if header is None:
            return None
        start = header.end()
        end = start + int(header.group(1))
        if end - start > self._max_body or end > len(self._buffer):
            return None
        if frame_start(self._buffer, start, end) >= 0:
            return None  # a length that lies: the general path cuts the body short
        body = bytes(self._buffer[start:end])
        del self._buffer[:end]
        return Frame(body, bool(self._buffer) or not self._drained)

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await self._stream.read(CHUNK)
        if not data:
            self._eof = True
            return False
        self._drained = len(data) < CHUNK
        self._buffer += data
        return True

    async def _fill_some(self) -> None:
        """Make sure some bytes past a header block are buffered, when more may come at once."""
        if not self._buffer and not self._eof:
            try:
                await asyncio.wait_for(self._fill(), 0.05)
            except TimeoutError:
                pass

    async def _header_line(self) -> bytes | None:
        """The next line of the header part without its line break; junk is dropped on the way."""
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned, MAX_HEADER_LINE + 1)
            if end >= 0:
                # A frame starting inside the line: what precedes it is junk (a body sent
                # without headers, the tail of one whose length was too short, …).
                start = frame_start(self._buffer, 1, end + 1)
                line = bytes(self._buffer[: end if start < 0 else start]).rstrip(b"\r")
                if start >= 0 or (line and _HEADER.fullmatch(line) is None):
                    self._drop_junk(start if start >= 0 else end + 1)
                    scanned = 0
                    continue
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_HEADER_LINE:
                start = frame_start(self._buffer)
                self._drop_junk(start if start > 0 else len(self._buffer) - _OVERLAP)
                scanned = 0
                continue
            scanned = len(self._buffer)
            if not await self._fill():
                if self._buffer:
                    self._drop_junk(len(self._buffer))
                return None

    def _drop_junk(self, count: int) -> None:
        self.junk_bytes += count
        del self._buffer[:count]

    async def _body(self, length: int) -> Frame | FrameError | None:
        scanned = 0
        while len(self._buffer) < length:
            # Waiting for more: a frame start already here means the length lied (too long),
            # and waiting would hold up the frames behind it for good.
            start = frame_start(self._buffer, max(0, scanned - _OVERLAP))
            if start >= 0:
                return self._cut_short(start, length)
            scanned = len(self._buffer)
            if not await self._fill():
                return None  # input ended mid-body: the client is gone
        start = frame_start(self._buffer, max(0, scanned - _OVERLAP), length)
        if start >= 0:
            return self._cut_short(start, length)
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return Frame(body)

    def _cut_short(self, start: int, declared: int) -> FrameError:
        request_id = leading_id(self._buffer[:start])
        del self._buffer[:start]
        return FrameError(FrameFault.CUT_SHORT, request_id, declared)

    async def _drop_body(self, length: int) -> FrameError | None:
        """Read and forget ``length`` bytes, or up to a frame start found among them."""
        if not self._buffer and not await self._fill():
            return None
        request_id = leading_id(self._buffer)
        remaining = length
        while True:
            start = frame_start(self._buffer, 0, min(len(self._buffer), remaining))
            if start >= 0:
                del self._buffer[:start]
                break
            if len(self._buffer) >= remaining:
                del self._buffer[:remaining]
                break
            keep = min(_OVERLAP, len(self._buffer))
            remaining -= len(self._buffer) - keep
            del self._buffer[: len(self._buffer) - keep]
            if not await self._fill():
                return None
        return FrameError(FrameFault.TOO_LARGE, request_id, length)
