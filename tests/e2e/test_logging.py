"""Where the server's log goes, as an editor sees it.

Editors show everything a server writes on stderr as errors, so at the default level stderr
must stay silent during ordinary work; INFO reaches the editor as window/logMessage instead,
and --log-file keeps everything. These tests start the server WITHOUT conftest's
``--log-level DEBUG`` and read the process's real stderr (redirected to a file by a shell,
since pytest-lsp forwards it to the test's own stderr).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from tests.e2e.conftest import end_of, inline, inline_capabilities, open_document, provider_options
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "


@asynccontextmanager
async def server(
    tmp_path: Path, options: Any, *args: str
) -> AsyncIterator[tuple[LanguageClient, Path]]:
    """The real server at the level ``args`` choose (the default without any), its stderr
    going to the returned file; shut down cleanly on exit."""
    stderr = tmp_path / "stderr.txt"
    root = tmp_path / "workspace"
    root.mkdir(exist_ok=True)
    command = [
        "sh",
        "-c",
        'exec "$@" 2>"$CRUCIBLE_TEST_STDERR"',
        "sh",
        sys.executable,
        "-m",
        "crucible",
        "--stdio",
        *args,
    ]
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "CRUCIBLE_TEST_STDERR": str(stderr),
    }
    client = await ClientServerConfig(server_command=command, server_env=env).start()
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=inline_capabilities(),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                initialization_options=options,
            )
        )
        yield client, stderr
        await client.shutdown_session()
    finally:
        await client.stop()


async def logged(client: LanguageClient, text: str) -> list[Any]:
    """The window/logMessage notifications containing ``text``, once at least one arrived
    (or after 5 s)."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        found = [m for m in client.log_messages if text in m.message]
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.02)


def change_configuration(client: LanguageClient, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"crucible": settings})
    )


async def test_default_level_keeps_info_off_stderr_and_sends_it_to_the_editor(
    fake: FakeProvider, tmp_path: Path
) -> None:
    async with server(tmp_path, provider_options(fake)) as (client, stderr):
        uri = open_document(client, TEXT)
        result = await inline(client, uri, end_of(TEXT))
        change_configuration(client, {"completion": {"debounce_ms": 10}})
        # Notifications editor clients send: the diagnostics Crucible's own clients forward,
        # and one of another client's extensions; neither is an error.
        client.protocol.notify(
            "crucible/didChangeDiagnostics",
            {"textDocument": {"uri": uri, "version": 1}, "diagnostics": []},
        )
        client.protocol.notify("$/someClient/extension", {"x": 1})
        applied = await logged(client, "configuration applied")
        # A request after the change, so the change has been handled before shutdown.
        await inline(client, uri, end_of(TEXT))
        debug = [m for m in client.log_messages if m.type == types.MessageType.Log]

    assert result.items[0].insert_text == "return a + b"
    # Start-up (buffered until initialize), initialize, and the configuration change.
    assert len(applied) >= 2, [m.message for m in client.log_messages]
    assert all(m.type == types.MessageType.Info for m in applied)
    assert not debug  # DEBUG stays off at the default level, in the editor too
    assert stderr.read_text() == ""


async def test_warnings_reach_stderr_and_log_file_gets_everything(
    fake: FakeProvider, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "crucible.log"
    options = provider_options(fake)
    options["completion"]["debounce_mz"] = 3  # a typo: a WARNING naming the key
    async with server(tmp_path, options, "--log-file", str(log)) as (client, stderr):
        uri = open_document(client, TEXT)
        await inline(client, uri, end_of(TEXT))
        warned = await logged(client, "completion.debounce_mz")

    errors = stderr.read_text()
    assert "WARNING" in errors and "completion.debounce_mz" in errors
    assert " INFO " not in errors
    assert warned and warned[0].type == types.MessageType.Warning
    written = log.read_text()
    assert "INFO crucible.app: configuration applied" in written
    assert "WARNING" in written and "completion.debounce_mz" in written


async def test_debug_level_sends_debug_as_log_messages_without_echoing_traffic(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """At DEBUG, pygls logs every message it sends; sending a log message must neither log
    through itself (an endless loop) nor echo the editor's own traffic back to it."""
    async with server(tmp_path, provider_options(fake), "--log-level", "DEBUG") as (
        client,
        stderr,
    ):
        uri = open_document(client, TEXT)
        for _ in range(3):
            await inline(client, uri, end_of(TEXT))
        await logged(client, "configuration applied")
        await asyncio.sleep(0.3)
        count = len(client.log_messages)
        await asyncio.sleep(0.5)  # a loop would keep sending
        later = len(client.log_messages)
        messages = list(client.log_messages)

    assert any(m.type == types.MessageType.Log for m in messages)
    assert later == count
    assert not [m for m in messages if "Sending data" in m.message]
    assert " DEBUG " not in stderr.read_text() and " INFO " not in stderr.read_text()
