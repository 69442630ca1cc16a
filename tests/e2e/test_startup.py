"""Start-up over stdio, against the real process: ``initialize`` is answered while the server
loads (``lsp/early_start.py``), and a client that sends everything at once, without waiting
for any answer, gets exactly one answer per request, the same as from a server loaded first
(``CRUCIBLE_EARLY_START=0``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from tests.fakes.provider import FakeProvider

from crucible.lsp.capabilities import initialize_result

pytestmark = pytest.mark.e2e

CAPABILITIES = {
    "general": {"positionEncodings": ["utf-8", "utf-16"]},
    "textDocument": {"inlineCompletion": {"dynamicRegistration": False}},
}
TEXT = "def mul(a, b):\n    "


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_message(stream: IO[bytes]) -> dict[str, Any] | None:
    length = None
    while (line := stream.readline()) not in (b"\r\n", b"\n"):
        if not line:
            return None
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    assert length is not None
    message: dict[str, Any] = json.loads(stream.read(length))
    return message


def spawn(tmp_path: Path, early: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "CRUCIBLE_EARLY_START": "1" if early else "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "crucible", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )


def answers_until(process: subprocess.Popen[bytes], ids: set[Any]) -> dict[Any, list[Any]]:
    assert process.stdout is not None
    found: dict[Any, list[Any]] = {}
    while not ids <= set(found):
        message = read_message(process.stdout)
        assert message is not None, f"the server ended; answers so far: {found}"
        if "method" not in message:
            found.setdefault(message.get("id"), []).append(message)
    return found


def burst(tmp_path: Path, base_url: str) -> list[bytes]:
    uri = (tmp_path / "a.py").as_uri()
    provider = {"name": "fake", "kind": "ollama", "base_url": base_url, "model": "m"}
    document = {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}
    return [
        frame({"jsonrpc": "2.0", "id": 0, "method": "crucible/status", "params": {}}),
        frame(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "processId": os.getpid(),
                    "rootUri": tmp_path.as_uri(),
                    "capabilities": CAPABILITIES,
                    "initializationOptions": {"providers": [provider]},
                },
            }
        ),
        frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        frame(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {"textDocument": document},
            }
        ),
        b'Content-Length: 30\r\n\r\n{"id": 2,',  # cut short by the next frame
        frame(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "textDocument/inlineCompletion",
                "params": {
                    "textDocument": {"uri": uri},
                    "position": {"line": 1, "character": 4},
                    "context": {"triggerKind": 1},
                },
            }
        ),
        frame({"jsonrpc": "2.0", "id": 4, "method": "crucible/status", "params": {}}),
    ]


@pytest.mark.parametrize("early", [True, False], ids=["early start", "loaded first"])
def test_a_client_that_sends_everything_at_once(tmp_path: Path, early: bool) -> None:
    with FakeProvider(model="m", reply="a * b") as fake:
        process = spawn(tmp_path, early)
        assert process.stdin is not None
        try:
            process.stdin.write(b"".join(burst(tmp_path, fake.base_url)))
            process.stdin.flush()
            found = answers_until(process, {0, 1, 2, 3, 4})
            process.stdin.write(frame({"jsonrpc": "2.0", "id": 5, "method": "shutdown"}))
            process.stdin.flush()
            found.update(answers_until(process, {5}))
            process.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
            process.stdin.flush()
            assert process.wait(30) == 0
        finally:
            process.kill()
            process.wait()
    assert all(len(replies) == 1 for replies in found.values()), found
    assert found[0][0]["error"]["code"] == -32002  # before initialize
    assert found[1][0]["result"] == initialize_result(CAPABILITIES)
    assert found[2][0]["error"]["code"] == -32700
    items = found[3][0]["result"]["items"]
    assert [item["insertText"] for item in items] == ["a * b"]
    assert found[4][0]["result"]["version"]
    assert found[5][0]["result"] is None


def test_shutdown_and_exit_sent_with_initialize(tmp_path: Path) -> None:
    process = spawn(tmp_path, early=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        initialize = {"processId": None, "rootUri": None, "capabilities": {}}
        process.stdin.write(
            frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
            + frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
            + frame({"jsonrpc": "2.0", "method": "exit"})
        )
        process.stdin.flush()
        found = answers_until(process, {1, 2})
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
    assert found[1][0]["result"] == initialize_result({})
    assert found[2][0]["result"] is None


@pytest.mark.parametrize("early", [True, False])
def test_shutdown_and_exit_sent_together_once_loaded(tmp_path: Path, early: bool) -> None:
    """Both close the server at once: the shutdown is still answered (the disk cache's
    close, cancelled by the exit's, used to end it with no answer) and the exit code is 0."""
    process = spawn(tmp_path, early=early)
    assert process.stdin is not None and process.stdout is not None
    try:
        initialize = {"processId": None, "rootUri": None, "capabilities": {}}
        process.stdin.write(
            frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
            + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status", "params": {}})
        )
        process.stdin.flush()
        answers_until(process, {1, 2})  # loaded: the status is answered by the full server
        process.stdin.write(
            frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
            + frame({"jsonrpc": "2.0", "method": "exit"})
        )
        process.stdin.flush()
        found = answers_until(process, {3})
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
    assert found[3][0]["result"] is None


def test_end_of_input_before_the_server_is_loaded(tmp_path: Path) -> None:
    process = spawn(tmp_path, early=True)
    initialize = {"processId": None, "rootUri": None, "capabilities": {}}
    out, _ = process.communicate(
        frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize}),
        timeout=30,
    )
    assert out.count(b'"id": 1') == 1  # answered once, then the server ended with its input
    assert process.returncode is not None
