"""Configuration from every source, and bad values that are reported, not fatal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

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

TEXT = "def add(a, b):\n    "


async def test_invalid_values_are_named_and_fall_back(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake)
    options["completion"]["debounce_ms"] = "fast"
    options["completion"]["max_linez"] = 3
    async with lsp_session(options) as client:
        uri = open_document(client, TEXT)
        result = await inline(client, uri, end_of(TEXT))
        messages = [m.message for m in client.messages]

    assert len(messages) == 1, messages  # one message for all problems
    assert "completion.debounce_ms" in messages[0]
    assert "completion.max_linez" in messages[0] and "max_lines" in messages[0]
    # The rest of the configuration still applies: the fake provider answered.
    assert result.items[0].insert_text == "return a + b"


async def test_workspace_file_and_did_change_configuration(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    """crucible.toml in a workspace the user trusts configures the provider; the editor's
    settings win over it, and a change takes effect without a restart."""
    workspace = tmp_path / "project"
    workspace.mkdir()
    user_file = tmp_path / "xdg" / "crucible" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(f"trusted_workspaces = [{json.dumps(str(workspace))}]\n")
    (workspace / "crucible.toml").write_text(
        f'[[providers]]\nname = "from-file"\nkind = "ollama"\n'
        f'base_url = "{fake.base_url}"\nmodel = "qwen2.5-coder:1.5b-base"\n'
        '[completion]\ndebounce_ms = 0\n[cache]\nprefetch = "off"\n'
    )
    async with lsp_session(None, workspace=workspace) as client:
        uri = open_document(client, TEXT)
        first = await inline(client, uri, end_of(TEXT))
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crucible": {"completion": {"enabled": False}}}
            )
        )
        second = await inline(client, uri, end_of(TEXT))
        status = await server_status(client)

    assert first.items[0].insert_text == "return a + b"
    assert not second.items
    assert len(fake.generation_requests()) == 1
    assert status["providers"][0]["name"] == "from-file"


async def test_api_key_is_sent_to_its_provider_and_never_echoed(
    lsp_session: Session, tmp_path: Path
) -> None:
    secret = "sk-test-0123456789abcdef"
    with FakeProvider(model="gpt-test", reply="return a + b", require_api_key=secret) as fake:
        options = provider_options(fake, "openai")
        options["providers"][0]["api_key_env"] = "CRUCIBLE_TEST_KEY"
        log = tmp_path / "server.log"
        async with lsp_session(
            options, env={"CRUCIBLE_TEST_KEY": secret}, args=("--log-file", str(log))
        ) as client:
            uri = open_document(client, TEXT)
            result = await inline(client, uri, end_of(TEXT))
            status = await server_status(client)

    assert result.items[0].insert_text == "return a + b"
    assert fake.generation_requests()[0].headers["authorization"] == f"Bearer {secret}"
    assert secret not in log.read_text()
    assert secret not in repr(status) and secret not in repr(client.messages)


async def test_editor_client_keys_are_accepted_silently_and_a_typo_is_not(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """vscode-languageclient sends ``crucible.trace.server`` with every configuration: no
    pop-up for it, and the rest of the change applies. A real typo still gets one."""
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, TEXT)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={
                    "crucible": {
                        "trace": {"server": "verbose"},
                        "server": {"path": "/usr/local/bin/crucible-lsp"},
                        "completion": {"enabled": False},
                    }
                }
            )
        )
        disabled = await inline(client, uri, end_of(TEXT))
        quiet = [m.message for m in client.messages]
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"crucible": {"trace": {"server": "off"}, "completoin": {}}}
            )
        )
        await asyncio.wait_for(client.wait_for_notification(types.WINDOW_SHOW_MESSAGE), 5)
        loud = [m.message for m in client.messages]

    assert quiet == []
    assert not disabled.items and fake.generation_requests() == []
    assert len(loud) == 1 and "completoin" in loud[0] and "trace" not in loud[0]
