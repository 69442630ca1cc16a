"""lsp/framing.py and lsp/jsonrpc.py: frames cut from a byte stream, what a body is as a
JSON-RPC message, and the paths taken out of error replies."""

from __future__ import annotations

import asyncio
import json

import pytest
from lsprotocol.types import ResponseError

from crucible.lsp import jsonrpc
from crucible.lsp.framing import CHUNK, Frame, FrameError, FrameFault, FrameReader, frame_start
from crucible.lsp.protocol import _short


def _frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def _read_all(data: bytes, max_body: int = 1 << 20) -> list[Frame | FrameError]:
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    reader = FrameReader(stream, max_body)
    items: list[Frame | FrameError] = []
    while (item := await reader.next()) is not None:
        items.append(item)
    return items


GOOD = {"jsonrpc": "2.0", "id": 1, "method": "crucible/status"}


async def test_frames_with_extra_headers_and_any_case_are_read() -> None:
    data = (
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
        + _frame(GOOD)
        + b"content-length: 2\n\n{}"
    )
    assert await _read_all(data) == [Frame(json.dumps(GOOD).encode()), Frame(b"{}")]


async def test_a_length_that_lies_long_is_cut_at_the_next_frame() -> None:
    data = b'Content-Length: 900\r\n\r\n{"jsonrpc": "2.0", "id": 3, "method"' + _frame(GOOD)
    first, second = await _read_all(data)
    assert first == FrameError(FrameFault.CUT_SHORT, 3, 900)
    assert second == Frame(json.dumps(GOOD).encode())


async def test_an_oversized_body_is_dropped_and_its_request_id_kept() -> None:
    body = b'{"jsonrpc": "2.0", "id": "big", "method": "x", "params": "' + b"a" * 5000 + b'"}'
    data = b"Content-Length: %d\r\n\r\n" % len(body) + body + _frame(GOOD)
    first, second = await _read_all(data, max_body=1000)
    assert first == FrameError(FrameFault.TOO_LARGE, "big", len(body))
    assert second == Frame(json.dumps(GOOD).encode())


async def test_junk_between_frames_is_skipped_and_counted() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(b"garbage\x00\xff" + _frame(GOOD) + b"tail")
    stream.feed_eof()
    reader = FrameReader(stream, 1 << 20)
    assert await reader.next() == Frame(json.dumps(GOOD).encode())
    assert await reader.next() is None
    assert reader.junk_bytes == len(b"garbage\x00\xff") + len(b"tail")


def test_a_frame_start_is_never_found_inside_a_valid_json_body() -> None:
    # Inside a JSON string the line break is escaped, so the bytes never match.
    body = json.dumps({"text": "Content-Length: 12\r\n\r\nContent-Length: 5\n"}).encode()
    assert frame_start(body) == -1
    assert frame_start(b"xx\r\nContent-Length: 12\r\n") == 4


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"m"}', jsonrpc.Request(1, "m", None, False)),
        (b'{"jsonrpc":"2.0","method":"m","params":[]}', jsonrpc.Notification("m", [], True)),
        (b'{"jsonrpc":"2.0","id":true,"method":"m"}', jsonrpc.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":2,"method":"m","params":3}', jsonrpc.INVALID_REQUEST),
        (b"\xff", jsonrpc.PARSE_ERROR),
        (b'{"a": Infinity}', jsonrpc.PARSE_ERROR),
    ],
)
def test_parse_body(body: bytes, expected: object) -> None:
    parsed = jsonrpc.parse_body(body)
    if isinstance(expected, int):
        assert isinstance(parsed, jsonrpc.Invalid) and parsed.code == expected
    else:
        assert parsed == expected


def test_file_paths_are_taken_out_of_error_replies() -> None:
    error = ResponseError(
        code=-32603,
        message="OSError: [Errno 13] Permission denied: '/home/ada/.cache/crucible/x.db'\nmore",
        data={"traceback": ['File "/usr/lib/x.py"'], "uri": "file:///home/ada/secret.py"},
    )
    short = _short(error)
    assert short.message == "OSError: [Errno 13] Permission denied: '<path>'"
    assert short.data == {"uri": "<path>"}
    assert jsonrpc.redact(r"C:\Users\ada\x.py and ~/notes.txt") == "<path> and <path>"
    kept = "crucible/status after shutdown; expected int @ $.params.position.line; a/b"
    assert jsonrpc.redact(kept) == kept


