"""A broken or hostile client against the real server process, over raw stdio bytes: every
request gets exactly one answer with the code the JSON-RPC 2.0 and LSP specifications give,
the stream finds the next frame after any damage, sizes stay bounded, and the process ends
when it should with the exit code the LSP spec gives."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import Session, end_of, inline, open_document, provider_options
from tests.fakes.provider import FakeProvider, Fault
from tests.security.rawlsp import RawServer, frame, notification, request

pytestmark = pytest.mark.e2e

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
SERVER_NOT_INITIALIZED, REQUEST_CANCELLED = -32002, -32800
_PATH = re.compile(r"(^|[\s'\"])(/|~/|[A-Za-z]:\\)\w")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RawServer]:
    raw = await RawServer.start(tmp_path)
    try:
        yield raw
    finally:
        await raw.close()


@pytest.fixture
async def ready(server: RawServer) -> RawServer:
    reply = await server.initialize()
    assert "capabilities" in reply["result"]
    return server


def _error(reply: dict[str, Any], code: int) -> str:
    assert "error" in reply, reply
    assert reply["error"]["code"] == code, reply
    message: str = reply["error"]["message"]
    assert "Traceback" not in message and not _PATH.search(message), message
    return message


async def _bad_then_good(server: RawServer, tag: str, data: bytes, code: int | None) -> None:
    """``data`` is answered with ``code`` (id null), or not at all when ``code`` is None; then a
    valid request is served."""
    before = len(server.replies)
    await server.send(data)
    await server.alive_and_serving(tag)
    extra = [r for r in server.replies[before:] if r.get("id") != f"probe-{tag}"]
    if code is None:
        assert extra == [], extra
    else:
        assert len(extra) == 1, extra
        assert extra[0]["id"] is None
        _error(extra[0], code)


UNPARSABLE_BODIES = {
    "truncated": b'{"jsonrpc": "2.0", "id": 1, "method": "crucible/sta',
    "invalid-utf8": b'{"jsonrpc": "2.0", "id": 1, "method": "\xff\xfe"}',
    "lone-surrogate-bytes": b'{"jsonrpc": "2.0", "id": 1, "method": "\xed\xa0\x80"}',
    "empty": b"",
    "not-json": b"hello",
    "nan": b'{"jsonrpc": "2.0", "id": NaN, "method": "x"}',
    "nested-100k": b"[" * 100_000 + b"]" * 100_000,
    "bom": b"\xef\xbb\xbf{}",
    "5000-digit-id": b'{"jsonrpc": "2.0", "id": ' + b"9" * 5000 + b"}",
    "two-objects": b"{} {}",
}


async def test_an_unparsable_body_gets_parse_error_and_the_next_frame_is_served(
    ready: RawServer,
) -> None:
    for name, body in UNPARSABLE_BODIES.items():
        await _bad_then_good(ready, name, frame(body), PARSE_ERROR)


BROKEN_FRAMES: dict[str, tuple[bytes, int | None]] = {
    "no-content-length": (
        b'Content-Type: application/vscode-jsonrpc\r\n\r\n{"jsonrpc": "2.0", "method": "x"}',
        PARSE_ERROR,
    ),
    "negative-length": (b"Content-Length: -1\r\n\r\n{}", PARSE_ERROR),
    "length-not-a-number": (b"Content-Length: ten\r\n\r\n{}", PARSE_ERROR),
    "length-2^70": (b"Content-Length: " + b"9" * 22 + b"\r\n\r\n{}", PARSE_ERROR),
    # Declared too long: the body must not swallow the valid frame sent after it.
    "length-too-long": (
        b'Content-Length: 500\r\n\r\n{"jsonrpc": "2.0", "method": "x"}',
        PARSE_ERROR,
    ),
    "length-too-short": (
        b'Content-Length: 5\r\n\r\n{"jsonrpc": "2.0", "method": "x"}\r\n',
        PARSE_ERROR,
    ),
    "junk": (b"\x00\xff garbage with no header at all \x01", None),
    "blank-lines": (b"\r\n\r\n\r\n", None),
    "200k-junk-without-newline": (b"x" * 200_000, None),
    "200k-header-value": (b"X-Long: " + b"v" * 200_000 + b"\r\n", None),
    "lower-case-header-lf-only": (b"content-length: 2\n\n{}", INVALID_REQUEST),
}


async def test_a_broken_header_is_refused_and_the_stream_resynchronises(
    ready: RawServer,
) -> None:
    for name, (data, code) in BROKEN_FRAMES.items():
        await _bad_then_good(ready, name, data, code)


async def test_a_header_block_without_length_answers_the_request_it_carried(
    ready: RawServer,
) -> None:
    body = b'{"jsonrpc": "2.0", "id": 41, "method": "crucible/status"}'
    await ready.send(b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body)
    _error(await ready.reply(41), PARSE_ERROR)
    await ready.alive_and_serving("after")


async def test_a_huge_content_length_is_refused_without_being_buffered(ready: RawServer) -> None:
    # 10^12 declared; the start of the body names the request, so its sender is answered.
    await ready.send(b'Content-Length: 1000000000000\r\n\r\n{"jsonrpc": "2.0", "id": 77, "x": "')
    await ready.send(b"a" * (4 << 20))
    await ready.alive_and_serving("huge")
    message = _error(await ready.reply(77), INVALID_REQUEST)
    assert "64 MiB" in message
    assert ready.rss_mb() < 150


async def test_a_body_over_the_limit_is_read_and_dropped_in_chunks(ready: RawServer) -> None:
    # A real 65 MiB message (a didOpen of a giant file): dropped as it streams, never held.
    text = "x" * (65 << 20)
    body = frame(
        notification(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": "file:///big.txt",
                    "languageId": "x",
                    "version": 1,
                    "text": text,
                }
            },
        )
    )
    del text
    peak = 0.0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, ready.rss_mb())
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch())
    try:
        await ready.send(body)
        await ready.alive_and_serving("big")
    finally:
        watcher.cancel()
    assert peak < 150, f"RSS reached {peak:.0f} MB"
    # Whether it was a request cannot be seen before its id: refused with id null.
    [refused] = ready.replies_to(None)
    _error(refused, INVALID_REQUEST)


INVALID_REQUESTS: dict[str, tuple[object, object]] = {
    "id-{}": ({"jsonrpc": "2.0", "id": {}, "method": "crucible/status"}, None),
    "id-[]": ({"jsonrpc": "2.0", "id": [], "method": "crucible/status"}, None),
    "id-true": ({"jsonrpc": "2.0", "id": True, "method": "crucible/status"}, None),
    "id-1.5": ({"jsonrpc": "2.0", "id": 1.5, "method": "crucible/status"}, None),
    "id-null": ({"jsonrpc": "2.0", "id": None, "method": "crucible/status"}, None),
    "jsonrpc-1.0": ({"jsonrpc": "1.0", "id": 5, "method": "crucible/status"}, 5),
    "jsonrpc-missing": ({"id": 6, "method": "crucible/status"}, 6),
    "method-missing": ({"jsonrpc": "2.0", "id": 7}, 7),
    "method-not-a-string": ({"jsonrpc": "2.0", "id": 8, "method": 5}, 8),
    "params-a-string": ({"jsonrpc": "2.0", "id": 9, "method": "crucible/status", "params": "x"}, 9),
    "a-number": (42, None),
    "a-string": ("crucible/status", None),
    "empty-batch": ([], None),
}


async def test_an_invalid_request_object_gets_invalid_request(ready: RawServer) -> None:
    for name, (message, reply_id) in INVALID_REQUESTS.items():
        before = len(ready.replies)
        await ready.send(frame(message))
        await ready.alive_and_serving(name)
        [reply] = [r for r in ready.replies[before:] if r.get("id") != f"probe-{name}"]
        assert reply["id"] == reply_id, name
        _error(reply, INVALID_REQUEST)


async def test_a_batch_gets_one_invalid_request_per_request_in_it(ready: RawServer) -> None:
    batch = [
        request(1, "crucible/status"),
        notification("textDocument/didClose", {"textDocument": {"uri": "file:///a.py"}}),
        request("two", "crucible/status"),
        17,
    ]
    await ready.send(frame(batch))
    await ready.alive_and_serving("batch")
    [answer] = [r for r in ready.replies if isinstance(r, list)]
    assert [item["id"] for item in answer] == [1, "two", None]
    for item in answer:
        _error(item, INVALID_REQUEST)


def _inline(position: object) -> dict[str, Any]:
    return {
        "textDocument": {"uri": "file:///workspace/main.py"},
        "position": position,
        "context": {"triggerKind": 2},
    }


BAD_PARAMS: dict[str, object] = {
    "position-a-string": _inline("3:4"),
    "line-negative": _inline({"line": -1, "character": 0}),
    "line-2^40": _inline({"line": 2**40, "character": 0}),
    "character-negative": _inline({"line": 0, "character": -5}),
    "character-missing": _inline({"line": 0}),
    "textDocument-missing": {"position": {"line": 0, "character": 0}},
    "trigger-kind-unknown": _inline({"line": 0, "character": 0}) | {"context": {"triggerKind": 9}},
    "params-an-array": [1, 2],
    "params-absent": None,
}


async def test_params_that_do_not_decode_get_invalid_params_never_silence(
    ready: RawServer,
) -> None:
    for name, params in BAD_PARAMS.items():
        reply = await ready.call(name, "textDocument/inlineCompletion", params)
        message = _error(reply, INVALID_PARAMS)
        assert message.startswith("Invalid params"), name
    await ready.alive_and_serving("params")


async def test_params_are_optional_where_json_rpc_makes_them_optional(ready: RawServer) -> None:
    await ready.send(frame({"jsonrpc": "2.0", "id": "s", "method": "crucible/status"}))
    assert "version" in (await ready.reply("s"))["result"]
    await ready.send(frame({"jsonrpc": "2.0", "method": "initialized"}))  # no params: accepted
    await ready.send(frame({"jsonrpc": "2.0", "id": "down", "method": "shutdown"}))
    assert (await ready.reply("down"))["result"] is None


async def test_null_params_are_no_params_so_shutdown_and_exit_with_null_params_end_cleanly(
    ready: RawServer,
) -> None:
    """Clients send ``"params": null`` for LSP's void params (older eglot, Atom's client)."""
    await ready.send(
        frame({"jsonrpc": "2.0", "id": "s", "method": "crucible/status", "params": None})
    )
    assert "version" in (await ready.reply("s"))["result"]
    await ready.send(frame({"jsonrpc": "2.0", "id": "down", "method": "shutdown", "params": None}))
    assert (await ready.reply("down"))["result"] is None
    await ready.send(frame({"jsonrpc": "2.0", "method": "exit", "params": None}))
    assert await ready.wait_exit(10) == 0


async def test_requests_before_initialize_get_server_not_initialized(server: RawServer) -> None:
    for msg_id, method in [(1, "crucible/status"), (2, "shutdown"), ("x", "textDocument/hover")]:
        _error(await server.call(msg_id, method, {}), SERVER_NOT_INITIALIZED)
    # Notifications before initialize are dropped, unanswered; initialize still works after.
    await server.send(frame(notification("initialized", {})))
    await server.send(frame(notification("textDocument/didOpen", {})))
    reply = await server.initialize()
    assert "capabilities" in reply["result"]
    assert len(server.replies) == 4
    again = await server.call("again", "initialize", {"processId": None, "capabilities": {}})
    _error(again, INVALID_REQUEST)


async def test_after_shutdown_requests_are_invalid_and_exit_is_0(ready: RawServer) -> None:
    assert (await ready.call("down", "shutdown"))["result"] is None
    for msg_id, method in [(1, "crucible/status"), (2, "shutdown"), (3, "initialize")]:
        message = _error(await ready.call(msg_id, method, {}), INVALID_REQUEST)
        assert "after shutdown" in message
    await ready.send(frame(notification("exit")))
    assert await ready.wait_exit(10) == 0  # as below: the server may still be importing


async def test_exit_without_shutdown_is_exit_code_1(ready: RawServer) -> None:
    # initialize was answered early (lsp/early_start.py): a request and the exit sent now wait
    # for the server's import, which a loaded machine can stretch past any fixed bound (5 s
    # was not enough). The request's answer says the server has loaded and handled what came
    # before the exit; from then on the exit has its own bound.
    await ready.send(frame(request("loaded", "crucible/status", {})))
    await ready.send(frame(notification("exit")))
    assert "result" in await ready.reply("loaded", within=60)
    assert await ready.wait_exit(10) == 1


async def test_exit_before_initialize_is_exit_code_1(server: RawServer) -> None:
    await server.send(frame(notification("exit")))
    assert await server.wait_exit(10) == 1


async def test_a_cancelled_request_gets_exactly_one_reply(
    tmp_path: Path, fake: FakeProvider
) -> None:
    fake.inject(Fault(latency_ms=1500))
    server = await RawServer.start(tmp_path)
    try:
        await server.initialize(initializationOptions=provider_options(fake))
        uri = "file:///workspace/main.py"
        await server.send(
            frame(
                notification(
                    "textDocument/didOpen",
                    {
                        "textDocument": {
                            "uri": uri,
                            "languageId": "python",
                            "version": 1,
                            "text": "def add(a, b):\n    ",
                        }
                    },
                )
            )
        )
        for n in range(5):
            await server.send(
                frame(
                    request(
                        f"c{n}",
                        "textDocument/inlineCompletion",
                        _inline({"line": 1, "character": 4}) | {"textDocument": {"uri": uri}},
                    )
                )
            )
            await server.send(frame(notification("$/cancelRequest", {"id": f"c{n}"})))
        await server.send(frame(notification("$/cancelRequest", {"id": "never-sent"})))
        for n in range(5):
            reply = await server.reply(f"c{n}")
            assert "result" in reply or reply["error"]["code"] == REQUEST_CANCELLED
        await server.alive_and_serving("cancel")
        await asyncio.sleep(0.3)
        for n in range(5):
            assert len(server.replies_to(f"c{n}")) == 1
    finally:
        await server.close()


async def test_a_late_out_of_order_change_never_overwrites_newer_text(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, "v1 = 1\n")
        _change(client, uri, 3, "newest = 3\n")
        _change(client, uri, 2, "stale = 2\n")  # arrives late: must not win
        await inline(client, uri, end_of("newest = 3\n"))
    [sent] = fake.generation_requests()
    assert sent.body["prompt"].startswith("newest = 3")


def _change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def test_the_server_exits_when_its_parent_process_dies(server: RawServer) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        await server.initialize(processId=parent.pid)
        await asyncio.sleep(0.5)  # the watch is armed and the parent alive: still serving
        await server.alive_and_serving("parent-alive")
        parent.kill()
        await parent.wait()
        started = time.monotonic()
        assert await server.wait_exit(5) == 1
        assert time.monotonic() - started < 2.0
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_the_server_exits_after_initialize_when_the_parent_does_not_exist(
    server: RawServer,
) -> None:
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()  # reaped: its pid names no process now
    assert not _pid_exists(gone.pid)
    reply = await server.initialize(processId=gone.pid)
    assert "capabilities" in reply["result"]  # initialize is answered first
    # The early answer comes before the server's import ends; the watch is armed, and fires
    # at once, when the loaded server handles initialize. That import is ~0.6 s of CPU alone,
    # several seconds on 2 cores shared with the parallel test workers: no tighter bound here
    # (the test above times the watch itself, from a server known to be loaded).
    assert await server.wait_exit(15) == 1


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
