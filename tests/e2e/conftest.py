"""End-to-end harness: the real server process over stdio, a real loopback provider.

``lsp_session`` starts ``python -m crucible --stdio`` with pytest-lsp, isolated from the
user's own configuration (XDG_CONFIG_HOME points into tmp_path), initializes it with the
given options and capabilities, and shuts it down cleanly afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from tests.fakes.provider import FakeProvider

SERVER = [sys.executable, "-m", "crucible", "--stdio", "--log-level", "DEBUG"]


def inline_capabilities() -> types.ClientCapabilities:
    """VS Code's capabilities plus LSP 3.18 inline completion (as current VS Code sends)."""
    capabilities = client_capabilities("visual-studio-code")
    assert capabilities.text_document is not None
    capabilities.text_document.inline_completion = types.InlineCompletionClientCapabilities(
        dynamic_registration=False
    )
    return capabilities


def menu_only_capabilities() -> types.ClientCapabilities:
    """A client without inline completion (Neovim 0.11's built-in client)."""
    return client_capabilities("neovim@v0.11.0")


def provider_options(fake: FakeProvider, kind: str = "ollama", **extra: Any) -> dict[str, Any]:
    base = {"ollama": fake.base_url, "llamacpp": fake.base_url, "openai": f"{fake.base_url}/v1"}
    return {
        "providers": [
            {"name": f"fake-{kind}", "kind": kind, "base_url": base[kind], "model": fake.models[0]}
        ],
        "completion": {"debounce_ms": 0, **extra},
    }


Session = Callable[..., AbstractAsyncContextManager[LanguageClient]]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply="return a + b") as provider:
        yield provider


@pytest.fixture
def lsp_session(tmp_path: Path) -> Session:
    @asynccontextmanager
    async def session(
        init_options: Any = None,
        *,
        capabilities: types.ClientCapabilities | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        workspace: Path | None = None,
    ) -> AsyncIterator[LanguageClient]:
        root = workspace or tmp_path / "workspace"
        root.mkdir(parents=True, exist_ok=True)
        server_env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **(env or {})}
        config = ClientServerConfig(server_command=[*SERVER, *args], server_env=server_env)
        client = await config.start()
        try:
            client.initialize_result = await client.initialize_session(  # type: ignore[attr-defined]
                types.InitializeParams(
                    capabilities=capabilities or inline_capabilities(),
                    root_uri=root.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                    initialization_options=init_options,
                )
            )
            yield client
            await client.shutdown_session()
        finally:
            await client.stop()

    return session


def open_document(
    client: LanguageClient, text: str, *, name: str = "main.py", language: str = "python"
) -> str:
    uri = f"file:///workspace/{name}"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )
    return uri


def end_of(text: str) -> types.Position:
    """The LSP position (UTF-16) at the end of ``text``."""
    lines = text.split("\n")
    return types.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)


async def inline(
    client: LanguageClient,
    uri: str,
    position: types.Position,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
    )
    assert isinstance(result, types.InlineCompletionList)
    return result


def _plain(value: Any) -> Any:
    """pygls turns JSON objects of unknown types into namedtuples; make them dicts again."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


async def server_status(client: LanguageClient) -> dict[str, Any]:
    """The ``crucible/status`` custom request, as a plain dict."""
    result = _plain(await client.protocol.send_request_async("crucible/status", {}))
    assert isinstance(result, dict)
    return result
