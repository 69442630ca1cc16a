"""Shared pytest configuration.

Its presence matters: ``tests/`` is a package, so pytest imports this file as ``tests.conftest``
and puts the repository root on ``sys.path`` first, which lets every test (in any folder, with or
without ``__init__.py``) import ``tests.fakes``.

The default run is spread over pytest-xdist workers (``-n auto`` in pyproject.toml; the count is
``pytest_xdist_auto_num_workers`` below). Each worker is a pytest session of its own: the
session fixtures here (the fork server) and in the folders' conftests are built once per
worker that needs them, in its own ``tmp_path_factory`` (the llama.cpp tests are one xdist
group, ``--dist loadgroup``, so one worker starts one llama server); the redis server is one
per test; fake providers listen on port 0. What the worker processes would otherwise share is
the user's own XDG directories: :func:`pytest_configure` gives each worker private ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import forked_servers
from tests.fakes.ports import reserved_port
from tests.forked_servers import ForkServer
from tests.redis_server import MISSING_REASON, REDIS_SERVER, RedisServer

# ``-n auto``: one worker more than the cores. The suite mostly waits (on server processes,
# timers, fake providers), so a worker more than the cores overlaps that waiting; but its CPU is
# not nothing (~200 s a run: servers starting, hypothesis, the memory tests), each worker
# collects the whole suite again (~7 s of CPU), and the tests that time a debounce or a deadline
# need the CPU when they ask. On 2 cores, 3 workers beat 4 (faster and no failures, where 4
# failed five timing tests under the same load): docs/architecture.md, "Tests".
EXTRA_WORKERS = 1
MAX_WORKERS = 8

# What the server and its thin client read to find the user's files, cache, logs and the
# shared daemon's socket; tests that care set their own, the rest get the worker's.
_XDG = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR")
_private_home: Path | None = None


@pytest.hookimpl(optionalhook=True)  # an xdist hook: ``-p no:xdist`` runs without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(MAX_WORKERS, (cores or 1) + EXTRA_WORKERS))


def pytest_configure(config: pytest.Config) -> None:
    """Point the XDG directories of this process (a worker, or the whole run without xdist),
    and of every server it starts, at a private folder: no test reads the user's
    configuration, writes into the user's cache (an L2 sqlite file two workers would share),
    or meets a shared daemon of the user's or of another worker. Short, under /tmp: the
    daemon's Unix socket lives in XDG_RUNTIME_DIR and a socket path is limited to ~107 bytes."""
    global _private_home
    _private_home = Path(tempfile.mkdtemp(prefix="crucible-xdg-"))
    for name in _XDG:
        folder = _private_home / name.removeprefix("XDG_").removesuffix("_HOME").lower()
        folder.mkdir(mode=0o700)
        os.environ[name] = str(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_home is not None:
        shutil.rmtree(_private_home, ignore_errors=True)


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


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections and that the OS gives to no other socket (no
    other xdist worker's server, no outgoing connection) for the test's duration; a fake
    provider of the test's may serve on it (tests/fakes/ports.py)."""
    with reserved_port() as port:
        yield port
