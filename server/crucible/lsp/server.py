"""CrucibleLanguageServer: pygls wiring, the transport, and the Backend seam to the services.

The transport is Crucible's own, not pygls's reader: ``lsp/framing.py`` cuts the byte stream
into frames (size cap, resynchronisation), ``lsp/jsonrpc.py`` says what each body is, and
``CrucibleProtocol.handle_frame`` applies the JSON-RPC 2.0 and LSP rules pygls leaves open
before pygls dispatches to the handlers:

    unparsable frame                      -32700 Parse error, id null
    not a request object / a batch        -32600 Invalid Request (batch: one per request)
    Content-Length above MAX_MESSAGE      -32600, the body dropped unread
    request before `initialize`           -32002 ServerNotInitialized (notifications dropped)
    request after `shutdown`              -32600 (notifications dropped, except `exit`)
    params that do not decode             -32602 Invalid params (pygls: no reply at all)
    a didChange older than the document   dropped with a log line
    `exit`                                ends serving: exit code 0 after shutdown, else 1
    the parent process (processId) ends   ends serving, exit code 1

Two measured fixes to pygls 2.1.1 live here too:

* ``CrucibleProtocol`` drops the bookkeeping future pygls keeps for every notification. pygls
  stores one per handler run under a fresh uuid and only pops it for requests, so each
  ``didChange`` (one per keystroke) leaked about 2 KB: 40 MB per 20k keystrokes.
* ``serve_stdio`` reads stdin through an asyncio pipe instead of pygls's reader, which hands
  every header line and body to a thread pool: three thread hops per message, about 0.3 ms of
  latency and CPU per keystroke message.

And two about what the editor is shown:

* Error replies carry a one-line message, no traceback and no file path: pygls puts the
  handler's traceback into ``error.data`` (``JsonRpcInternalError.of``), which clients print to
  the user. The traceback stays in the log (stderr, --log-file).
* The log's client sink (``runtime/log.py``'s ``ClientLogHandler``) is connected when
  ``initialize`` arrives: from then on the protocol may send ``window/logMessage``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future as ThreadFuture
from typing import Any, Protocol

import cattrs
from lsprotocol import types
from lsprotocol.types import ResponseError
from pygls.exceptions import (
    FeatureRequestError,
    JsonRpcException,
    JsonRpcInvalidParams,
    PyglsError,
)
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
)

import crucible
from crucible.completion.service import CompletionService
from crucible.lsp import jsonrpc
from crucible.lsp.framing import CHUNK, Frame, FrameError, FrameFault, FrameReader
from crucible.runtime.log import client_handler
from crucible.runtime.parent import ParentWatch

logger = logging.getLogger(__name__)

# The largest message body served. Past it the body is dropped unread: a document of tens of
# megabytes is already far past what completions can use, and JSON escaping can double its
# size on the wire; 64 MiB keeps a broken or hostile client from making the server allocate
# what its header claims (clangd draws the same line at 1 GiB).
MAX_MESSAGE_BYTES = 64 << 20
EXIT_AFTER_SHUTDOWN = 0
EXIT_WITHOUT_SHUTDOWN = 1  # also: the parent process ended
_COMPLAINTS_PER_MINUTE = 10  # bad frames logged at WARNING; the rest at DEBUG

DID_CHANGE_STATUS = "crucible/didChangeStatus"
_MAX_RECENT = 64  # recently edited documents remembered for neighbour context
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
    """pygls's protocol, behind the JSON-RPC/LSP rules of ``handle_frame``, minus the
    per-notification future leak and tracebacks in replies, plus the client log sink."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_received = False
        self.shutdown_received = False
        # Set when serving must end: by `exit` (0 or 1, the LSP spec's codes) or parent death.
        self.exit_code: int | None = None
        self.stopping = asyncio.Event()
        self._complaints = _Complaints()

    # Framing and JSON-RPC rules.

    def handle_frame(self, item: Frame | FrameError) -> None:
        """Answer or dispatch one frame from ``FrameReader``: every request gets exactly one
        reply (a result, an error, or RequestCancelled), whatever the frame held."""
        if isinstance(item, FrameError):
            self._frame_error(item)
            return
        parsed = jsonrpc.parse_body(item.body)
        if isinstance(parsed, jsonrpc.Invalid):
            self._complaints.log("%s (%d bytes)", parsed.message, len(item.body))
            self.send_error(parsed.reply_id, parsed.code, parsed.message)
        elif isinstance(parsed, jsonrpc.Batch):
            self._complaints.log(
                "a batch of %d requests and %d notifications: LSP has no batches",
                len(parsed.reply_ids),
                parsed.dropped_notifications,
            )
            if parsed.reply_ids:
                message = "Invalid Request: batches are not supported (LSP sends one message)"
                self._send_data(
                    [
                        _error_message(msg_id, jsonrpc.INVALID_REQUEST, message)
                        for msg_id in parsed.reply_ids
                    ]
                )
        elif isinstance(parsed, jsonrpc.Request):
            self._request(parsed)
        elif isinstance(parsed, jsonrpc.Notification):
            self._notification(parsed)
        else:
            self._response(parsed)

    def _frame_error(self, error: FrameError) -> None:
        if error.fault is FrameFault.TOO_LARGE:
            code = jsonrpc.INVALID_REQUEST
            message = (
                f"Invalid Request: a message of {error.declared} bytes is over the limit of "
                f"{MAX_MESSAGE_BYTES >> 20} MiB; it was dropped unread"
            )
        else:
            code = jsonrpc.PARSE_ERROR
            message = f"Parse error: {error.fault.value}"
        self._complaints.log("%s (request id %r)", message, error.request_id)
        self.send_error(error.request_id, code, message)

    def send_error(self, msg_id: jsonrpc.MsgId | None, code: int, message: str) -> None:
        """An error response; ``msg_id`` None is sent as ``"id": null`` (JSON-RPC)."""
        self._send_data(_error_message(msg_id, code, message))

    def _request(self, request: jsonrpc.Request) -> None:
        method = request.method
        refusal: tuple[int, str] | None = None
        if self.shutdown_received:
            refusal = (jsonrpc.INVALID_REQUEST, f"Invalid Request: {method} after shutdown")
        elif method == types.INITIALIZE and self.initialize_received:
            refusal = (jsonrpc.INVALID_REQUEST, "Invalid Request: already initialized")
        elif method != types.INITIALIZE and not self.initialize_received:
            refusal = (
                jsonrpc.SERVER_NOT_INITIALIZED,
                f"Server not initialized: {method} before initialize",
            )
        if refusal is not None:
            self.send_error(request.id, *refusal)
            return
        try:
            message = self._structure(request.id, method, request.params, request.has_params)
        except _BadParams as exc:
            self._complaints.log("invalid params for %s (id %r): %s", method, request.id, exc)
            self.send_error(request.id, jsonrpc.INVALID_PARAMS, f"Invalid params: {exc}")
            return
        if method == types.INITIALIZE:
            self.initialize_received = True
            # The LSP spec allows window/logMessage from the initialize request on.
            self._connect_client_log()
        elif method == types.SHUTDOWN:
            self.shutdown_received = True
        contextvars.copy_context().run(
            self._handle_request, request.id, method, getattr(message, "params", None)
        )

    def _notification(self, notification: jsonrpc.Notification) -> None:
        method = notification.method
        if method == types.EXIT:
            self.stop(EXIT_AFTER_SHUTDOWN if self.shutdown_received else EXIT_WITHOUT_SHUTDOWN)
            return
        if not self.initialize_received or self.shutdown_received:
            logger.debug(
                "dropped %s: %s",
                method,
                "before initialize" if not self.initialize_received else "after shutdown",
            )
            return
        try:
            message = self._structure(None, method, notification.params, notification.has_params)
        except _BadParams as exc:
            self._complaints.log("dropped %s: invalid params: %s", method, exc)
            return
        params = getattr(message, "params", None)
        if isinstance(params, types.DidChangeTextDocumentParams) and self._out_of_order(params):
            return
        contextvars.copy_context().run(self._handle_notification, method, params)

    def _out_of_order(self, params: types.DidChangeTextDocumentParams) -> bool:
        """A change older than the document pygls holds: applying it would put stale text over
        newer text (the spec: versions only increase), so it is dropped."""
        document = self.workspace.text_documents.get(params.text_document.uri)
        current = None if document is None else document.version
        if current is None or params.text_document.version >= current:
            return False
        logger.warning(
            "dropped a didChange of version %d for a document at version %d: out of order",
            params.text_document.version,
            current,
        )
        return True

    def _response(self, response: jsonrpc.Response) -> None:
        # Always handled, also after shutdown: a server->client request waits for it.
        if response.id is None:
            logger.warning("dropped a response without a valid id")
            return
        data = dict(response.message)
        try:
            if "error" in data:
                message = self._converter.structure(data, types.ResponseErrorMessage)
                self._handle_response(response.id, None, message.error)
            else:
                result_type = self._result_types.pop(response.id, None)
                message = self._converter.structure(
                    {"jsonrpc": "2.0", "id": response.id, "result": data.get("result")},
                    result_type or JsonRPCResponseMessage,
                )
                self._handle_response(response.id, message.result)
        except Exception as exc:
            # The handler awaiting this answer gets an error instead of waiting forever.
            logger.warning("a response to %r did not decode: %s", response.id, _first_line(exc))
            future = self._request_futures.pop(response.id, None)
            if future is not None and not future.done():
                future.set_exception(JsonRpcInvalidParams("the client's response did not decode"))

    def _structure(
        self, msg_id: jsonrpc.MsgId | None, method: str, params: Any, has_params: bool
    ) -> Any:
        """The lsprotocol message (generic for custom methods) or ``_BadParams``. Absent params
        are tried as null, then as {} (params are optional in JSON-RPC; LSP's empty-object
        params, as `initialized` takes, decode from either)."""
        message_type = self.get_message_type(method)
        if message_type is None:
            message_type = JsonRPCNotification if msg_id is None else JsonRPCRequestMessage
        attempts = [params] if has_params else [None, {}]
        data: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if msg_id is not None:
            data["id"] = msg_id
        error: Exception | None = None
        for attempt in attempts:
            try:
                return self._converter.structure({**data, "params": attempt}, message_type)
            except Exception as exc:
                error = exc
        raise _BadParams(_describe(error)) from error

    def stop(self, exit_code: int) -> None:
        """End serving with ``exit_code`` (the first reason given wins)."""
        if self.exit_code is None:
            self.exit_code = exit_code
        self.stopping.set()

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

    protocol: CrucibleProtocol

    def __init__(self, backend: Backend) -> None:
        super().__init__("crucible", crucible.__version__, protocol_cls=CrucibleProtocol)
        self.backend = backend
        # Most recently opened/edited documents first: the neighbour context for completions.
        self.recent_uris: OrderedDict[str, None] = OrderedDict()
        self._last_popup = float("-inf")
        # Configuration problems found at initialize, shown once the client is ready for them.
        self.pending_problems: list[str] = []
        self.client_info: types.ClientInfo | None = None  # from initialize: per-client defaults
        self._parent_watch: ParentWatch | None = None

    def touch(self, uri: str) -> None:
        self.recent_uris[uri] = None
        self.recent_uris.move_to_end(uri, last=False)
        while len(self.recent_uris) > _MAX_RECENT:
            self.recent_uris.popitem()

    def forget(self, uri: str) -> None:
        self.recent_uris.pop(uri, None)

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
        return await self._serve(await _stdin_stream())

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
            self.protocol.set_writer(writer)
            try:
                code = await self._serve(reader)
            finally:
                writer.close()
            if not done.done():
                done.set_result(code)

        server = await asyncio.start_server(connection, host, port)
        logger.info("serving on %s:%d", host, port)
        async with server:
            return await done

    async def _serve(self, stream: asyncio.StreamReader) -> int:
        """Read frames and hand them to the protocol until the end; then close the backend."""
        protocol = self.protocol
        reading = asyncio.ensure_future(self._read_frames(FrameReader(stream, MAX_MESSAGE_BYTES)))
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

    async def _read_frames(self, frames: FrameReader) -> None:
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


