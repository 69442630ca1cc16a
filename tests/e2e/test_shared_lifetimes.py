"""Ends in the shared daemon's world, through real processes: an editor killed, a client's
stdin closed, a daemon killed; and nobody left a zombie (the thin client waits for the
daemon it starts, and for the server it starts when it serves alone)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
from pytest_lsp import LanguageClient
from tests.e2e.conftest import server_status
from tests.e2e.test_shared_daemon import SHARED, Place, _answer, _frame, place, window

__all__ = ["place"]  # the fixture, used by name

INITIALIZE = _frame(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"processId": None, "capabilities": {}},
    }
)
STATUS = _frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status"})

# An editor: spawns the thin client on pipes, waits until the daemon answers, says the
# client's pid, and waits to be killed (its pipes die with it, as an editor's do).
EDITOR = f"""
import json, subprocess, sys
client = subprocess.Popen({SHARED!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
client.stdin.write({INITIALIZE!r} + {STATUS!r})
client.stdin.flush()
while True:
    headers = b""
    while not headers.endswith(b"\\r\\n\\r\\n"):
        headers += client.stdout.read(1)
    body = json.loads(client.stdout.read(int(headers.split(b":")[1].split(b"\\r\\n")[0])))
    if body.get("id") == 2:
        break
print(client.pid, flush=True)
import time; time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """Ended (a zombie waits only for its parent's wait, and has ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _until_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while not _gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


async def _sessions(client: LanguageClient, wanted: int) -> None:
    for _ in range(200):
        if (await server_status(client))["shared"]["sessions"] == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the daemon still serves {wanted + 1} sessions or more")


async def test_an_editor_killed_ends_its_session_promptly(place: Place) -> None:
    async with window(place) as other:
        editor = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EDITOR, env=place.env, stdout=asyncio.subprocess.PIPE
        )
        assert editor.stdout is not None
        client_pid = int(await asyncio.wait_for(editor.stdout.readline(), 30))
        await _sessions(other, 2)
        editor.send_signal(signal.SIGKILL)  # no exit, no shutdown: its pipes just close
        await editor.wait()
        await _until_gone(client_pid)
        await _sessions(other, 1)
        assert (await server_status(other))["shared"]["pid"] == place.daemon_pid()


async def test_a_client_whose_stdin_closes_ends_its_session(place: Place) -> None:
    async with window(place) as other:
        client = await asyncio.create_subprocess_exec(
            *SHARED, env=place.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(INITIALIZE + STATUS)
        await asyncio.wait_for(_answer(client.stdout, 2), 20)
        await _sessions(other, 2)
        client.stdin.close()  # the editor closed the pipe without exit
        await asyncio.wait_for(client.wait(), 10)
        await _sessions(other, 1)


async def test_a_killed_daemons_socket_is_cleaned_up_by_the_next_client(place: Place) -> None:
    async with window(place, shutdown=False) as first:
        killed = (await server_status(first))["shared"]["pid"]
        os.kill(killed, signal.SIGKILL)
        await _until_gone(killed)
    # It left its socket file and its pid file behind, and nothing accepts on the socket.
    assert place.socket.exists() and place.daemon_pid() == killed
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        refused = probe.connect_ex(str(place.socket))
    finally:
        probe.close()
    assert refused != 0
    async with window(place) as second:
        status = await server_status(second)
        assert status["shared"]["pid"] != killed
        assert status["shared"]["pid"] == place.daemon_pid()
    assert [p.pid for p in place.daemons()] == [place.daemon_pid()]


async def test_nothing_is_left_unreaped(place: Place) -> None:
    async with window(place) as first, window(place) as second:
        daemon = psutil.Process((await server_status(first))["shared"]["pid"])
        await server_status(second)
    # The daemon has no child, zombie or not, after serving sessions.
    assert [c for c in daemon.children() if c.status() == psutil.STATUS_ZOMBIE] == []


def test_the_client_reaps_a_daemon_that_dies_while_it_runs(tmp_path: Path) -> None:
    from crucible.shared import client
    from crucible.shared.place import DaemonPlace

    before = _children()
    original = client._DAEMON_MAIN
    client._DAEMON_MAIN = "import sys; sys.exit(3)"  # a daemon that dies at once
    try:
        client.start_daemon(DaemonPlace(tmp_path), tmp_path / "daemon.log")
    finally:
        client._DAEMON_MAIN = original
    assert _children() - before  # it started
    deadline = time.monotonic() + 10
    while _children() - before:
        assert time.monotonic() < deadline, "the dead daemon was left a zombie"
        time.sleep(0.02)


def test_a_client_serving_alone_reaps_its_server(tmp_path: Path) -> None:
    from crucible.shared.client import Relay, serve_alone

    before = _children()
    read_fd, write_fd = os.pipe()
    out = open(os.devnull, "wb")  # noqa: SIM115 (closed below)
    relay = Relay(read_fd, out, tmp_path / "daemon.log")
    relay.start_reading()
    os.write(write_fd, INITIALIZE + _frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
    os.write(write_fd, _frame({"jsonrpc": "2.0", "method": "exit"}))
    os.close(write_fd)
    try:
        assert serve_alone(relay, None, "INFO", None) == 0
    finally:
        out.close()
    assert _children() == before  # the server it started ended, and was waited for


def _children() -> set[int]:
    """This process's children, zombies included (a zombie is one nobody waited for)."""
    return {child.pid for child in psutil.Process().children()}


async def test_shutdown_and_exit_together_are_answered_and_end_with_0(place: Place) -> None:
    # A body cut short by the next frame first: the client still sees the shutdown after it.
    cut = b'Content-Length: 30\r\n\r\n{"id": 9,'
    for damaged in (False, True):
        client = await asyncio.create_subprocess_exec(
            *SHARED, env=place.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert client.stdin is not None and client.stdout is not None
        initialized = _frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        client.stdin.write(INITIALIZE + initialized + (cut if damaged else b"") + STATUS)
        await asyncio.wait_for(_answer(client.stdout, 2), 20)
        client.stdin.write(
            _frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
            + _frame({"jsonrpc": "2.0", "method": "exit"})
        )
        answer = await asyncio.wait_for(_answer(client.stdout, 3), 20)
        assert answer["result"] is None  # answered before the session closed
        assert await asyncio.wait_for(client.wait(), 10) == 0
