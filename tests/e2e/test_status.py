"""crucible/status and the crucible.* commands."""

from __future__ import annotations

import pytest
from lsprotocol import types
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    open_document,
    provider_options,
    server_status,
)
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e


async def test_status_reports_the_contract_fields(fake: FakeProvider, lsp_session: Session) -> None:
    text = "def add(a, b):\n    "
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, text)
        await inline(client, uri, end_of(text))
        status = await server_status(client)
        via_command = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="crucible.status")
        )

    import crucible

    assert status["version"] == crucible.__version__
    assert status["uptime_s"] > 0
    assert (status["requests"]["total"], status["requests"]["served"]) == (1, 1)
    assert status["upstream"] == {"calls": 1, "errors": 0}
    assert (status["cache"]["hits"], status["cache"]["misses"]) == (0, 1)
    [provider] = status["providers"]
    assert (provider["name"], provider["state"], provider["calls"], provider["failures"]) == (
        "fake-ollama",
        "closed",
        1,
        0,
    )
    assert provider["latency_ms"]["p50"] > 0
    assert set(status["stages_ms"]) >= {"first_byte", "total"}
    assert status["memory"]["rss_mb"] > 10
    assert via_command["requests"]["served"] == 1


async def test_capabilities_advertise_inline_completion_and_commands(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        capabilities = client.initialize_result.capabilities

    assert capabilities.inline_completion_provider
    assert capabilities.completion_provider is not None
    assert capabilities.execute_command_provider is not None
    assert "crucible.status" in capabilities.execute_command_provider.commands
    assert capabilities.text_document_sync is not None