async def _stdin_stream() -> asyncio.StreamReader:
    """stdin as an asyncio stream: a pipe transport, or a daemon thread for a regular file."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except ValueError:  # not a pipe, socket or terminal: a thread that may block does the reads
        logger.info("stdin is not a pipe; reading it in a thread")
        threading.Thread(
            target=_pump, args=(sys.stdin.buffer.fileno(), reader, loop), daemon=True
        ).start()
    return reader


def _pump(fd: int, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
    while True:
        try:
            data = os.read(fd, CHUNK)
        except OSError:
            data = b""
        try:
            if data:
                loop.call_soon_threadsafe(reader.feed_data, data)
            else:
                loop.call_soon_threadsafe(reader.feed_eof)
        except RuntimeError:  # the loop is closed: the server is done
            return
        if not data:
            return


def _error_message(msg_id: jsonrpc.MsgId | None, code: int, message: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "error": {"code": code, "message": _bounded(message)},
    }


class _BadParams(Exception):
    """A message's params do not decode into the method's types."""


def _describe(error: Exception | None) -> str:
    """What was wrong with params, one line, from cattrs's account (``$.params.position.line``
    style paths into the message, never a file path)."""
    if isinstance(error, cattrs.BaseValidationError):
        problems = cattrs.transform_error(error, path="$")
        text = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
    else:
        text = _first_line(error)
    return _bounded(text)


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else "") or type(error).__name__


class _Complaints:
    """Logs bad frames at WARNING, up to a few a minute, then at DEBUG: a broken client can
    send thousands, and each WARNING reaches the editor's log and stderr."""

    def __init__(self) -> None:
        self._window_start = float("-inf")
        self._count = 0

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start >= 60:
            if self._count > _COMPLAINTS_PER_MINUTE:
                logger.warning(
                    "%d more bad messages in the last minute (at DEBUG)",
                    self._count - _COMPLAINTS_PER_MINUTE,
                )
            self._window_start, self._count = now, 0
        self._count += 1
        level = logging.WARNING if self._count <= _COMPLAINTS_PER_MINUTE else logging.DEBUG
        logger.log(level, message, *args)


def _short(error: ResponseError) -> ResponseError:
    """``error`` with a one-line message and without the traceback pygls adds to ``data``, and
    no file path in either."""
    lines = str(error.message).strip().splitlines()
    message = jsonrpc.redact((lines[0] if lines else "") or "internal error")
    if len(message) > _ERROR_MESSAGE_LIMIT:
        message = message[: _ERROR_MESSAGE_LIMIT - 1] + "…"
    data = error.data
    if isinstance(data, dict) and "traceback" in data:
        data = {key: value for key, value in data.items() if key != "traceback"} or None
    return ResponseError(code=error.code, message=message, data=jsonrpc.redact_value(data))


def _bounded(message: str) -> str:
    """One error message as the editor may show it: no file path, at most a line's length
    (a client-sent method name can be megabytes long)."""
    return jsonrpc.redact(message[: _ERROR_MESSAGE_LIMIT * 2])[:_ERROR_MESSAGE_LIMIT]
