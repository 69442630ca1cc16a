"""A minimal LSP client session with the real Crucible server process, for the benchmarks.

It does what an editor does and no more: spawn ``python -m crucible --stdio``, ``initialize``
with inline-completion capabilities and ``initializationOptions``, open/change/close documents
with incremental edits in UTF-16 positions, fire ``textDocument/inlineCompletion``
requests without waiting for them, and ``shutdown``/``exit`` at the end.

The server runs isolated from the user's machine: ``XDG_CONFIG_HOME`` and ``XDG_CACHE_HOME``
point into a temporary directory (no user configuration, no disk cache from an earlier run), and
its log goes to a file there. Two sessions started one after the other in the same ``workdir``
share those directories, disk cache included: that is a server restart. pygls pipes the
server's stderr; a task drains it (a pipe nobody reads would eventually block the server) and
keeps its tail for the report of a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

_SHUTDOWN_TIMEOUT = 5.0
_INITIALIZE_TIMEOUT = 30.0
_STDERR_LINES = 40


class ServerExited(RuntimeError):
    """The server process ended while the session was still using it."""


def end_position(text: str) -> types.Position:
    """The LSP position (line, UTF-16 code units) at the end of ``text``."""
    line = text.count("\n")
    last = text[text.rfind("\n") + 1 :]
    return types.Position(line=line, character=len(last.encode("utf-16-le")) // 2)


def offset_of(text: str, position: types.Position) -> int:
    """The string index of an LSP position (UTF-16 columns) in ``text``, clamped to the line."""
    start = 0
    for _ in range(position.line):
        newline = text.find("\n", start)
        if newline < 0:
            return len(text)
        start = newline + 1
    end = text.find("\n", start)
    line = text[start : len(text) if end < 0 else end]
    units = 0
    for index, char in enumerate(line):
        if units >= position.character:
            return start + index
        units += 2 if ord(char) > 0xFFFF else 1
    return start + len(line)


def _capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
        ),
    )


class _BenchClient(LanguageClient):
    """Remembers what the server said on window/showMessage (configuration errors, say)."""

    def __init__(self) -> None:
        super().__init__("crucible-typing-replay", "1")
        self.messages: list[str] = []
        self.statuses: list[Any] = []  # crucible/didChangeStatus notifications, in order

        @self.feature(types.WINDOW_SHOW_MESSAGE)  # type: ignore[untyped-decorator]  # pygls
        def show_message(params: types.ShowMessageParams) -> None:
            self.messages.append(params.message)

        @self.feature(types.WINDOW_LOG_MESSAGE)  # type: ignore[untyped-decorator]  # pygls
        def log_message(params: types.LogMessageParams) -> None:
            pass  # the log file has it; without a handler pygls warns on every message

        @self.feature("crucible/didChangeStatus")  # type: ignore[untyped-decorator]  # pygls
        def status_changed(params: Any) -> None:
            self.statuses.append(params)


class CrucibleSession:
    """One running server process and its client; see the module docstring."""

    def __init__(self, client: _BenchClient, workdir: Path) -> None:
        self._client = client
        self.workdir = workdir
        self.log_file = workdir / "server.log"
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)  # the tail of the server's stderr

    @property
    def messages(self) -> list[str]:
        return self._client.messages

    @property
    def pid(self) -> int:
        """The server process's id (the endurance run reads its resources from outside)."""
        server = self._client._server
        if server is None:
            raise ServerExited("the server process was never started")
        return server.pid

    @property
    def returncode(self) -> int | None:
        """The server's exit status once it has exited (a crash, mid-run), else None."""
        server = self._client._server
        return None if server is None else server.returncode

    def check_alive(self) -> None:
        """Raise :class:`ServerExited`, with the tails of its log and stderr, if it has exited."""
        if self.returncode is None:
            return
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        tail = [*log.splitlines()[-20:], *self.stderr]
        raise ServerExited(f"server exited with code {self.returncode}:\n" + "\n".join(tail))

    async def drain_stderr(self) -> None:
        """Read the server's stderr to its end, keeping the last lines."""
        server = self._client._server
        if server is None or server.stderr is None:
            return
        while line := await server.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    def open(self, uri: str, language_id: str, text: str) -> None:
        item = types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        self._client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def insert(self, uri: str, version: int, position: types.Position, text: str) -> None:
        """An incremental change: ``text`` inserted at ``position``."""
        self.replace(uri, version, position, position, text)

    def replace(
        self, uri: str, version: int, start: types.Position, end: types.Position, text: str
    ) -> None:
        """An incremental change: the range ``start``-``end`` replaced by ``text`` (a deletion
        when ``text`` is empty, an insertion when the range is empty)."""
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=start, end=end), text=text
        )
        document = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
        params = types.DidChangeTextDocumentParams(text_document=document, content_changes=[change])
        self._client.text_document_did_change(params)

    def close(self, uri: str) -> None:
        document = types.TextDocumentIdentifier(uri=uri)
        self._client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=document)
        )

    def inline_completion(
        self,
        uri: str,
        position: types.Position,
        trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
    ) -> Future[Any]:
        """Send the request now; the returned future resolves (on this loop) with the answer."""
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=trigger),
        )
        return self._client.text_document_inline_completion(params)

    def inline_completion_with_id(
        self, uri: str, position: types.Position, msg_id: str
    ) -> Future[Any]:
        """An automatic inline completion request sent with the id ``msg_id``, so that it can be
        cancelled (:meth:`cancel`) the way VS Code cancels the previous one on a keystroke."""
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        return self._client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
        )

    def cancel(self, msg_id: str) -> None:
        """``$/cancelRequest`` for the request sent with ``msg_id``."""
        self._client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))

    def notify(self, method: str, params: Any) -> None:
        """A notification of Crucible's own (``crucible/didChangeDiagnostics``, say)."""
        self._client.protocol.notify(method, params)

    async def hover(self, uri: str, position: types.Position) -> types.Hover | None:
        params = types.HoverParams(types.TextDocumentIdentifier(uri=uri), position)
        return await self._client.text_document_hover_async(params)

    def request(self, method: str, params: Any) -> Future[Any]:
        """Any request, sent now; the future resolves with the structured answer."""
        return self._client.protocol.send_request(method, params)

    def on_request(self, method: str, answer: Any) -> None:
        """Answer the server's ``method`` requests with ``answer(params)``."""
        self._client.feature(method)(answer)

    async def status(self, timeout: float = 5.0) -> Any:  # noqa: ASYNC109 - a plain bound
        """``crucible/status`` as plain JSON values, or None if the server does not answer it
        within ``timeout`` seconds. A late answer is left to arrive, not cancelled: pygls
        fails loudly ("Unable to handle message") on an answer to a cancelled future."""
        try:
            request = asyncio.wrap_future(self.request("crucible/status", {}))
            done, _ = await asyncio.wait([request], timeout=timeout)
            return _plain(request.result()) if done else None
        except Exception:
            return None


