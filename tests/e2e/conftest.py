"""End-to-end harness: the real server process over stdio, a real loopback provider.

``lsp_session`` starts ``python -m crucible --stdio`` with pytest-lsp (forked from a preloaded
interpreter: ``tests/forked_servers.py`` says why and what stays spawned), isolated from the
user's own configuration and cache (XDG_CONFIG_HOME and XDG_CACHE_HOME point into tmp_path),
initializes it with the given options and capabilities, and shuts it down cleanly afterwards.
"""

from __future__ import annotations

import asyncio
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
from tests.forked_servers import ForkServer

SERVER_ARGS = ["--stdio", "--log-level", "DEBUG"]
SERVER = [sys.executable, "-m", "crucible", *SERVER_ARGS]


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


def provider_options(
    fake: FakeProvider,
    kind: str = "ollama",
    *,
    cache: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One provider on the fake, no debounce; ``extra`` goes to ``[completion]``. Prefetch
    is off unless ``cache`` turns it on: it adds provider calls most tests count."""
    root, v1 = fake.base_url, f"{fake.base_url}/v1"
    base = {"ollama": root, "llamacpp": root, "openai": v1, "anthropic": root, "codestral": v1}
    return {
        "providers": [
            {"name": f"fake-{kind}", "kind": kind, "base_url": base[kind], "model": fake.models[0]}
        ],
        "completion": {"debounce_ms": 0, **extra},
        "cache": {"prefetch": "off", **(cache or {})},
    }


Session = Callable[..., AbstractAsyncContextManager[LanguageClient]]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply="return a + b") as provider:
        yield provider


@pytest.fixture
def lsp_session(tmp_path: Path, fork_server: ForkServer | None) -> Session:
    @asynccontextmanager
    async def session(
        init_options: Any = None,
        *,
        capabilities: types.ClientCapabilities | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        workspace: Path | None = None,
        client_info: types.ClientInfo | None = None,
        before_initialize: Callable[[LanguageClient], None] | None = None,
    ) -> AsyncIterator[LanguageClient]:
        root = workspace or tmp_path / "workspace"
        root.mkdir(parents=True, exist_ok=True)
        server_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
            **(env or {}),
        }
        command = (
            [*SERVER, *args] if fork_server is None else fork_server.command([*SERVER_ARGS, *args])
        )
        config = ClientServerConfig(server_command=command, server_env=server_env)
        client = await config.start()
        watch_status(client)
        if before_initialize is not None:  # e.g. handlers for requests the server will send
            before_initialize(client)
        try:
            client.initialize_result = await client.initialize_session(  # type: ignore[attr-defined]
                types.InitializeParams(
                    capabilities=capabilities or inline_capabilities(),
                    client_info=client_info,
                    root_uri=root.as_uri(),
                    workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                    initialization_options=init_options,
                )
            )
            try:
                yield client
            finally:
                # Also after a failed assertion: without shutdown/exit the server process is
                # never told to go, and the test would hang until pytest-timeout instead of
                # reporting the assertion.
                await asyncio.wait_for(client.shutdown_session(), 10)
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


def watch_status(client: LanguageClient) -> None:
    """Collect every ``crucible/didChangeStatus`` payload in ``client.statuses``, in order."""
    statuses: list[dict[str, Any]] = []
    client.statuses = statuses  # type: ignore[attr-defined]

    @client.feature("crucible/didChangeStatus")
    def did_change_status(_: LanguageClient, params: Any) -> None:
        statuses.append(_plain(params))


def statuses(client: LanguageClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.statuses  # type: ignore[attr-defined]
    return found


async def server_status(client: LanguageClient) -> dict[str, Any]:
    """The ``crucible/status`` custom request, as a plain dict."""
    result = _plain(await client.protocol.send_request_async("crucible/status", {}))
    assert isinstance(result, dict)
    return result


class Editor:
    """Types into one open document the way an editor does: an incremental didChange per
    keystroke, then an inline-completion request that is not awaited before the next key."""

    def __init__(self, client: LanguageClient, uri: str, text: str) -> None:
        self.client, self.uri, self.text, self.version = client, uri, text, 1

    def type(self, chars: str) -> None:
        for char in chars:
            self.edit(len(self.text), len(self.text), char)

    def edit(self, start: int, end: int, new: str) -> None:
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=self.uri, version=self.version
                ),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(self.position(start), self.position(end)), text=new
                    )
                ],
            )
        )
        self.text = self.text[:start] + new + self.text[end:]

    def position(self, offset: int) -> types.Position:
        return end_of(self.text[:offset])

    def request(self, *, invoked: bool = False, msg_id: str | None = None) -> asyncio.Future[Any]:
        """Send an inline-completion request for the end of the text, right now, in order."""
        kind = types.InlineCompletionTriggerKind
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=end_of(self.text),
            context=types.InlineCompletionContext(
                trigger_kind=kind.Invoked if invoked else kind.Automatic
            ),
        )
        return asyncio.wrap_future(
            self.client.protocol.send_request(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
            )
        )


def texts(result: Any) -> list[str]:
    return [item.insert_text for item in result.items]
