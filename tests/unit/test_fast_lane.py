"""The fast lane (``lsp/fast_lane.py``) answers as the pygls lane does, in the same order.

Every scenario is played twice, on two servers built alike: one with the fast lane, one with
it off (every message the pygls way, the reference). The completion service is replaced by a
stub that records the text and cursor each request saw and answers from them, so the two
servers' answers, what their completions read, and the documents they end with must be equal,
byte for byte after JSON decoding, whatever the lane.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.protocol import default_converter
from tests.fakes.written import Written

from crucible.app import App, build_server
from crucible.completion.alternatives import Alternative
from crucible.completion.service import CompletionRequest, CompletionResult
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp.convert import inline_completion_list
from crucible.lsp.fast_lane import FastLane, inline_completion_json
from crucible.lsp.framing import Frame
from crucible.lsp.server import CrucibleLanguageServer

URI = "file:///work/main.py"
TEXT = "def f(x):\n    a = '😀😀' + x\n    return a\n"
_CONVERTER = default_converter()


class Recorded:
    """A completion service's ``complete``: what each request saw, and an answer from it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []
        self.gate: asyncio.Event | None = None  # when set, requests wait for it

    async def complete(self, request: CompletionRequest) -> CompletionResult | None:
        snapshot = request.snapshot
        self.seen.append((snapshot.text, request.offset, request.invoked))
        if self.gate is not None:
            await self.gate.wait()
        line_end = snapshot.text.find("\n", request.offset)
        if snapshot.text[request.offset : line_end].strip() == "":
            return None  # nothing to suggest at the end of a line: an empty answer
        # Replaces the rest of the line (a range), with an alternative, text outside the BMP.
        return CompletionResult(
            "😀 = 1",
            request.offset,
            line_end,
            (Alternative("b😀", request.offset + 1),),
        )


Pair = tuple[CrucibleLanguageServer, Written, Recorded]


def _server(tmp_path: Path, name: str, fast: bool) -> Pair:
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / name / "config"),
        "XDG_CACHE_HOME": str(tmp_path / name / "cache"),
    }
    server = build_server(App(config_path=tmp_path / "absent.toml", env=env))
    assert isinstance(server.protocol.fast_lane, FastLane)  # on by default
    if not fast:
        server.protocol.fast_lane = None
    written = Written()
    server.protocol.set_writer(written)
    return server, written, Recorded()


@pytest.fixture
def lanes(tmp_path: Path) -> tuple[Pair, Pair]:
    return _server(tmp_path, "fast", True), _server(tmp_path, "pygls", False)


