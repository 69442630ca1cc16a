"""``lsp/early_start.py``: ``initialize`` answered before the server exists, every frame read
meanwhile handed to the server in order, and every request answered exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from crucible.app import App, build_server
from crucible.lsp.capabilities import initialize_result
from crucible.lsp.early_start import EarlyFrames, early_capabilities, encode_frame
from crucible.lsp.framing import MAX_MESSAGE_BYTES, Frame, FrameReader
from crucible.lsp.server import CrucibleLanguageServer

CAPABILITIES = {"general": {"positionEncodings": ["utf-8"]}}


def request(msg_id: int | str, method: str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return encode_frame(message)


def notify(method: str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return encode_frame(message)


def initialize(msg_id: int = 1, **params: Any) -> bytes:
    return request(
        msg_id, "initialize", {"processId": None, "capabilities": CAPABILITIES, **params}
    )


def did_open(uri: str = "file:///w/a.py") -> bytes:
    document = {"uri": uri, "languageId": "python", "version": 1, "text": "def f():\n    "}
    return notify("textDocument/didOpen", {"textDocument": document})


class Output:
    """Both writers, the early one and the server's, into one ordered list."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.early: list[dict[str, Any]] = []

    def write_early(self, data: bytes) -> None:
        message = json.loads(data.split(b"\r\n\r\n", 1)[1])
        self.early.append(message)
        self.messages.append(message)

    def write(self, data: bytes) -> None:
        self.messages.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))

    def close(self) -> None:
        pass

    def answers(self) -> dict[Any, list[dict[str, Any]]]:
        found: dict[Any, list[dict[str, Any]]] = {}
        for message in self.messages:
            if "method" not in message:
                found.setdefault(message.get("id"), []).append(message)
        return found

    def answer_order(self) -> list[Any]:
        return [m.get("id") for m in self.messages if "method" not in m]


