"""The shared daemon across versions: two installed versions used in turn end on one daemon
(the newer), never retiring each other in a loop; a client the newer daemon cannot serve
(another protocol) serves its window alone and leaves the daemon serving the others.

Versions are faked by the test only: a thin client started with ``-c`` that sets
``crucible.__version__`` (and the daemon it would start, ``client._DAEMON_MAIN``), and, for
another protocol, ``handshake.PROTOCOL``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tests.e2e.conftest import server_status
from tests.e2e.test_shared_daemon import SHARED, Place, place, window

import crucible

__all__ = ["place"]  # the fixture, used by name

OLD = "0.0.1"


def client_of(version: str, *, protocol: int | None = None) -> list[str]:
    """A thin client that says it is ``version``, whose daemon, if it starts one, says so too."""
    daemon = (
        f"import sys, crucible; crucible.__version__ = {version!r};"
        " from crucible.shared.daemon import main; sys.exit(main(sys.argv[1:]))"
    )
    patch = f"import crucible.shared.handshake as h; h.PROTOCOL = {protocol};" if protocol else ""
    code = (
        f"import sys, crucible; crucible.__version__ = {version!r}; {patch}"
        f" import crucible.shared.client as c; c._DAEMON_MAIN = {daemon!r};"
        " from crucible.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", code, "--stdio", "--shared"]


async def test_two_versions_in_turn_end_on_the_newer_daemon_once(place: Place) -> None:
    old = client_of(OLD)
    async with window(place, command=old) as first:
        older = await server_status(first)
        assert older["version"] == OLD
        old_daemon = older["shared"]["pid"]
    pids = {old_daemon}
    # The editors take turns: new, old, new, old. The first new one retires the old daemon
    # (its last session has ended) and starts its own; from then on every window, old or new,
    # is served by that one.
    for command in (SHARED, old, SHARED, old):
        async with window(place, command=command) as editor:
            status = await server_status(editor)
            pids.add(status["shared"]["pid"])
            assert status["version"] != OLD  # the newer daemon serves the older client too
    (new_daemon,) = pids - {old_daemon}
    assert [p.pid for p in place.wait_daemons(1)] == [new_daemon]  # the old one retired


async def test_two_versions_open_together_share_the_newer_daemon(place: Place) -> None:
    async with (
        window(place) as new,
        window(place, command=client_of(OLD)) as old,
        window(place) as again,
    ):
        pid = (await server_status(new))["shared"]["pid"]
        assert (await server_status(old))["shared"]["pid"] == pid
        status = await server_status(again)
        assert status["shared"]["pid"] == pid and status["shared"]["sessions"] == 3
        assert len(place.daemons()) == 1


async def test_a_client_of_another_protocol_serves_alone_and_retires_nothing(
    place: Place,
) -> None:
    async with window(place) as new:
        pid = (await server_status(new))["shared"]["pid"]
        async with window(place, command=client_of(OLD, protocol=99)) as alone:
            status = await server_status(alone)
            assert "shared" not in status  # a plain server, the client's own child
        status = await server_status(new)
        assert status["shared"]["pid"] == pid and status["shared"]["sessions"] == 1
        async with window(place) as later:
            assert (await server_status(later))["shared"]["pid"] == pid
        assert [p.pid for p in place.daemons()] == [pid]


async def test_an_edited_checkout_retires_the_daemon_its_older_code_started(
    place: Place,
) -> None:
    """A developer's editable install keeps its version across an edit or a ``git pull``;
    the daemon started before it runs the old code. The windows started after the edit
    retire it, as an upgrade does, and are served by a daemon of the new code; a window of
    the same code joins that one (``shared/code_version.py``)."""
    checkout = place.home / "checkout"
    shutil.copytree(
        Path(crucible.__file__).parent,
        checkout / "crucible",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {"PYTHONPATH": str(checkout)}
    async with window(place, env=env) as first:
        old_daemon = (await server_status(first))["shared"]["pid"]
    edited = checkout / "crucible" / "completion" / "postprocess.py"
    later = time.time_ns() + 10**9  # after every file the copy wrote, whatever the clock
    os.utime(edited, ns=(later, later))
    async with window(place, env=env) as second:
        new_daemon = (await server_status(second))["shared"]["pid"]
    assert new_daemon != old_daemon
    assert [p.pid for p in place.wait_daemons(1)] == [new_daemon]  # the old one retired
    async with window(place, env=env) as third:  # the same code: no new daemon
        assert (await server_status(third))["shared"]["pid"] == new_daemon
