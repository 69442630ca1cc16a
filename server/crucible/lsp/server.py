"""CrucibleLanguageServer: pygls wiring, the transport loop, and the Backend seam to the
services.

The transport is Crucible's own, not pygls's reader: ``_serve`` reads stdin (an asyncio pipe;
a daemon thread for a regular file) or one TCP client through ``lsp/framing.py`` and hands each
frame to ``CrucibleProtocol.handle_frame`` (``lsp/protocol.py``), which applies the JSON-RPC
2.0 and LSP rules before pygls dispatches to the handlers. Serving ends on ``exit``, at end of
input, or when the editor process named by ``initialize.processId`` ends
(``runtime/parent.py``); ``serve_stdio``/``serve_tcp`` return the exit code.

The asyncio pipe is also a measured fix: pygls's reader hands every header line and body to a
thread pool, three thread hops per message, about 0.3 ms of latency and CPU per keystroke.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcException, PyglsError
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

import crucible
from crucible.actions.service import CodeActionService
from crucible.completion.service import CompletionService
from crucible.context.neighbours import OpenFile
from crucible.context.recent import RecentDocuments
from crucible.hover.service import HoverService
from crucible.lsp.clients import ClientTraits, CodeActionTraits
from crucible.lsp.document_text import open_documents_bytes
from crucible.lsp.framing import MAX_MESSAGE_BYTES, Frame, FrameError, FrameReader
from crucible.lsp.protocol import (
    EXIT_AFTER_SHUTDOWN,
    EXIT_WITHOUT_SHUTDOWN,
    CrucibleProtocol,
)
from crucible.lsp.stdio import stdin_stream
from crucible.review.service import ReviewService
from crucible.runtime.log import client_handler
from crucible.runtime.parent import ParentWatch

logger = logging.getLogger(__name__)

DID_CHANGE_STATUS = "crucible/didChangeStatus"


class Backend(Protocol):
    """What the LSP layer needs from the rest of the server; ``app.App`` provides it."""

    @property
    def completion(self) -> CompletionService: ...

    @property
    def hover(self) -> HoverService:
        """Hover explanations, and the diagnostics store they read (``hover/``)."""
        ...

    @property
    def review(self) -> ReviewService:
        """AI review on save (``review/``), off by default."""
        ...

    @property
    def code_actions(self) -> CodeActionService: ...

    @property
    def recent(self) -> RecentDocuments:
        """Open documents, most recently opened/edited first (``context/recent.py``)."""
        ...

    def initialize(self, workspace_root: str | None, init_options: object) -> list[str]:
        """Load configuration for this workspace; returns the problems to show the user."""
        ...

    async def start(self) -> None:
        """Start what needs the event loop, on the running one; once, after ``initialize``."""
        ...

    def change_configuration(self, client_settings: object) -> list[str]:
        """Apply editor settings (didChangeConfiguration / workspace/configuration)."""
        ...

    def status(self) -> dict[str, Any]: ...

    def connect_editor(self, editor: EditorChannel) -> None:
        """The editor is ready: problems and status changes may be pushed to it now."""
        ...

    async def clear_cache(self) -> dict[str, int]:
        """Empty every level of the response cache; returns what each level held."""
        ...

    async def aclose(self) -> None: ...


class FrameSource(Protocol):
    """Where frames come from: a ``FrameReader``, or ``lsp/early_start.py``'s frames (those
    it read before the server existed, then the reader's)."""

    @property
    def junk_bytes(self) -> int:
        """Bytes dropped outside any frame, for the log."""
        ...

    async def next(self) -> Frame | FrameError | None: ...


class EditorChannel(Protocol):
    """What the rest of the server may push to the editor."""

    def show_warning(self, message: str) -> None:
        """window/showMessage, warning."""
        ...

    def send_status(self, payload: dict[str, Any]) -> None:
        """crucible/didChangeStatus."""
        ...

    def documents_bytes(self) -> int:
        """Memory held by the open documents' text (the editor's documents, kept by pygls)."""
        ...

    async def ask(self, message: str, actions: tuple[str, ...]) -> str | None:
        """window/showMessageRequest: the title of the action the user chose, or None."""
        ...

    async def begin_progress(self, title: str) -> str | None:
        """Start a $/progress (server-initiated work done progress); None when the client
        cannot show one."""
        ...

    def report_progress(self, token: str, percentage: int, message: str) -> None: ...

    def end_progress(self, token: str, message: str) -> None: ...