def send(
    server: CrucibleLanguageServer, message: dict[str, Any] | bytes, *, last: bool = False
) -> None:
    """Hand ``message`` to the protocol as a frame read; ``last``: nothing was read behind it
    (``Frame.more_buffered`` False), as when a client waits for each answer."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    server.protocol.handle_frame(Frame(body, more_buffered=not last))


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def start(pair: Pair, encoding: str = "utf-16") -> None:
    server, written, recorded = pair
    capabilities = {
        "general": {"positionEncodings": [encoding]},
        "textDocument": {"synchronization": {}, "inlineCompletion": {}},
    }
    send(
        server,
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"capabilities": capabilities},
        },
    )
    for _ in range(100):
        await asyncio.sleep(0.01)
        if written.messages:
            break
    send(server, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
    server.backend.completion.complete = recorded.complete  # type: ignore[method-assign]
    opened = {"uri": URI, "languageId": "python", "version": 1, "text": TEXT}
    send(
        server,
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": opened}},
    )
    await settle()
    written.messages.clear()
    written.raw.clear()


def change(version: int, start: tuple[int, int], end: tuple[int, int], text: str) -> dict[str, Any]:
    span = {
        "start": {"line": start[0], "character": start[1]},
        "end": {"line": end[0], "character": end[1]},
    }
    return {
        "jsonrpc": "2.0",
        "method": "textDocument/didChange",
        "params": {
            "textDocument": {"uri": URI, "version": version},
            "contentChanges": [{"range": span, "text": text}],
        },
    }


def inline(msg_id: int | str, line: int, character: int, kind: int = 2) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "textDocument/inlineCompletion",
        "params": {
            "textDocument": {"uri": URI},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": kind},
        },
    }


def _canonical(message: dict[str, Any]) -> str:
    return json.dumps(message, sort_keys=True)


def document_text(server: CrucibleLanguageServer) -> tuple[str, int | None]:
    document = server.workspace.text_documents[URI]
    return document.source, document.version


async def both(
    lanes: tuple[Pair, Pair],
    play: Callable[[Pair], Awaitable[None]],
    encoding: str = "utf-16",
) -> tuple[Pair, Pair]:
    """Play the same scenario on both servers; their answers, what their completions saw and
    their documents must be equal."""
    for pair in lanes:
        await start(pair, encoding)
        await play(pair)
        await settle()
    (fast, fast_out, fast_seen), (slow, slow_out, slow_seen) = lanes
    # The same answers; a fast-lane answer may leave a loop turn sooner (pygls writes from a
    # done callback), so before a pygls-lane answer to an earlier request: ids match them.
    assert sorted(map(_canonical, fast_out.messages)) == sorted(map(_canonical, slow_out.messages))
    assert fast_seen.seen == slow_seen.seen
    assert document_text(fast) == document_text(slow)
    return lanes


# -- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
async def test_typing_answers_as_pygls_does(lanes: tuple[Pair, Pair], encoding: str) -> None:
    async def play(pair: Pair) -> None:
        server = pair[0]
        # After the emoji (surrogate pairs in UTF-16, 4 bytes in UTF-8), a range to the line end.
        column = {"utf-16": 10, "utf-8": 14, "utf-32": 8}[encoding]
        send(server, change(2, (1, column), (1, column), "z"))
        send(server, inline(1, 1, column + 1))
        await settle()
        send(server, change(3, (1, column + 1), (1, column + 1), "\n"))  # a line break typed
        send(server, inline("two", 2, 0, kind=1))  # invoked, at a line start, string id
        await settle()
        send(server, inline(3, 5, 0))  # past the end: an empty answer
        send(server, inline(4, 1, 99))  # past a line's end
        send(server, inline(5, 2, 3))
        await settle()
        send(server, change(4, (0, 0), (1, 2), ""))  # a deletion across lines

    (_, written, _), (_, reference, _) = await both(lanes, play, encoding)
    answers = written.messages
    assert answers == reference.messages  # one lane only: the same order too
    assert [message["id"] for message in answers] == [1, "two", 3, 4, 5]
    assert any(message["result"]["items"] for message in answers)
    assert any(not message["result"]["items"] for message in answers)


async def test_the_answer_is_written_as_pygls_writes_it(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        send(pair[0], inline(7, 1, 6))
        await settle()

    (_, fast, _), (_, slow, _) = await both(lanes, play)
    assert fast.raw == slow.raw  # the bytes: headers, key order, spacing, escapes
    assert len(fast.raw) == 1


def _snapshot(text: str, base_line: int = 0) -> DocumentSnapshot:
    return DocumentSnapshot(URI, "/work/main.py", "python", 3, text, base=0, base_line=base_line)


@pytest.mark.parametrize(
    ("text", "result", "base_line"),
    [
        ("x = ", None, 0),
        ("x = ", CompletionResult("1", 4, 4), 0),
        ("a😀b = c\nfoo(", CompletionResult("𝔘)", 12, 12), 0),
        ("a😀b = c\nfoo()", CompletionResult("x, y)", 12, 13), 40),  # an excerpt's lines
        ("s = '😀'\n", CompletionResult('"\\\n\t\u2028', 5, 8, (Alternative("é", 6),)), 2),
        ("\r\n\r\nz", CompletionResult("", 4, 5, (Alternative("a", 4), Alternative("b", 5))), 0),
    ],
)
@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_the_json_is_lsprotocols(
    text: str, result: CompletionResult | None, base_line: int, encoding: str
) -> None:
    snapshot = _snapshot(text, base_line)
    expected = _CONVERTER.unstructure(inline_completion_list(snapshot, result, encoding))
    assert inline_completion_json(snapshot, result, encoding) == expected


# -- what the lane leaves to pygls ------------------------------------------------------------


def _bad_requests() -> list[dict[str, Any] | bytes]:
    good = inline(1, 1, 2)
    params = good["params"]
    variants: list[dict[str, Any]] = [
        {**params, "position": {"line": -1, "character": 0}},
        {**params, "position": {"line": 2**40, "character": 0}},
        {**params, "position": {"line": "1", "character": 0}},
        {**params, "position": {"line": True, "character": 0}},
        {**params, "position": {"line": 1.0, "character": 0}},
        {**params, "position": {"line": 1}},
        {**params, "context": {"triggerKind": 9}},
        {**params, "context": {}},
        {**params, "textDocument": {"uri": 5}},
        {k: v for k, v in params.items() if k != "context"},
        {**params, "workDoneToken": "t"},
        {**params, "unknown": 1},
        {
            **params,
            "context": {
                "triggerKind": 1,
                "selectedCompletionInfo": {
                    "range": {
                        "start": {"line": 1, "character": 0},
                        "end": {"line": 1, "character": 1},
                    },
                    "text": "d",
                },
            },
        },
    ]
    requests: list[dict[str, Any] | bytes] = [
        {**good, "id": n, "params": variant} for n, variant in enumerate(variants, start=10)
    ]
    requests.append({"jsonrpc": "2.0", "id": 30, "method": "textDocument/inlineCompletion"})
    requests.append({**good, "id": 31, "params": []})
    requests.append(b'{"jsonrpc": "2.0", "id": 32, "method": "textDocument/inlineCompletion"')
    return requests


async def test_malformed_requests_get_pygls_lanes_answers(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        for request in _bad_requests():
            send(pair[0], request)
        await settle()

    (_, written, _), _ = await both(lanes, play)
    errors = [message["error"]["code"] for message in written.messages if "error" in message]
    assert errors.count(-32602) >= 8  # invalid params, named by pygls's lane (cattrs takes "1")


async def test_malformed_changes_are_left_to_pygls(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        server = pair[0]
        good = change(2, (1, 4), (1, 4), "q")
        params = good["params"]
        span = params["contentChanges"][0]["range"]
        for variant in (
            {**params, "textDocument": {"uri": URI, "version": "3"}},
            {**params, "contentChanges": [{"range": span, "text": 5}]},
            {**params, "contentChanges": [{"range": {"start": span["start"]}, "text": "x"}]},
            {**params, "contentChanges": [{"range": span, "text": "x", "rangeLength": -1}]},
            {**params, "contentChanges": "x"},
            {**params, "textDocument": {"uri": URI, "version": True}},
            {**params, "contentChanges": [{"range": span, "text": "x", "extra": 1}]},
            {**params, "contentChanges": [{"range": {**span, "end": {"line": True}}, "text": "x"}]},
            {
                **params,
                "contentChanges": [
                    {"range": {**span, "end": {"line": 1, "character": 2**31}}, "text": "x"}
                ],
            },
            {
                **params,
                "contentChanges": [
                    {"range": {**span, "start": {"line": 1, "character": 4, "x": 0}}, "text": "x"}
                ],
            },
        ):
            send(server, {**good, "params": variant})
        send(server, good)
        # A whole-document change, and one with rangeLength: still in order with the others.
        send(
            server,
            {
                **good,
                "params": {
                    **params,
                    "textDocument": {"uri": URI, "version": 3},
                    "contentChanges": [{"text": "whole\n"}],
                },
            },
        )
        send(server, change(4, (0, 5), (0, 5), "!"))
        send(server, inline(1, 0, 6))
        await settle()

    (fast, _, _), _ = await both(lanes, play)
    assert document_text(fast) == ("whole!\n", 4)


async def test_older_changes_and_unopened_documents_as_pygls(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        server = pair[0]
        send(server, change(5, (1, 4), (1, 4), "new"))
        send(server, change(4, (1, 4), (1, 4), "stale"))  # older: dropped with a log line
        send(server, change(5, (1, 4), (1, 4), "same"))  # the same version: applied
        other = change(2, (0, 0), (0, 0), "x")
        other["params"]["textDocument"]["uri"] = "file:///never/opened.py"
        send(server, other)
        send(server, inline(1, 1, 4))
        escaped = inline(2, 0, 0)
        escaped["params"]["textDocument"]["uri"] = "file:///never/op%65ned.py"
        send(server, escaped)
        await settle()

    (fast, _, _), _ = await both(lanes, play)
    text, version = document_text(fast)
    assert "samenew" in text and "stale" not in text and version == 5


async def test_before_initialize_and_after_shutdown(tmp_path: Path) -> None:
    for fast in (True, False):
        server, written, _ = _server(tmp_path, f"order-{fast}", fast)
        send(server, inline(1, 0, 0))
        send(server, change(2, (0, 0), (0, 0), "x"))
        assert written.messages[-1]["error"]["code"] == -32002
    pairs = [_server(tmp_path, "fast-s", True), _server(tmp_path, "slow-s", False)]
    for pair in pairs:
        await start(pair)
        send(pair[0], {"jsonrpc": "2.0", "id": 8, "method": "shutdown"})
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pair[1].messages and pair[1].messages[-1].get("id") == 8:
                break
        send(pair[0], inline(9, 0, 0))
        send(pair[0], change(2, (0, 0), (0, 0), "x"))
        await settle()
    assert pairs[0][1].messages == pairs[1][1].messages
    assert pairs[0][1].messages[-1]["error"]["code"] == -32600
    assert document_text(pairs[0][0]) == document_text(pairs[1][0]) == (TEXT, 1)


# -- order -----------------------------------------------------------------------------------


async def test_messages_keep_their_order_across_the_lanes(lanes: tuple[Pair, Pair]) -> None:
    """Frames handled in one go (as a buffer full of them is): changes run at once, requests
    start on the next loop turn, on either lane, so each request sees the same text."""

    async def play(pair: Pair) -> None:
        server = pair[0]
        whole = change(3, (0, 0), (0, 0), "")
        whole["params"]["contentChanges"] = [{"text": "x = 1\ny = 2\n"}]  # the pygls lane
        completion = {
            "jsonrpc": "2.0",
            "id": "menu",
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 2}},
        }
        for message in (
            change(2, (1, 4), (1, 4), "k"),  # fast
            inline(1, 1, 5),  # fast, starts next turn: sees the text after the whole change
            whole,  # pygls
            completion,  # pygls, a request: after inline 1
            change(4, (1, 0), (1, 0), "w"),  # fast, after the pygls change
            inline(2, 1, 3),
            {**completion, "id": 3},
            change(5, (0, 1), (0, 1), "v"),
        ):
            send(server, message)
        await settle()
        send(server, inline(4, 0, 2))
        await settle()

    (fast, written, recorded), _ = await both(lanes, play)
    assert document_text(fast) == ("xv = 1\nwy = 2\n", 5)
    # Requests read the text as it is when they start (the next loop turn), not as it was
    # when they arrived: after every change handled in the same go, on either lane.
    assert [text for text, _, _ in recorded.seen[:2]] == ["xv = 1\nwy = 2\n"] * 2
    answered = [m.get("id") for m in written.messages]
    assert answered.index(1) < answered.index(2) and answered.index("menu") < answered.index(3)


# -- cancellation ----------------------------------------------------------------------------


async def test_a_cancel_is_answered_request_cancelled(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        server, _, recorded = pair
        recorded.gate = asyncio.Event()
        send(server, inline(1, 1, 6))
        await settle()  # waiting in the completion
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        send(server, inline("b", 1, 6))
        # Cancelled before it started: in the same buffer as the request.
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "b"}})
        # A cancel of a request already answered, and malformed ones: ignored.
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": None}})
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": [1]}})
        await settle()
        recorded.gate.set()
        send(server, inline(2, 1, 6))
        await settle()

    (fast, written, _), _ = await both(lanes, play)
    cancelled = [m["id"] for m in written.messages if m.get("error", {}).get("code") == -32800]
    assert cancelled == [1, "b"]
    assert written.messages[-1]["id"] == 2 and written.messages[-1]["result"]["items"]
    assert not fast.protocol._request_futures  # nothing left behind


async def test_a_failing_completion_is_answered_as_pygls_does(lanes: tuple[Pair, Pair]) -> None:
    async def play(pair: Pair) -> None:
        async def broken(request: CompletionRequest) -> CompletionResult | None:
            raise ValueError("no completion for /home/someone/secret.py")

        pair[0].backend.completion.complete = broken  # type: ignore[method-assign]
        send(pair[0], inline(1, 1, 6))
        await settle()

    (fast, written, _), _ = await both(lanes, play)
    error = written.messages[-1]["error"]
    assert error["code"] == -32603 and "secret" not in error["message"]
    assert not fast.protocol._request_futures


async def test_the_lane_takes_the_plain_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane is in use: plain keystroke messages never reach cattrs (pygls's lane)."""
    pair = _server(tmp_path, "taken", True)
    server, written, _ = pair
    await start(pair)
    structured: list[str] = []
    structure = server.protocol._structure

    def spy(msg_id: Any, method: str, params: Any, has_params: bool) -> Any:
        structured.append(method)
        return structure(msg_id, method, params, has_params)

    monkeypatch.setattr(server.protocol, "_structure", spy)
    send(server, change(2, (1, 4), (1, 4), "k"))
    send(server, inline(1, 1, 5))
    send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
    await settle()
    assert structured == []
    send(server, inline(2, 1, 5) | {"params": {**inline(2, 1, 5)["params"], "extra": 1}})
    await settle()
    assert structured == ["textDocument/inlineCompletion"]  # not plain: the pygls way
    assert [m["id"] for m in written.messages] == [1, 2]


