"""Shared pytest configuration.

Its presence matters: ``tests/`` is a package, so pytest imports this file as ``tests.conftest``
and puts the repository root on ``sys.path`` first, which lets every test (in any folder, with or
without ``__init__.py``) import ``tests.fakes``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import forked_servers
from tests.forked_servers import ForkServer
from tests.redis_server import MISSING_REASON, REDIS_SERVER, RedisServer


@pytest.fixture(scope="session")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer | None]:
    """The preloaded interpreter end-to-end servers are forked from (tests/forked_servers.py);
    None when ``CRUCIBLE_TEST_FORK=0`` asks for spawned servers."""
    if not forked_servers.enabled():
        yield None
        return
    server = ForkServer(tmp_path_factory.mktemp("fork") / "s")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a Unix socket of this test's own, stopped after it (in a short
    directory of its own: a socket path is limited to ~107 bytes, pytest's are long)."""
    if REDIS_SERVER is None:
        pytest.skip(MISSING_REASON)
    directory = Path(tempfile.mkdtemp(prefix="crucible-redis-"))
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