class CrucibleLanguageServer(LanguageServer):
    """The language server: pygls plus the backend and a little per-session state."""

    protocol: CrucibleProtocol

    def __init__(self, backend: Backend) -> None:
        super().__init__("crucible", crucible.__version__, protocol_cls=CrucibleProtocol)
        self.backend = backend
        self._last_popup = float("-inf")
        # Configuration problems found at initialize, shown once the client is ready for them.
        self.pending_problems: list[str] = []
        # What the client is (clientInfo, capabilities), read once at initialize: per-client
        # decisions (menu items, snippets) use it on every request.
        self.client = ClientTraits()
        self.code_action_client = CodeActionTraits()  # the same, for code actions
        # Documents over completion.max_document_chars whose user was told so (once each).
        self.told_too_large: set[str] = set()
        # Bumped by each settings push (didChangeConfiguration with settings) and each pull
        # (workspace/configuration) sent: a pull's answer applies only if nothing newer was
        # pushed or asked meanwhile (``handlers/lifecycle.py``).
        self.configuration_turn = 0
        self._parent_watch: ParentWatch | None = None

    def touch(self, file: OpenFile) -> None:
        """``file`` was opened or edited; a document the recency list pushes out is
        forgotten as if closed (it stays open: its next edit starts afresh)."""
        for evicted in self.backend.recent.touch(file):
            self.told_too_large.discard(evicted)
            self.backend.completion.document_closed(evicted)

    def forget(self, uri: str) -> None:
        """``uri`` was closed."""
        self.backend.recent.forget(uri)
        self.told_too_large.discard(uri)

    def report_server_error(
        self, error: Exception, source: type[PyglsError] | type[JsonRpcException]
    ) -> None:
        """Log every error; show at most one popup a minute, and none for request errors
        (those already reach the client as the request's error response)."""
        logger.error("%s: %s", source.__name__, error)
        now = time.monotonic()
        if source is FeatureRequestError or now - self._last_popup < 60:
            return
        self._last_popup = now
        self.show_message(f"Crucible: {error} (see the server log for details)", 1)

    def show_message(self, message: str, severity: int = 2) -> None:
        """window/showMessage; severity 1 error, 2 warning, 3 info."""
        self.window_show_message(
            types.ShowMessageParams(type=types.MessageType(severity), message=message)
        )

    # EditorChannel, for the backend.

    def show_warning(self, message: str) -> None:
        self.show_message(message, 2)

    def send_status(self, payload: dict[str, Any]) -> None:
        self.protocol.notify(DID_CHANGE_STATUS, payload)

    def documents_bytes(self) -> int:
        return open_documents_bytes(self.workspace)

    async def ask(self, message: str, actions: tuple[str, ...]) -> str | None:
        window = self.client_capabilities.window
        if window is None or window.show_message is None:
            # Only a client that says it shows message requests is asked: a bare client
            # (a script, a test harness) would never answer, or answer an error.
            return None
        params = types.ShowMessageRequestParams(
            type=types.MessageType.Info,
            message=message,
            actions=[types.MessageActionItem(title=action) for action in actions],
        )
        try:
            chosen = await self.window_show_message_request_async(params)
        except (JsonRpcException, PyglsError) as exc:
            logger.info("window/showMessageRequest failed: %s", exc)
            return None
        return chosen.title if chosen is not None else None

    async def begin_progress(self, title: str) -> str | None:
        window = self.client_capabilities.window
        if window is None or not window.work_done_progress:
            return None
        token = f"crucible-{time.monotonic_ns()}"
        try:
            await self.work_done_progress.create_async(token)
        except (JsonRpcException, PyglsError) as exc:
            logger.info("window/workDoneProgress/create failed: %s", exc)
            return None
        begin = types.WorkDoneProgressBegin(title=title, percentage=0, cancellable=False)
        self.work_done_progress.begin(token, begin)
        return token

    def report_progress(self, token: str, percentage: int, message: str) -> None:
        report = types.WorkDoneProgressReport(percentage=percentage, message=message)
        self.work_done_progress.report(token, report)

    def end_progress(self, token: str, message: str) -> None:
        self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    def watch_parent(self, pid: int | None) -> None:
        """Exit when process ``pid`` (initialize's processId) ends or does not exist."""
        if pid is None:
            return
        if pid <= 0:  # names no process; os.kill(0, …) would mean our own process group
            logger.warning("initialize: processId %d names no process; not watched", pid)
            return
        if self._parent_watch is not None:
            self._parent_watch.stop()
        watch = ParentWatch(pid, lambda: self._parent_gone(pid))
        if watch.start():
            self._parent_watch = watch
        else:
            logger.info("the editor process (%d) cannot be watched on this platform", pid)

    def _parent_gone(self, pid: int) -> None:
        logger.warning("the editor process (%d) is gone: exiting", pid)
        self.protocol.stop(EXIT_WITHOUT_SHUTDOWN)

    def serve_stdio(self) -> int:
        """Serve on stdin/stdout until ``exit``, EOF or the parent's end; returns the exit code."""
        try:
            return asyncio.run(self._serve_stdio())
        except KeyboardInterrupt:
            return 130

    async def _serve_stdio(self) -> int:
        self.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        return await self._serve(FrameReader(await stdin_stream(), MAX_MESSAGE_BYTES))

    def serve_tcp(self, host: str, port: int) -> int:
        """Serve one client on TCP until ``exit``, its disconnection or the parent's end;
        returns the exit code. A second client while one is served is turned away."""
        try:
            return asyncio.run(self._serve_tcp(host, port))
        except KeyboardInterrupt:
            return 130

    async def _serve_tcp(self, host: str, port: int) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        busy = False

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal busy
            if busy:
                writer.close()
                return
            busy = True
            code = await self.serve_connection(reader, writer)
            if not done.done():
                done.set_result(code)

        server = await asyncio.start_server(connection, host, port)
        # The port bound, which --port 0 leaves to the system: the log is where to find it.
        bound = server.sockets[0].getsockname() if server.sockets else (host, port)
        logger.info("serving on %s:%d", bound[0], bound[1])
        async with server:
            return await done

    async def serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        frames: Callable[[FrameReader], FrameSource] | None = None,
    ) -> int:
        """Serve one client on a connection's streams (a TCP client, a shared daemon's
        session) until ``exit``, its end or the parent's; then close the connection.
        ``frames`` wraps the reader (the daemon's sessions: ``shared/session_frames.py``)."""
        self.protocol.set_writer(writer)
        read = FrameReader(reader, MAX_MESSAGE_BYTES)
        try:
            return await self._serve(read if frames is None else frames(read))
        finally:
            writer.close()

    async def serve_stdio_frames(self, frames: FrameSource) -> int:
        """Serve frames read from stdin by someone else (``lsp/early_start.py``, which read
        the first ones before this server existed); answers go to stdout."""
        self.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        return await self._serve(frames)

    async def _serve(self, frames: FrameSource) -> int:
        """Read frames and hand them to the protocol until the end; then close the backend."""
        protocol = self.protocol
        reading = asyncio.ensure_future(self._read_frames(frames))
        stopping = asyncio.ensure_future(protocol.stopping.wait())
        try:
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, stopping):
                task.cancel()
            await asyncio.gather(reading, stopping, return_exceptions=True)
            if self._parent_watch is not None:
                self._parent_watch.stop()
            # The editor went away (EOF), asked us to exit, or died: close provider connections.
            handler = client_handler()
            if handler is not None:
                handler.disconnect()
            await self.backend.aclose()
            self.shutdown()  # type: ignore[no-untyped-call]
        return EXIT_AFTER_SHUTDOWN if protocol.exit_code is None else protocol.exit_code

    async def _read_frames(self, frames: FrameSource) -> None:
        protocol = self.protocol
        while (item := await frames.next()) is not None:
            try:
                protocol.handle_frame(item)
            except BrokenPipeError:
                logger.info("the client closed its end: exiting")
                return
            except Exception:  # one bad frame must never end the session
                logger.exception("could not handle a message")
            if protocol.stopping.is_set():
                return
        if frames.junk_bytes:
            logger.warning("dropped %d bytes outside any message", frames.junk_bytes)
