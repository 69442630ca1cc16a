"""Fixtures: the tiny deterministic model, one real llama.cpp server per session, HTTP clients.

The model is written once per session (``tiny_model.py``) and served by a real llama.cpp server
(``server.py``) with two parallel slots on 127.0.0.1. When the server's binary cannot execute
on this CPU (SIGILL), every test here is skipped with that reason; any other failure to start
fails them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import lsp_session  # re-exported: the e2e tests here use it
from tests.llama_server.server import CpuNotSupported, LlamaServerProcess, wait_until_idle
from tests.llama_server.tiny_model import write_tiny_model

__all__ = ["llama", "llama_server", "lsp_session"]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group for every test here (``--dist loadgroup``): one worker runs them all,
    so one llama.cpp server serves the run instead of one per worker (its start, its two
    slots' threads and the model's memory, each time)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("llama_server"))


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServerProcess]:
    workdir = tmp_path_factory.mktemp("llama-server")
    model = write_tiny_model(workdir / "tiny.gguf")
    server = LlamaServerProcess(model, workdir, parallel=2)
    try:
        server.start()
    except CpuNotSupported as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def llama(llama_server: LlamaServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the server's own endpoints (``/slots``, ``/metrics``). Every test starts
    and ends with all slots idle, so one test's generation never shows up in the next."""
    async with httpx.AsyncClient(base_url=llama_server.root, trust_env=False) as client:
        await wait_until_idle(client)
        yield client
        await wait_until_idle(client)