def test_the_lane_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIBLE_FAST_LANE", "0")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_CACHE_HOME": str(tmp_path / "k")}
    server = build_server(App(config_path=tmp_path / "absent.toml", env=env))
    assert server.protocol.fast_lane is None
    assert types.TEXT_DOCUMENT_INLINE_COMPLETION in server.protocol.fm.features


async def test_a_reused_id_gets_one_answer_per_request(lanes: tuple[Pair, Pair]) -> None:
    """A client reusing an id while the first request waits: each request answered once,
    as pygls's lane answers them."""

    async def play(pair: Pair) -> None:
        server, _, recorded = pair
        recorded.gate = asyncio.Event()
        send(server, inline(1, 1, 6))
        await settle()
        send(server, inline(1, 1, 6))
        await settle()
        recorded.gate.set()
        await settle()

    (fast, written, _), _ = await both(lanes, play)
    assert [m["id"] for m in written.messages] == [1, 1]
    assert all(m["result"]["items"] for m in written.messages)
    assert not fast.protocol._request_futures
    assert not fast.protocol.fast_lane._unanswered_callbacks  # type: ignore[union-attr]


# -- a request read last: run at once ------------------------------------------------------


async def test_a_request_read_last_is_answered_at_once_as_pygls_answers_it(
    lanes: tuple[Pair, Pair],
) -> None:
    """Nothing read behind it: the lane runs the request inside ``handle_frame`` (no task, no
    loop turn); an answer that needs no waiting is written before ``handle_frame`` returns,
    and it is the pygls lane's answer."""
    immediate: list[bool] = []

    async def play(pair: Pair) -> None:
        server, written, _ = pair
        for version, (msg_id, column) in enumerate([(1, 4), (2, 5), ("three", 6)], start=2):
            send(server, change(version, (2, column), (2, column), "x"))  # an ASCII line
            before = len(written.messages)
            send(server, inline(msg_id, 2, column + 1), last=True)
            immediate.append(len(written.messages) == before + 1)
            await settle()
        send(server, inline(4, 1, 99), last=True)  # past a line's end: converted back
        await settle()

    (fast, written, _), (_, reference, _) = await both(lanes, play)
    assert immediate[:3] == [True, True, True]  # the fast lane's server
    assert immediate[3:] == [False, False, False]  # the pygls lane answers a turn later
    assert written.raw == reference.raw  # the same bytes, in the same order
    assert not fast.protocol._request_futures
    assert not fast.protocol.fast_lane._unanswered_callbacks  # type: ignore[union-attr]


