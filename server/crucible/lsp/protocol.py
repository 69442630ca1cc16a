"""CrucibleProtocol: the JSON-RPC 2.0 and LSP rules pygls leaves open, applied to each frame
before pygls dispatches to the handlers; and what the editor is shown of failures.

``handle_frame`` takes what ``lsp/framing.py`` cut from the stream, asks ``lsp/jsonrpc.py``
what it is, and answers:

    unparsable frame                      -32700 Parse error, id null
    not a request object / a batch        -32600 Invalid Request (batch: one per request)
    Content-Length above MAX_MESSAGE      -32600, the body dropped unread
    request before `initialize`           -32002 ServerNotInitialized (notifications dropped)
    request after `shutdown`              -32600 (notifications dropped, except `exit`)
    params that do not decode             -32602 Invalid params (pygls: no reply at all)
    the keystroke's didChange, inline completion, cancel   ``fast_lane`` (same answers)
    a didChange older than the document   dropped with a log line
    `exit`                                ``stop``: exit code 0 after shutdown, else 1

Besides:

* pygls keeps a bookkeeping future for every notification under a fresh uuid and only pops it
  for requests, so each ``didChange`` (one per keystroke) leaked about 2 KB (40 MB per 20k
  keystrokes); it is dropped here when the handler finishes.
* A request to the client (``workspace/configuration``, ``workspace/applyEdit``) keeps its
  future and result type until the answer comes; pygls drops the result type only on a
  result, so an error answer left it behind, and one that never comes (its awaiting handler
  cancelled or timed out) left both. Both go here once the request ends, however it ends.
* pygls's ``get_result_type``/``get_message_type`` are cached with ``lru_cache``: its keys
  held every protocol (the shared daemon kept each ended session's App); plain lookups here.
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
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from typing import Any, Protocol

import cattrs
from lsprotocol import types
from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
)
from pygls.workspace import Workspace

from crucible.lsp import jsonrpc
from crucible.lsp.document_text import adopt
from crucible.lsp.framing import MAX_MESSAGE_BYTES, Frame, FrameError, FrameFault
from crucible.runtime.log import client_handler

logger = logging.getLogger(__name__)

EXIT_AFTER_SHUTDOWN = 0
EXIT_WITHOUT_SHUTDOWN = 1  # also: the parent process ended
_COMPLAINTS_PER_MINUTE = 10  # bad frames logged at WARNING; the rest at DEBUG
_ERROR_MESSAGE_LIMIT = 300  # characters of an error reply's message
# Unsent bytes in a socket transport past which log messages to the client are dropped
# rather than queued behind a client that does not read.
_LOG_BACKLOG_LIMIT = 1 << 20

# ``Frame.waited_s`` of the frame being handled: the handlers it starts (and their tasks,
# which copy the context they start in) read it with ``frame_waited_s``.
_FRAME_WAITED_S: contextvars.ContextVar[float] = contextvars.ContextVar(
    "crucible_frame_waited_s", default=0.0
)


def frame_waited_s() -> float:
    """How long the message being handled was held behind the start-up load (else 0)."""
    return _FRAME_WAITED_S.get()


class Shortcut(Protocol):
    """Handles some messages another way than pygls (``lsp/fast_lane.py``); False: the
    message was not touched and goes the pygls way."""

    def request(self, request: jsonrpc.Request, more_buffered: bool = True) -> bool: ...

    def notification(self, notification: jsonrpc.Notification) -> bool: ...


class CrucibleProtocol(LanguageServerProtocol):
    """pygls's protocol, behind the JSON-RPC/LSP rules of ``handle_frame``, minus the
    per-notification future leak and tracebacks in replies, plus the client log sink and
    documents edited by offset."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_received = False
        self.shutdown_received = False
        # Set when serving must end: by `exit` (0 or 1, the LSP spec's codes) or parent death.
        self.exit_code: int | None = None
        self.stopping = asyncio.Event()
        self._complaints = _Complaints()
        # Requests already answered before this protocol existed (``lsp/early_start.py``
        # answers ``initialize`` while pygls loads): they are still handled here, with their
        # real params, but the answer goes to the callback (result, error) instead of the
        # client, which must get exactly one.
        self.answered_elsewhere: dict[jsonrpc.MsgId, Callable[[Any, Any], None]] = {}
        # The keystroke's messages, handled without pygls's dispatch (``lsp/fast_lane.py``);
        # what it does not take comes here.
        self.fast_lane: Shortcut | None = None
        # Whether a frame went the pygls way since the loop last turned: pygls starts a
        # coroutine handler (``initialized``, ``didChangeConfiguration``) and wakes what
        # awaits a response on the next turn, so a request behind it must not run before
        # them (the lane runs a request read last at once only when this is False).
        self.pygls_pending = False

    # pygls assigns the workspace it builds in its initialize handler to ``_workspace``; it
    # passes through ``adopt`` here, so every document it creates is an ``OpenDocument``
    # (``lsp/document_text.py``: edited by offset, valid Unicode).
    @property
    def _workspace(self) -> Workspace | None:
        return self._open_documents

    @_workspace.setter
    def _workspace(self, workspace: Workspace | None) -> None:
        self._open_documents = adopt(workspace)

    # pygls caches these two lookups with ``functools.lru_cache`` on the method, whose keys
    # hold ``self``: a class-wide cache of 128 entries that kept every protocol (its server,
    # its App, a killed window's open documents) alive after its session ended, ~18 in the
    # shared daemon's endurance test (tests/e2e/test_shared_endurance.py). A dict lookup
    # needs no cache. (mypy sees pygls's as an lru_cache wrapper, not a method: ignored.)
    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        found: type[Any] | None = types.METHOD_TO_TYPES.get(method, (None,))[0]
        return found

    def get_result_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        found: type[Any] | None = types.METHOD_TO_TYPES.get(method, (None, None))[1]
        return found

    # Framing and JSON-RPC rules.

    def handle_frame(self, item: Frame | FrameError) -> None:
        """Answer or dispatch one frame from ``FrameReader``: every request gets exactly one
        reply (a result, an error, or RequestCancelled), whatever the frame held."""
        if isinstance(item, Frame) and item.waited_s:
            token = _FRAME_WAITED_S.set(item.waited_s)
            try:
                self._handle_frame(item)
            finally:
                _FRAME_WAITED_S.reset(token)
        else:
            self._handle_frame(item)

    def _handle_frame(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            self._frame_error(item)
            return
        parsed = jsonrpc.parse_body(item.body)
        # The keystroke's kinds first: a notification and a request per key.
        if isinstance(parsed, jsonrpc.Notification):
            if self.fast_lane is None or not self.fast_lane.notification(parsed):
                self._went_the_pygls_way()
                self._notification(parsed)
        elif isinstance(parsed, jsonrpc.Request):
            lane = self.fast_lane
            if lane is None or not lane.request(parsed, item.more_buffered or self.pygls_pending):
                self._went_the_pygls_way()
                self._request(parsed)
        elif isinstance(parsed, jsonrpc.Invalid):
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
        else:
            self._went_the_pygls_way()
            self._response(parsed)

    def _went_the_pygls_way(self) -> None:
        """``pygls_pending`` until the next loop turn has started what pygls scheduled (the
        reset is scheduled after it: callbacks run in the order they were scheduled)."""
        if not self.pygls_pending:
            self.pygls_pending = True
            asyncio.get_running_loop().call_soon(self._pygls_started)

    def _pygls_started(self) -> None:
        self.pygls_pending = False

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
        if msg_id is not None and (elsewhere := self.answered_elsewhere.pop(msg_id, None)):
            elsewhere(None, ResponseError(code=code, message=message))
            return
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
        if not self._expected(method, params):
            return
        contextvars.copy_context().run(self._handle_notification, method, params)

    def _expected(self, method: str, params: Any) -> bool:
        """Whether a notification has something to act on. The spec lets a server ignore
        notifications it does not know (`$/…` ones, other clients' extensions), and a cancel
        of a request already answered is an everyday race; pygls says both at WARNING, on
        stderr, which editors show as errors. Here they are DEBUG."""
        if method == types.CANCEL_REQUEST:
            msg_id = getattr(params, "id", None)
            if not isinstance(msg_id, int | str):  # a list or an object names no request
                logger.debug("ignored a cancel whose id is not a number or a string")
                return False
            if msg_id in self._request_futures:
                return True
            logger.debug("ignored a cancel of a request already answered")
            return False
        if method in self.fm.builtin_features or method in self.fm.features:
            return True
        logger.debug("ignored a notification of unknown method %s", method)
        return False

    def _out_of_order(self, params: types.DidChangeTextDocumentParams) -> bool:
        """A change older than the document pygls holds: applying it would put stale text over
        newer text (the spec: versions only increase), so it is dropped."""
        document = self.workspace.text_documents.get(params.text_document.uri)
        current = None if document is None else document.version
        return self.stale_change(params.text_document.version, current)

    def stale_change(self, version: int, current: int | None) -> bool:
        """``_out_of_order``'s rule and log line, for a change of ``version`` to a document at
        ``current`` (``lsp/fast_lane.py`` has both at hand)."""
        if current is None or version >= current:
            return False
        logger.warning(
            "dropped a didChange of version %d for a document at version %d: out of order",
            version,
            current,
        )
        return True

    def _response(self, response: jsonrpc.Response) -> None:
        # Always handled, also after shutdown: a server->client request waits for it.
        if response.id is None:
            logger.warning("dropped a response without a valid id")
            return
        data = dict(response.message)
        # Popped whatever the answer: an error answer has no use for it either.
        result_type = self._result_types.pop(response.id, None)
        if response.id not in self._request_futures:
            # A request given up (its handler cancelled, as at shutdown) answered late:
            # nobody waits. pygls would warn on stderr, which editors show as an error.
            logger.debug("a response to %r came after its request was given up", response.id)
            return
        try:
            if "error" in data:
                message = self._converter.structure(data, types.ResponseErrorMessage)
                self._handle_response(response.id, None, message.error)
            else:
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
        if (elsewhere := self.answered_elsewhere.pop(msg_id, None)) is not None:
            elsewhere(result, error)
            return
        super()._send_response(msg_id, result, None if error is None else _short(error))

    def _connect_client_log(self) -> None:
        handler = client_handler()
        if handler is not None:
            # Frames are handled on the serving loop (``_read_frames``): the drains go there.
            handler.connect(self._send_log, asyncio.get_running_loop(), self._log_backlog_full)

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

    def send_request(
        self,
        method: str,
        params: Any | None = None,
        callback: Callable[[Any], None] | None = None,
        msg_id: Any = None,
    ) -> ThreadFuture[Any]:
        """pygls's, plus: the request's bookkeeping goes when it ends without an answer."""
        msg_id = str(uuid.uuid4()) if msg_id is None else msg_id
        future: ThreadFuture[Any] = super().send_request(method, params, callback, msg_id)
        future.add_done_callback(lambda done: self._request_ended(msg_id, done))
        return future

    def _request_ended(self, msg_id: Any, future: ThreadFuture[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # ended from another thread, or the loop is gone: nothing to keep
            return
        # Deferred, as ``_forget``: pygls may be iterating ``_request_futures``.
        loop.call_soon(self._drop_request, msg_id, future)

    def _drop_request(self, msg_id: Any, future: ThreadFuture[Any]) -> None:
        # An answered request was popped already (``_handle_response``): nothing to do then.
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]
            self._result_types.pop(msg_id, None)

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