# The plain-frame path (a whole frame behind a plain header block, cut with one match) must
# cut exactly what the line-by-line path cuts, however the bytes arrive.
_PLAIN_CASES = [
    _frame(GOOD) * 3,
    b"Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}"
    + _frame(GOOD),
    b"Content-Length: 2\r\nContent-Type: text/plain\r\n\r\n{}" + _frame(GOOD),  # another type
    b'Content-Length: 900\r\n\r\n{"jsonrpc": "2.0", "id": 3, "method"' + _frame(GOOD),  # lies long
    b"Content-Length: 4\r\n\r\n{}" + _frame(GOOD),  # lies short: ends inside the next header
    b"Content-Length: 5000\r\n\r\n" + b"a" * 5000 + _frame(GOOD),  # over the limit below
    b"junk" + _frame(GOOD) + b"\r\n\r\n" + _frame(GOOD) + b"Content-Length: x\r\n\r\n{}",
    _frame({"text": "Content-Length: 12\\r\\n inside a string"}) + _frame(GOOD),
    b"Content-Length: 2\r\n\r\n{}Content-Length: 10\r\n\r\n{",  # input ends mid-body
]


async def _read_in_chunks(data: bytes, size: int, plain: bool) -> tuple[list[object], int]:
    stream = asyncio.StreamReader()
    reader = FrameReader(stream, 1000)
    if not plain:
        reader._plain_frame = lambda: None  # type: ignore[method-assign]

    async def feed() -> None:
        for start in range(0, len(data), size):
            stream.feed_data(data[start : start + size])
            await asyncio.sleep(0)
        stream.feed_eof()

    feeding = asyncio.ensure_future(feed())
    items: list[object] = []
    while (item := await reader.next()) is not None:
        items.append(item)
    await feeding
    return items, reader.junk_bytes


@pytest.mark.parametrize("data", _PLAIN_CASES)
@pytest.mark.parametrize("size", [1, 7, 64, 1 << 16])
async def test_plain_frames_are_cut_as_the_general_path_cuts_them(data: bytes, size: int) -> None:
    assert await _read_in_chunks(data, size, True) == await _read_in_chunks(data, size, False)


async def test_a_frame_says_whether_anything_was_read_behind_it() -> None:
    """``Frame.more_buffered`` is False only for a frame with nothing after it in the reader's
    buffer or its stream's: then whatever the client sent next is handled on a later loop
    turn (the fast lane runs such a request at once)."""
    stream = asyncio.StreamReader()
    reader = FrameReader(stream, 1 << 20)
    first, second = _frame(GOOD), _frame({**GOOD, "id": 2})
    stream.feed_data(first + second)
    assert (await reader.next()).more_buffered is True  # type: ignore[union-attr]
    assert (await reader.next()).more_buffered is False  # type: ignore[union-attr]
    stream.feed_data(first)
    assert (await reader.next()).more_buffered is False  # type: ignore[union-attr]
    # A frame that fills a whole read exactly, with more waiting in the stream: it does not
    # know what follows it, so it claims more.
    filler = CHUNK - len(_frame({**GOOD, "params": {"text": ""}}))
    exact = _frame({**GOOD, "params": {"text": "x" * filler}})
    exact = _frame({**GOOD, "params": {"text": "x" * (filler - (len(exact) - CHUNK))}})
    assert len(exact) == CHUNK  # (the header's length has more digits: taken off again)
    stream.feed_data(exact + first)
    whole = await reader.next()
    assert isinstance(whole, Frame) and len(whole.body) > CHUNK // 2 and whole.more_buffered
    assert (await reader.next()).more_buffered is False  # type: ignore[union-attr]
    # A frame cut the general way (a header the plain match does not know) claims nothing.
    stream.feed_data(b"X-Other: 1\r\n" + first)
    assert (await reader.next()).more_buffered is True  # type: ignore[union-attr]