async def test_a_request_read_last_that_waits_is_cancelled_or_fails_as_pygls_says(
    lanes: tuple[Pair, Pair],
) -> None:
    """Run at once, a request that waits goes on as a task: a cancel gets RequestCancelled,
    a completion that fails gets pygls's error, and nothing is left behind."""

    async def play(pair: Pair) -> None:
        server, _, recorded = pair
        recorded.gate = asyncio.Event()
        send(server, inline(1, 1, 6), last=True)
        await settle()
        send(server, {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
        await settle()
        recorded.gate.set()
        send(server, inline(2, 1, 6), last=True)
        await settle()

        async def broken(request: CompletionRequest) -> CompletionResult | None:
            raise ValueError("no completion for /home/someone/secret.py")

        server.backend.completion.complete = broken  # type: ignore[method-assign]
        send(server, inline(3, 1, 6), last=True)
        await settle()

    (fast, written, _), _ = await both(lanes, play)
    by_id = {message["id"]: message for message in written.messages}
    assert by_id[1]["error"]["code"] == -32800
    assert by_id[2]["result"]["items"]
    assert by_id[3]["error"]["code"] == -32603 and "secret" not in by_id[3]["error"]["message"]
    assert not fast.protocol._request_futures
    assert not fast.protocol.fast_lane._unanswered_callbacks  # type: ignore[union-attr]


async def test_a_request_read_last_waits_for_what_pygls_has_yet_to_start(
    lanes: tuple[Pair, Pair],
) -> None:
    """A frame that went the pygls way just before (a coroutine handler, started by pygls on
    the next loop turn) runs before a request read last behind it, on either lane: the
    request is not run at once then, and sees what that handler did."""

    async def play(pair: Pair) -> None:
        server, _, recorded = pair
        order: list[str] = []
        applied = server.backend.change_configuration

        def change_configuration(settings: object) -> list[str]:
            order.append("configuration")
            return applied(settings)

        complete = recorded.complete

        async def completing(request: CompletionRequest) -> CompletionResult | None:
            order.append("completion")
            return await complete(request)

        server.backend.change_configuration = change_configuration  # type: ignore[method-assign]
        server.backend.completion.complete = completing  # type: ignore[method-assign]
        settings = {"crucible": {"completion": {"debounce_ms": 5}}}
        send(
            server,
            {
                "jsonrpc": "2.0",
                "method": "workspace/didChangeConfiguration",
                "params": {"settings": settings},
            },
        )
        send(server, inline(1, 2, 4), last=True)
        await settle()
        assert order == ["configuration", "completion"]
        send(server, inline(2, 2, 4), last=True)  # nothing pending now: the lane runs it at once
        at_once = server.protocol.fast_lane is not None
        assert len(order) == (3 if at_once else 2)
        await settle()

    await both(lanes, play)