def _plain(value: Any) -> Any:
    """pygls turns JSON objects of unknown types into namedtuples; make them dicts again."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@contextlib.asynccontextmanager
async def crucible_session(
    workdir: Path,
    initialization_options: dict[str, Any],
    *,
    log_level: str = "INFO",
    python_path: str | None = None,
    capabilities: types.ClientCapabilities | None = None,
) -> AsyncIterator[CrucibleSession]:
    """Start the server in ``workdir`` (a scratch directory), initialize it, shut it down after.
    ``python_path``, when given, is the server's ``PYTHONPATH`` (another checkout of it)."""
    workspace = workdir / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(workdir / "config"),
        "XDG_CACHE_HOME": str(workdir / "cache"),
    }
    if python_path is not None:
        env["PYTHONPATH"] = python_path
    client = _BenchClient()
    session = CrucibleSession(client, workdir)
    command = ["-m", "crucible", "--stdio", "--log-file", str(session.log_file)]
    await client.start_io(
        sys.executable, *command, "--log-level", log_level, env=env, cwd=workspace
    )
    drain = asyncio.create_task(session.drain_stderr())
    try:
        params = types.InitializeParams(
            process_id=os.getpid(),
            capabilities=capabilities or _capabilities(),
            root_uri=workspace.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="bench")],
            initialization_options=initialization_options,
        )
        try:
            await asyncio.wait_for(client.initialize_async(params), _INITIALIZE_TIMEOUT)
        except RuntimeError:  # pygls fails pending requests this way when the process exits
            session.check_alive()
            raise
        client.initialized(types.InitializedParams())
        yield session
        session.check_alive()
        await asyncio.wait_for(client.shutdown_async(None), _SHUTDOWN_TIMEOUT)
        client.exit(None)
    finally:
        await _stop(client)
        await asyncio.wait([drain], timeout=_SHUTDOWN_TIMEOUT)
        drain.cancel()


async def _stop(client: LanguageClient) -> None:
    """Wait for the server to exit after ``exit``; kill it if it does not."""
    server = client._server
    if server is not None and server.returncode is None:
        try:
            await asyncio.wait_for(server.wait(), _SHUTDOWN_TIMEOUT)
        except TimeoutError:
            server.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), _SHUTDOWN_TIMEOUT)  # type: ignore[no-untyped-call]
