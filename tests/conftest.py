"""Shared pytest configuration.

Its presence matters: ``tests/`` is a package, so pytest imports this file as ``tests.conftest``
and puts the repository root on ``sys.path`` first, which lets every test (in any folder, with or
without ``__init__.py``) import ``tests.fakes``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import forked_servers
from tests.forked_servers import ForkServer


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