class Session:
    """An early start over an in-memory stdin: frames fed, the server loaded on demand."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.stream = asyncio.StreamReader()
        self.output = Output()
        self.frames = EarlyFrames(
            FrameReader(self.stream, MAX_MESSAGE_BYTES), self.output.write_early
        )
        loop = asyncio.get_running_loop()
        self.loaded: asyncio.Future[None] = loop.create_future()
        self.reading = asyncio.ensure_future(self.frames.read_until(self.loaded))
        self.server: CrucibleLanguageServer | None = None

    def feed(self, *frames: bytes) -> None:
        for frame in frames:
            self.stream.feed_data(frame)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def hand_over(self) -> asyncio.Task[int]:
        """The server 'finished loading': built, handed the frames, serving."""
        env = {
            "XDG_CONFIG_HOME": str(self.tmp_path / "none"),
            "XDG_CACHE_HOME": str(self.tmp_path / "cache"),
        }
        self.loaded.set_result(None)
        await asyncio.wait_for(self.reading, 5)
        server = build_server(App(config_path=self.tmp_path / "absent.toml", env=env))
        server.protocol.set_writer(self.output)
        self.frames.hand_over(server.protocol)
        self.server = server
        return asyncio.ensure_future(server._serve(self.frames))

    async def finish(self, serving: asyncio.Task[int], shutdown_id: int) -> int:
        """shutdown, its answer awaited (as a client does), then exit; the exit code."""
        self.feed(request(shutdown_id, "shutdown"))
        await self.until(lambda: shutdown_id in self.output.answers())
        self.feed(notify("exit"))
        return await asyncio.wait_for(serving, 10)

    async def until(self, done: Any) -> None:
        for _ in range(1000):
            if done():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out; output: {self.output.messages}")


async def test_initialize_is_answered_before_the_server_loads(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.feed(initialize(1))
    await session.settle()
    assert session.output.early == [
        {"jsonrpc": "2.0", "id": 1, "result": initialize_result(CAPABILITIES)}
    ]
    assert not session.reading.done()  # still reading, still loading
    serving = await session.hand_over()
    assert await session.finish(serving, 2) == 0
    answers = session.output.answers()
    assert len(answers[1]) == 1  # the server's own initialize answer went nowhere
    assert answers[2] == [{"jsonrpc": "2.0", "id": 2, "result": None}]


async def test_a_burst_before_the_handover_is_served_in_order_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = Session(tmp_path)
    session.feed(
        initialize(1),
        notify("initialized", {}),
        did_open(),
        request(2, "crucible/status", {}),
        b'Content-Length: 20\r\n\r\n{"id": 3, "jsonrpc"',  # not JSON
        request(4, "textDocument/hover", {"textDocument": {"uri": "file:///w/a.py"}}),  # bad
        request(5, "crucible/status", {}),
        request(6, "shutdown"),
        request(7, "crucible/status", {}),  # after shutdown
        notify("exit"),
    )
    await session.until(lambda: session.frames._ended)  # all read before the handover
    assert [m["id"] for m in session.output.early] == [1]
    serving = await session.hand_over()
    with caplog.at_level(logging.ERROR, logger="crucible.lsp.early_start"):
        assert await asyncio.wait_for(serving, 10) == 0
    assert not caplog.records  # the server's initialize answer was the early one
    answers = session.output.answers()
    assert all(len(replies) == 1 for replies in answers.values()), answers
    assert set(answers) == {1, 2, 3, 4, 5, 6, 7}
    assert answers[3][0]["error"]["code"] == -32700
    assert answers[4][0]["error"]["code"] == -32602
    assert answers[2][0]["result"]["version"] and answers[5][0]["result"]["version"]
    assert answers[6][0]["result"] is None
    assert answers[7][0]["error"]["code"] == -32600
    order = session.output.answer_order()
    # Handled in the order read (a refusal, 7, is sent at once; shutdown's answer waits for
    # its handler, as it would without the early start).
    assert order.index(2) < order.index(5) < order.index(6)
    assert session.server is not None
    # initialized and didOpen reached the server after its initialize handler had run.
    assert "file:///w/a.py" in session.server.workspace.text_documents


async def test_requests_before_initialize_are_refused_after_the_handover(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.feed(request(1, "crucible/status", {}), notify("initialized", {}), initialize(2))
    await session.settle()
    assert [m["id"] for m in session.output.early] == [2]
    serving = await session.hand_over()
    session.feed(request(3, "crucible/status", {}))
    assert await session.finish(serving, 4) == 0
    answers = session.output.answers()
    assert answers[1][0]["error"]["code"] == -32002
    assert len(answers[2]) == 1 and "result" in answers[3][0]


async def test_an_initialize_the_server_may_refuse_is_left_to_it(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.feed(request(1, "initialize", {"processId": None, "capabilities": 5}))
    session.feed(initialize(2))  # a second one: the server's to judge, too
    await session.settle()
    assert session.output.early == []
    serving = await session.hand_over()
    await session.until(lambda: 2 in session.output.answers())
    assert await session.finish(serving, 3) == 0
    answers = session.output.answers()
    assert answers[1][0]["error"]["code"] == -32602
    assert len(answers[2]) == 1 and "capabilities" in answers[2][0]["result"]


async def test_exit_before_the_handover_ends_the_server(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.feed(initialize(1), request(2, "shutdown"), notify("exit"))
    await session.until(lambda: session.frames._ended)
    serving = await session.hand_over()
    assert await asyncio.wait_for(serving, 10) == 0
    answers = session.output.answers()
    assert len(answers[1]) == 1 and answers[2][0]["result"] is None


async def test_exit_without_shutdown_and_end_of_input_before_the_handover(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.feed(notify("exit"))
    await session.settle()
    serving = await session.hand_over()
    assert await asyncio.wait_for(serving, 10) == 1

    other = Session(tmp_path / "eof")
    other.feed(initialize(1), request(2, "crucible/status", {}))
    other.stream.feed_eof()
    await other.settle()
    serving = await other.hand_over()
    await asyncio.wait_for(serving, 10)
    assert len(other.output.answers()[1]) == 1


async def test_frames_split_across_the_handover_are_not_lost(tmp_path: Path) -> None:
    session = Session(tmp_path)
    frame = request(2, "crucible/status", {})
    session.feed(initialize(1), frame[:10])  # a read is under way when the server is ready
    await session.settle()
    serving = await session.hand_over()
    session.feed(frame[10:])
    assert await session.finish(serving, 3) == 0
    answers = session.output.answers()
    assert "result" in answers[2][0] and answers[3][0]["result"] is None


def test_early_capabilities_accepts_what_the_server_accepts() -> None:
    assert early_capabilities({"processId": 12, "capabilities": {}}) == {}
    assert early_capabilities({"processId": None, "capabilities": {"a": 1}}) == {"a": 1}
    assert early_capabilities({"capabilities": {}}) is None  # processId is required
    assert early_capabilities({"processId": True, "capabilities": {}}) is None
    assert early_capabilities({"processId": "12", "capabilities": {}}) is None
    assert early_capabilities({"processId": 1, "capabilities": []}) is None
    assert early_capabilities([1, {}]) is None


async def test_the_last_frame_held_behind_the_load_says_how_long_it_waited(tmp_path: Path) -> None:
    """Only the last: a request with more held behind it is superseded by what follows."""
    session = Session(tmp_path)
    session.feed(did_open(), request(2, "crucible/status", {}), request(3, "crucible/status", {}))
    await session.until(lambda: len(session.frames._queued) == 3)
    await asyncio.sleep(0.02)
    session.loaded.set_result(None)
    await asyncio.wait_for(session.reading, 5)
    held = [await session.frames.next() for _ in range(3)]
    assert all(isinstance(frame, Frame) for frame in held)
    assert [frame.waited_s for frame in held[:2]] == [0.0, 0.0]  # type: ignore[union-attr]
    assert held[2].waited_s >= 0.02  # type: ignore[union-attr]
