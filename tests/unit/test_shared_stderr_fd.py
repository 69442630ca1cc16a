"""The thin client's stderr pipe, passed to the daemon with the hello, has one owner there
(``shared/daemon.py`` ``client_stderr``): however a connection ends (its hello not
understood, refused, its session failed, its session ended) the daemon's copy of the pipe is
closed, once, when it ends, and the daemon leaves no descriptor open. Driven in this process,
as ``test_shared_peers.py`` drives the daemon; the pipe's read end tells when the daemon's copy
is closed (end of file once no write end is left)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
from pathlib import Path

import pytest

from crucible.shared.code_version import code_version
from crucible.shared.daemon import Daemon, bind
from crucible.shared.handshake import Hello, Welcome
from crucible.shared.place import DaemonPlace

_XDG = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "HOME")


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _line(sock: socket.socket) -> bytes:
    """The daemon's welcome line, or b"" when it closed the connection unanswered."""
    loop = asyncio.get_running_loop()
    line = b""
    while not line.endswith(b"\n"):
        try:
            data = await loop.sock_recv(sock, 1)
        except ConnectionResetError:
            return line
        if not data:
            return line
        line += data
    return line


async def _closed_by_the_daemon(read_fd: int) -> bool:
    """Whether the pipe reaches its end of file (every write end closed) within 10 s."""
    os.set_blocking(read_fd, False)
    for _ in range(1000):
        try:
            if not os.read(read_fd, 1 << 16):
                return True
        except BlockingIOError:
            await asyncio.sleep(0.01)
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
@pytest.mark.parametrize("case", ["not understood", "refused", "failed", "ended"])
async def test_every_way_a_connection_ends_closes_the_clients_stderr_once(
    place: DaemonPlace, case: str
) -> None:
    env = {name: os.environ[name] for name in _XDG if name in os.environ}
    line = {
        "not understood": b"not a hello\n",
        "refused": Hello("0.0.1", protocol=0).encode(),  # older, another protocol
        "failed": Hello(code_version(), env).encode(),
        "ended": Hello(code_version(), env).encode(),
    }[case]
    before = _open_fds()
    loading: concurrent.futures.Future[None] = concurrent.futures.Future()
    if case == "failed":  # the session fails waiting for the server's import
        loading.set_exception(RuntimeError("the server could not be imported"))
    else:
        loading.set_result(None)
    listener, inode = bind(place)
    daemon = Daemon(place, listener, inode, idle_s=60, loading=loading)
    serving = asyncio.ensure_future(daemon.serve())
    # The stderr pipe, and a second descriptor the daemon does not expect: both its to close.
    pipes = [os.pipe(), os.pipe()]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, str(place.socket))
        assert socket.send_fds(sock, [line], [write for _, write in pipes]) == len(line)
        for _, write in pipes:
            os.close(write)
        answer = await asyncio.wait_for(_line(sock), 10)
        if case == "not understood":
            assert answer == b""
        else:
            assert Welcome.decode(answer).accepted is (case != "refused")
        sock.close()  # an accepted session's end of input: it ends
        for read, _ in pipes:
            assert await _closed_by_the_daemon(read), "the daemon kept the client's pipe open"
        assert daemon.sessions_served == 0
    finally:
        sock.close()
        daemon.retire()
        await asyncio.wait_for(serving, 10)
        for read, _ in pipes:
            os.close(read)
    assert _open_fds() == before
