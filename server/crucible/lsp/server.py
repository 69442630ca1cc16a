"""CrucibleLanguageServer: pygls wiring, the transport, and the Backend seam to the services.

Two fixes to pygls 2.1.1 live here, both measured in ../shared/research/perf-anchors.md:

* ``CrucibleProtocol`` drops the bookkeeping future pygls keeps for every notification. pygls
  stores one per handler run under a fresh uuid and only pops it for requests, so each
  ``didChange`` (one per keystroke) leaked about 2 KB: 40 MB per 20k keystrokes.
* ``serve_stdio`` reads stdin through an asyncio pipe instead of pygls's reader, which hands
  every header line and body to a thread pool: three thread hops per message, about 0.3 ms of
  latency and CPU per keystroke message.

And two about what the editor is shown:

* Error replies carry a one-line message and no traceback: pygls puts the handler's traceback
  into ``error.data`` (``JsonRpcInternalError.of``), which clients print to the user. The
  traceback stays in the log (stderr, --log-file).
* The log's client sink (``runtime/log.py``'s ``ClientLogHandler``) is connected when
  ``initialize`` arrives: from then on the protocol may send ``window/logMessage``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future as ThreadFuture
from typing import Any, Protocol

from lsprotocol import types
from lsprotocol.types import ResponseError
from pygls.exceptions import FeatureRequestError, JsonRpcException, PyglsError
from pygls.io_ import StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import Workspace

import crucible
from crucible.completion.service import CompletionService
from crucible.lsp.document_text import adopt
from crucible.runtime.log import client_handler

logger = logging.getLogger(__name__)

DID_CHANGE_STATUS = "crucible/didChangeStatus"
# Documents remembered, most recently opened/edited first: the neighbour candidates, and the
# documents whose per-document state (debounce rhythm, type-through anchors, newest prefix)
# the services keep. A document pushed out of the list is forgotten as if closed (it stays
# open: its next edit starts that state afresh), so a client that opens thousands of files
# and never closes them costs Crucible a bounded amount besides their text, which pygls keeps.
_MAX_RECENT = 256
_ERROR_MESSAGE_LIMIT = 300  # characters of an error reply's message
# Unsent bytes in a socket transport past which log messages to the client are dropped
# rather than queued behind a client that does not read.
_LOG_BACKLOG_LIMIT = 1 << 20


class Backend(Protocol):
    """What the LSP layer needs from the rest of the server; ``app.App`` provides it."""

    @property
    def completion(self) -> CompletionService: ...

    def initialize(self, workspace_root: str | None, init_options: object) -> list[str]:
        """Load configuration for this workspace; returns the problems to show the user."""
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


class EditorChannel(Protocol):
    """What the rest of the server may push to the editor."""

    def show_warning(self, message: str) -> None:
        """window/showMessage, warning."""
        ...

    def send_status(self, payload: dict[str, Any]) -> None:
        """crucible/didChangeStatus."""
        ...


class CrucibleProtocol(LanguageServerProtocol):
    """pygls's protocol, minus the per-notification future leak and tracebacks in replies,
    plus the client log sink and documents edited by offset (``lsp/document_text.py``)."""

    # pygls assigns the workspace it builds in its initialize handler to ``_workspace``; it
    # passes through ``adopt`` here, so every document it creates is an ``OpenDocument``.
    @property
    def _workspace(self) -> Workspace | None:
        return self._open_documents

    @_workspace.setter
    def _workspace(self, workspace: Workspace | None) -> None:
        self._open_documents = adopt(workspace)

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        if method_name == types.INITIALIZE:
            # The LSP spec allows window/logMessage from the initialize request on.
            self._connect_client_log()
        super()._handle_request(msg_id, method_name, params)

    def _send_response(
        self, msg_id: Any, result: Any | None = None, error: ResponseError | None = None
    ) -> None:
        super()._send_response(msg_id, result, None if error is None else _short(error))

    def _connect_client_log(self) -> None:
        handler = client_handler()
        if handler is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving on a loop (cannot happen with pygls 2's readers)
            return
        handler.connect(self._send_log, loop, self._log_backlog_full)

    def _send_log(self, kind: int, text: str) -> None:
        self.notify(
            types.WINDOW_LOG_MESSAGE,
            types.LogMessageParams(type=types.MessageType(kind), message=text),
        )

    def _log_backlog_full(self) -> bool:
        # Socket writers (TCP) buffer without bound; stdout's writer blocks instead, which
        # holds up replies too, so only the former needs a limit here.
        transport = getattr(self.writer, "transport", None)
        size = getattr(transport, "get_write_buffer_size", None)
        return callable(size) and int(size()) > _LOG_BACKLOG_LIMIT

    def _execute_handler(
        self,
        msg_id: Any,
        handler: Any,
        callback: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None:
            future.add_done_callback(lambda done: self._forget(msg_id, done))

    def _forget(self, msg_id: Any, future: asyncio.Future[Any] | ThreadFuture[Any]) -> None:
        # Deferred to the next loop turn: pygls iterates _request_futures while cancelling them
        # on shutdown, and a cancelled concurrent future runs its callbacks synchronously.
        asyncio.get_running_loop().call_soon(self._drop, msg_id, future)

    def _drop(self, msg_id: Any, future: asyncio.Future[Any] | ThreadFuture[Any]) -> None:
        # Requests are popped by pygls when it sends the response; notifications never were.
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]


class CrucibleLanguageServer(LanguageServer):
    """The language server: pygls plus the backend and a little per-session state."""

    def __init__(self, backend: Backend) -> None:
        super().__init__("crucible", crucible.__version__, protocol_cls=CrucibleProtocol)
        self.backend = backend
        # Most recently opened/edited documents first: the neighbour context for completions.
        self.recent_uris: OrderedDict[str, None] = OrderedDict()
        self._last_popup = float("-inf")
        # Configuration problems found at initialize, shown once the client is ready for them.
        self.pending_problems: list[str] = []
        self.client_info: types.ClientInfo | None = None  # from initialize: per-client defaults
        # Documents over completion.max_document_chars whose user was told so (once each).
        self.told_too_large: set[str] = set()

    def touch(self, uri: str) -> None:
        self.recent_uris[uri] = None
        self.recent_uris.move_to_end(uri, last=False)
        while len(self.recent_uris) > _MAX_RECENT:
            evicted, _ = self.recent_uris.popitem()
            self.told_too_large.discard(evicted)
            self.backend.completion.document_closed(evicted)

    def forget(self, uri: str) -> None:
        self.recent_uris.pop(uri, None)
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

    def serve_stdio(self) -> int:
        """Serve on stdin/stdout until ``exit`` or EOF; returns the process exit code.

        Uses an asyncio pipe reader, falling back to pygls's reader when stdin is not a pipe
        (a file or a terminal).
        """
        try:
            asyncio.run(self._serve_pipe())
        except KeyboardInterrupt:
            return 130
        except SystemExit as exc:  # pygls raises it on `exit`: 0 after shutdown, else 1
            return exc.code if isinstance(exc.code, int) else 0
        except _NotAPipe:
            logger.info("stdin is not a pipe; using pygls's threaded reader")
            self.start_io()
        return 0

    async def _serve_pipe(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        try:
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer
            )
        except ValueError as exc:
            raise _NotAPipe from exc
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        try:
            await run_async(
                stop_event=self._stop_event,
                reader=reader,
                protocol=self.protocol,
                logger=logger,
                error_handler=self.report_server_error,
            )
        finally:
            # The editor went away (EOF) or asked us to exit: close provider connections.
            handler = client_handler()
            if handler is not None:
                handler.disconnect()
            await self.backend.aclose()
            self.shutdown()  # type: ignore[no-untyped-call]


def _short(error: ResponseError) -> ResponseError:
    """``error`` with a one-line message and without the traceback pygls adds to ``data``."""
    lines = str(error.message).strip().splitlines()
    message = (lines[0] if lines else "") or "internal error"
    if len(message) > _ERROR_MESSAGE_LIMIT:
        message = message[: _ERROR_MESSAGE_LIMIT - 1] + "…"
    data = error.data
    if isinstance(data, dict) and "traceback" in data:
        data = {key: value for key, value in data.items() if key != "traceback"} or None
    return ResponseError(code=error.code, message=message, data=data)


class _NotAPipe(Exception):
    """stdin cannot be read through an asyncio pipe transport."""
