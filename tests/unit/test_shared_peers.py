"""The daemon closes a connection from another user unanswered, and greets its own."""

from __future__ import annotations

import asyncio
import os

import pytest

from crucible.shared import daemon as daemon_module
from crucible.shared.code_version import code_version
from crucible.shared.daemon import Daemon, bind
from crucible.shared.handshake import Hello, Welcome
from crucible.shared.place import DaemonPlace


async def _greet(place: DaemonPlace) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(place.socket))
    writer.write(Hello(code_version()).encode())
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
    except ConnectionResetError:  # closed with our hello unread
        line = b""
    writer.close()
    return line


@pytest.mark.parametrize("other_user", [False, True])
async def test_only_the_users_own_connections_are_answered(
    place: DaemonPlace, other_user: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if other_user:
        monkeypatch.setattr(daemon_module, "peer_uid", lambda sock: os.getuid() + 1)
    listener, inode = bind(place)
    daemon = Daemon(place, listener, inode, idle_s=60)
    serving = asyncio.ensure_future(daemon.serve())
    try:
        line = await _greet(place)
        if other_user:
            assert line == b""  # closed, unanswered
        else:
            assert Welcome.decode(line) == Welcome(code_version(), True)
    finally:
        daemon.retire()
        await asyncio.wait_for(serving, 10)
