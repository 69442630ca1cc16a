"""The client log sink (``runtime/log.py``) and error replies without tracebacks
(``lsp/server.py``), on the real pygls protocol in this process.

No request handler of the running server can be made to raise from outside (they are written
not to), so the error reply is tested here: a handler registered on a real
``CrucibleLanguageServer`` raises, and the JSON that would go to the editor is read back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from pygls.protocol import JsonRPCRequestMessage
from tests.fakes.written import Written

from crucible.lsp.server import CrucibleLanguageServer
from crucible.runtime.log import (
    MESSAGE_ERROR,
    MESSAGE_INFO,
    MESSAGE_LOG,
    MESSAGE_WARNING,
    ClientLogHandler,
    message_type,
    one_line,
)


async def test_an_exception_in_a_handler_replies_one_line_without_traceback() -> None:
    server = CrucibleLanguageServer(backend=None)  # type: ignore[arg-type]

    @server.feature("crucible/explode")
    def explode(ls: CrucibleLanguageServer, params: Any) -> None:
        raise ValueError("the disk is on fire\nsecond line of detail")

    writer = Written()
    server.protocol.set_writer(writer)
    server.protocol.handle_message(
        JsonRPCRequestMessage(id=7, method="crucible/explode", params=None, jsonrpc="2.0")
    )
    await asyncio.sleep(0)
    replies = [m for m in writer.messages if m.get("id") == 7]
    assert len(replies) == 1
    error = replies[0]["error"]
    assert error["message"] == "ValueError: the disk is on fire"
    assert "traceback" not in json.dumps(error).lower()
    assert "File " not in json.dumps(error)


def _record(level: int, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("crucible.x", level, __file__, 1, message, (), exc_info)


def test_levels_map_to_message_types() -> None:
    assert message_type(logging.ERROR) == MESSAGE_ERROR
    assert message_type(logging.WARNING) == MESSAGE_WARNING
    assert message_type(logging.INFO) == MESSAGE_INFO
    assert message_type(logging.DEBUG) == MESSAGE_LOG


def test_client_text_is_one_line_summary_of_an_exception() -> None:
    try:
        raise OSError("disk\nfull")
    except OSError as exc:
        text = one_line(_record(logging.ERROR, "write failed", exc))
    assert text == "crucible.x: write failed (OSError: disk full)"
    assert one_line(_record(logging.ERROR, "boom\nTraceback (most recent call last):\n x")) == (
        "crucible.x: boom"
    )


async def test_buffered_before_connect_then_flushed_and_bounded() -> None:
    handler = ClientLogHandler(capacity=3)
    for i in range(5):
        handler.handle(_record(logging.INFO, f"m{i}"))
    assert handler.dropped == 2
    sent: list[tuple[int, str]] = []
    handler.connect(lambda kind, text: sent.append((kind, text)), asyncio.get_running_loop())
    await asyncio.sleep(0.01)
    assert [text for _, text in sent[:3]] == ["crucible.x: m0", "crucible.x: m1", "crucible.x: m2"]
    # The client is told how many it missed.
    assert sent[3][0] == MESSAGE_WARNING and "2 log messages were dropped" in sent[3][1]


async def test_a_record_logged_while_sending_is_not_sent_again() -> None:
    handler = ClientLogHandler()
    sent: list[str] = []
    echo = logging.getLogger("pygls.echo-test")

    def send(kind: int, text: str) -> None:
        sent.append(text)
        # What pygls does for every message it writes, at any level.
        handler.handle(_record(logging.WARNING, f"sending {text}"))
        echo.debug("sent")

    handler.connect(send, asyncio.get_running_loop())
    handler.handle(_record(logging.INFO, "hello"))
    await asyncio.sleep(0.01)
    assert sent == ["crucible.x: hello"]


async def test_a_congested_client_drops_instead_of_queueing() -> None:
    handler = ClientLogHandler()
    sent: list[str] = []
    handler.connect(lambda kind, text: sent.append(text), asyncio.get_running_loop(), lambda: True)
    for i in range(10):
        handler.handle(_record(logging.INFO, f"m{i}"))
    await asyncio.sleep(0.01)
    assert handler.dropped == 10
    assert sent == [] or "dropped" in sent[-1]
