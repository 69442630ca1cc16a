"""The debounce through the real server: its deadline counts from the document's last edit,
so a request that arrives after the user already paused goes upstream at once (issue 16)."""

from __future__ import annotations

import asyncio

import pytest
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "


async def test_a_request_after_the_pause_is_not_debounced_again(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = "eturn a + b"
    options = provider_options(fake, debounce_mode="fixed", debounce_ms=1000)
    async with lsp_session(options) as client:
        # Loaded first: an edit sent while the server still loads (it answers initialize
        # early) is only applied, and its time taken, once it has.
        await server_status(client)
        editor = Editor(client, open_document(client, TEXT), TEXT)
        editor.type("r")
        await asyncio.sleep(1.2)  # the user paused longer than the debounce
        late = editor.request()
        # A key typed soon after supersedes the late request if it were still waiting out a
        # debounce counted from its own arrival (1 s); counted from the edit, it already went.
        await asyncio.sleep(0.3)
        editor.type("e")
        latest = editor.request(invoked=True)
        late_result, _ = await asyncio.wait_for(asyncio.gather(late, latest), 10)

    prompts = [r.body["prompt"] for r in fake.generation_requests() if isinstance(r.body, dict)]
    assert any(prompt.endswith(TEXT + "r") for prompt in prompts)
    assert texts(late_result) == ["eturn a + b"]
