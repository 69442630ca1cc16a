"""``[memory]`` per window in the shared daemon (``shared/budget.py``): the process is held to
the largest limits any window asks for; a window over its own limits (its own documents) is
relieved alone; ``crucible/status`` ``memory`` shows the session, the daemon and the rule."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import open_document, provider_options, server_status
from tests.e2e.test_shared_daemon import Place, place, window
from tests.fakes.provider import FakeProvider

__all__ = ["place"]  # the fixture, used by name

BIG = "x = 1\n" * 3_000_000  # 18 MB of open document: over the small window's own 16 MB


async def _until(client: LanguageClient, wanted: str) -> dict[str, Any]:
    """The status once this session's own level is ``wanted`` (the daemon samples every
    0.5 s here, a few seconds while idle)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        status = await server_status(client)
        if status["memory"]["session"]["pressure"] == wanted:
            return status
        assert asyncio.get_running_loop().time() < deadline, status["memory"]
        await asyncio.sleep(0.2)


async def test_each_window_is_held_to_its_own_memory_limits(
    place: Place, fake: FakeProvider
) -> None:
    options = provider_options(fake, cache={"prefetch": "on"})
    small = {**options, "memory": {"soft_limit_mb": 16, "hard_limit_mb": 64}}
    roomy = {**options, "memory": {"soft_limit_mb": 2048, "hard_limit_mb": 4096}}
    frequent = {**options, "memory": {"check_interval_s": 0.5}}
    async with (
        window(place, small) as tight,
        window(place, roomy) as large,
        window(place, frequent) as usual,
    ):
        for each in (tight, large):  # each session has applied its configuration
            await server_status(each)
        memory = (await server_status(usual))["memory"]
        # The process: the largest limits asked for, the shortest interval.
        assert memory["daemon"]["sessions"] == 3
        assert (memory["soft_limit_mb"], memory["hard_limit_mb"]) == (2048, 4096)
        assert memory["daemon"]["check_interval_s"] == 0.5
        assert memory["session"]["soft_limit_mb"] == 256  # its own: the defaults
        uri = open_document(tight, BIG, name="big.txt", language="plaintext")
        over = await _until(tight, "elevated")
        # The window over its own soft limit is relieved, alone.
        assert over["memory"]["session"]["own_mb"] >= 16
        assert over["scheduling"]["prefetch_paused"] is True
        assert over["memory"]["pressure"] == "normal"  # the process is within its budget
        for other in (large, usual):
            status = await server_status(other)
            assert status["memory"]["session"]["pressure"] == "normal"
            assert status["scheduling"]["prefetch_paused"] is False
        # Its document closed, it is back (a tenth under the limit).
        tight.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        back = await _until(tight, "normal")
        assert back["scheduling"]["prefetch_paused"] is False
    # The roomy window gone, the process is held to what the others ask for.
    async with window(place, frequent) as alone:
        memory = (await server_status(alone))["memory"]
        assert memory["daemon"]["sessions"] == 1
        assert (memory["soft_limit_mb"], memory["hard_limit_mb"]) == (256, 512)
