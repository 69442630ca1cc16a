"""The fast lane: a keystroke's messages handled without pygls's dispatch and cattrs.

Typing sends two messages per key, a ``textDocument/didChange`` and a
``textDocument/inlineCompletion`` (VS Code adds a ``$/cancelRequest`` of the previous one).
Through pygls each costs more than Crucible's own work on it: cattrs structures the params
into lsprotocol objects, pygls wraps every handler in futures and generators (a uuid per
notification), and the answer is unstructured by cattrs again before ``json.dumps``. Here the
JSON that ``CrucibleProtocol.handle_frame`` decoded once is checked by hand; a change is
applied from its plain values (``OpenDocument.replace_range``, then
``handlers/documents.edited``, what pygls's handlers do with the lsprotocol values), the
completion runs the same code (``handlers/inline_completion.inline_answer``), and the answer
is written as plain JSON, the same fields in the same order, ``None`` omitted, as pygls writes
``convert.inline_completion_list``'s answer (``tests/unit/test_fast_lane.py`` holds the two
equal).

The lane takes only what it is sure of; anything else goes the pygls way, with its answers
and its log lines (``False`` from ``request`` / ``notification``):

* not yet initialized, or shut down: pygls's lane gives the -32002 / -32600 answers;
* params of any other shape than the plain one (a key the lane does not know, a value out of
  LSP's integer range, ``selectedCompletionInfo``, a ``workDoneToken``, a whole-document
  change, a URI with escapes): pygls's lane decodes them, or answers -32602 and logs;
* a request answered elsewhere (``CrucibleProtocol.answered_elsewhere``).

What it keeps as pygls does it, so the two lanes interleave in arrival order:

* a ``didChange`` is applied and its handler run at once, inside ``handle_frame``, as pygls
  runs notification handlers (a generator and a plain function, both synchronous); the
  version rule (``CrucibleProtocol.stale_change``) runs first;
* an ``inlineCompletion`` starts as a task on the next loop turn, as pygls starts a coroutine
  handler (``asyncio.ensure_future``), with the request id in pygls's context variable, and
  is kept in ``_request_futures`` under its id: a ``$/cancelRequest`` cancels it, and a
  cancelled or failed one is answered by pygls's own ``_send_handler_result``
  (RequestCancelled, or the error without its traceback);
* except when nothing was read behind it (``Frame.more_buffered`` False) and nothing went the
  pygls way since the loop last turned (``CrucibleProtocol.pygls_pending``): whatever comes
  next is handled on a later turn anyway, so it runs now, inside ``handle_frame``
  (``scheduling/eager.py``): typing through a suggestion is answered with no task and no
  loop turn; a request that waits goes on as a task, kept and cancelled as above;
* a ``$/cancelRequest`` cancels through pygls's ``_handle_cancel_notification``; a cancel of a
  request already answered is ignored at DEBUG, as ``CrucibleProtocol._expected`` does.

``CRUCIBLE_FAST_LANE=0`` turns it off (every message goes the pygls way).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import FeatureNotificationError, JsonRpcInternalError

from crucible.completion.service import CompletionResult
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp import jsonrpc
from crucible.lsp.convert import offset_to_position
from crucible.lsp.diagnostics import line_edit
from crucible.lsp.document_text import OpenDocument
from crucible.lsp.handlers.documents import edited
from crucible.lsp.handlers.inline_completion import inline_answer
from crucible.lsp.server import CrucibleLanguageServer
from crucible.scheduling.eager import started

logger = logging.getLogger(__name__)

_UINTEGER_MAX = 2**31 - 1  # LSP's uinteger and integer, as lsprotocol checks them
_INTEGER_MIN = -(2**31)
_POSITION_KEYS = frozenset(("line", "character"))
_RANGE_KEYS = frozenset(("start", "end"))
_CHANGE_KEYS = frozenset(("range", "rangeLength", "text"))
_RANGE_AND_TEXT = frozenset(("range", "text"))
_DID_CHANGE_KEYS = frozenset(("textDocument", "contentChanges"))
_VERSIONED_KEYS = frozenset(("uri", "version"))
_INLINE_KEYS = frozenset(("textDocument", "position", "context"))
_URI_KEYS = frozenset(("uri",))
_CONTEXT_KEYS = frozenset(("triggerKind",))
_ENCODER = json.JSONEncoder()  # json.dumps's defaults: ASCII, ", " and ": "
_PYGLS_LOG = logging.getLogger("pygls.protocol.json_rpc")  # where pygls logs what it sends
_TRIGGER_KINDS = {kind.value: kind for kind in types.InlineCompletionTriggerKind}


class FastLane:
    """``CrucibleProtocol``'s shortcut for the keystroke's messages (module docstring)."""

    def __init__(self, server: CrucibleLanguageServer) -> None:
        self._server = server
        self._protocol = server.protocol
        # Per request still running (by task: a client may reuse an id): its done callback,
        # for a cancel or a failure.
        self._unanswered_callbacks: dict[asyncio.Future[None], Callable[[Any], None]] = {}

    def notification(self, notification: jsonrpc.Notification) -> bool:
        """Handle ``notification`` if it is one the lane takes; False: it was not touched."""
        protocol = self._protocol
        if not protocol.initialize_received or protocol.shutdown_received:
            return False
        method = notification.method
        if method == types.TEXT_DOCUMENT_DID_CHANGE:
            change = _did_change_plain(notification.params)
            document = None if change is None else self._editable(change[0])
            if change is None or document is None:
                return False
            self._did_change(document, *change)
            return True
        if method == types.CANCEL_REQUEST:
            params = notification.params
            msg_id = params["id"] if _plain(params, {"id"}, 1) else None
            if not jsonrpc.valid_id(msg_id):
                return False
            if msg_id in protocol._request_futures:
                protocol._handle_cancel_notification(msg_id)
            else:
                logger.debug("ignored a cancel of a request already answered")
            return True
        return False

    def request(self, request: jsonrpc.Request, more_buffered: bool = True) -> bool:
        """Start ``request`` if it is one the lane takes; False: it was not touched.
        ``more_buffered`` False: nothing the client sent after it has been read yet
        (``Frame.more_buffered``) and nothing before it waits to be started
        (``CrucibleProtocol.pygls_pending``), so it runs now (module docstring)."""
        protocol = self._protocol
        if (
            request.method != types.TEXT_DOCUMENT_INLINE_COMPLETION
            or not protocol.initialize_received
            or protocol.shutdown_received
            or request.id in protocol.answered_elsewhere
        ):
            return False
        asked = _inline_params(request.params)
        if asked is None:
            return False
        uri, position, invoked = asked
        msg_id = request.id
        context = contextvars.copy_context()
        context.run(protocol._ctx_msg_id.set, msg_id)
        answering = self._inline_completion(msg_id, uri, position, invoked)
        running: asyncio.Future[None]
        if more_buffered:
            running = asyncio.get_running_loop().create_task(answering, context=context)
        else:
            running = context.run(started, answering)
            if running.done() and not running.cancelled() and running.exception() is None:
                return True  # answered already (a type-through, a memory hit)
        # pygls types the map with concurrent futures; it holds its own asyncio tasks too.
        protocol._request_futures[msg_id] = running  # type: ignore[assignment]
        unanswered = functools.partial(self._unanswered, msg_id)
        self._unanswered_callbacks[running] = unanswered
        running.add_done_callback(unanswered)
        return True

    def _editable(self, uri: str) -> OpenDocument | None:
        """The open document a change to ``uri`` edits, if the lane may apply it (pygls looks
        documents up by the unquoted URI: one with escapes goes its way)."""
        document = None if "%" in uri else self._protocol.workspace.text_documents.get(uri)
        if isinstance(document, OpenDocument) and document._is_sync_kind_incremental:
            return document
        return None

    def _did_change(
        self, document: OpenDocument, uri: str, version: int, edits: list[_Edit]
    ) -> None:
        # What pygls's didChange does (its built-in handler: ``update_text_document``, each
        # change applied and the version set; then Crucible's ``changed``, which is
        # ``edited``), without the futures and the generator it runs them in, nor lsprotocol
        # objects.
        if self._protocol.stale_change(version, document.version):
            return
        try:
            for edit in edits:
                document.replace_range(*edit)
                document.version = version
            lines = [line_edit(edit[0], edit[2], edit[4]) for edit in edits]
            edited(self._server, uri, version, lines)
        except Exception:
            error = JsonRpcInternalError.of(sys.exc_info())  # type: ignore[no-untyped-call]
            self._server._report_server_error(error, FeatureNotificationError)

    async def _inline_completion(
        self, msg_id: jsonrpc.MsgId, uri: str, position: types.Position, invoked: bool
    ) -> None:
        answer = await inline_answer(self._server, uri, position, invoked=invoked)
        result = (
            {"items": []}
            if answer is None
            else inline_completion_json(
                answer.snapshot, answer.result, answer.encoding, answer.cursor
            )
        )
        # Answered here, not by the done callback: that would run one loop turn later. (Run
        # at once, ``request``'s ``started``, the current task is the reader's: no callback
        # is registered for it yet, and none will be.)
        task = asyncio.current_task()
        unanswered = None if task is None else self._unanswered_callbacks.pop(task, None)
        if task is not None and unanswered is not None:
            task.remove_done_callback(unanswered)
        self._protocol._request_futures.pop(msg_id, None)
        pending = self._write({"id": msg_id, "jsonrpc": "2.0", "result": result})
        if pending is not None:
            await self._written(pending)

    def _unanswered(self, msg_id: jsonrpc.MsgId, task: asyncio.Future[None]) -> None:
        """A request cancelled (before it ran, or while it waited) or failed: pygls's own
        reply, RequestCancelled or the error (shortened by ``CrucibleProtocol``)."""
        self._unanswered_callbacks.pop(task, None)
        self._protocol._send_handler_result(task, msg_id=msg_id)  # type: ignore[arg-type]

    def _write(self, message: dict[str, Any]) -> Awaitable[Any] | None:
        """``message`` as pygls's ``_send_data`` writes it (header, body, its log line), with
        one encoder for every answer (``json.dumps`` with an argument builds one per call).
        A plain function, not a coroutine: stdio and TCP write at once; a writer that must be
        awaited (a WebSocket's) has its write returned, for ``_written``."""
        protocol = self._protocol
        writer = protocol.writer
        if writer is None:
            logger.error("Unable to send data, no available transport!")
            return None
        try:
            body = _ENCODER.encode(message)
            if _PYGLS_LOG.isEnabledFor(logging.INFO):
                _PYGLS_LOG.info("Sending data: %s", body)
            header = (
                f"Content-Length: {len(body)}\r\n"
                f"Content-Type: {protocol.CONTENT_TYPE}; charset={protocol.CHARSET}\r\n\r\n"
            )
            written = writer.write((header + body).encode(protocol.CHARSET))
        except Exception as error:  # as pygls: logged, and reported once a minute at most
            self._write_failed(error)
            return None
        return written if written is not None and inspect.isawaitable(written) else None

    async def _written(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception as error:
            self._write_failed(error)

    def _write_failed(self, error: Exception) -> None:
        logger.exception("Error sending data")
        self._server._report_server_error(error, JsonRpcInternalError)


def install(server: CrucibleLanguageServer) -> None:
    """Put the fast lane in front of ``server``'s pygls dispatch (unless turned off)."""
    if os.environ.get("CRUCIBLE_FAST_LANE", "1") != "0":
        server.protocol.fast_lane = FastLane(server)


def inline_completion_json(
    snapshot: DocumentSnapshot,
    result: CompletionResult | None,
    encoding: str,
    cursor: tuple[int, types.Position] | None = None,
) -> dict[str, Any]:
    """``convert.inline_completion_list`` as the JSON pygls writes for it: the same items,
    each ``insertText``, ``filterText``, ``range`` in lsprotocol's order. ``cursor``: an
    offset whose position is known (``InlineAnswer.cursor``), not counted again."""
    if result is None:
        return {"items": []}
    text = snapshot.text
    line_before = text[snapshot.line_bounds(result.start)[0] : result.start]
    if cursor is not None and cursor[0] == result.start:
        start = {"line": cursor[1].line, "character": cursor[1].character}
    else:
        start = _position(snapshot, result.start, encoding)
    choices = [(result.text, result.end)] + [(a.text, a.end) for a in result.alternatives]
    return {
        "items": [
            {
                "insertText": choice,
                "filterText": line_before + choice,
                "range": {
                    "start": start,
                    # Typing's usual answer is an insertion: the end is the start.
                    "end": start if end == result.start else _position(snapshot, end, encoding),
                },
            }
            for choice, end in choices
        ]
    }


def _position(snapshot: DocumentSnapshot, offset: int, encoding: str) -> dict[str, int]:
    # convert.snapshot_position: an excerpt's lines count from its base_line.
    position = offset_to_position(snapshot.text, offset, encoding)
    return {"line": position.line + snapshot.base_line, "character": position.character}


# Hand checks of the plain shapes; None: not plain, pygls decides.


def _plain(value: Any, keys: frozenset[str] | set[str], required: int | None = None) -> bool:
    """A JSON object with no key outside ``keys`` and, given ``required``, that many of them."""
    if type(value) is not dict or not value.keys() <= keys:
        return False
    return required is None or len(value) == required


def _uinteger(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _UINTEGER_MAX


# A content change with a range, as plain values: start line, character, end line,
# character, and the text that replaces the range.
_Edit = tuple[int, int, int, int, str]


def _did_change_plain(params: Any) -> tuple[str, int, list[_Edit]] | None:
    """(uri, version, edits) of plain DidChangeTextDocumentParams, checked as lsprotocol
    checks them: the values pygls would decode, without building its objects. (The shape
    checks written out, key sets compared whole: this runs on every key.)"""
    if type(params) is not dict or params.keys() != _DID_CHANGE_KEYS:
        return None
    document, changes = params["textDocument"], params["contentChanges"]
    if type(document) is not dict or document.keys() != _VERSIONED_KEYS:
        return None
    uri, version = document["uri"], document["version"]
    if type(uri) is not str or type(version) is not int or type(changes) is not list:
        return None
    if not _INTEGER_MIN <= version <= _UINTEGER_MAX:
        return None
    edits: list[_Edit] = []
    for change in changes:
        # A whole-document change (no range), or more than the lane knows: pygls's way.
        if type(change) is not dict:
            return None
        keys = change.keys()
        if keys != _RANGE_AND_TEXT and keys != _CHANGE_KEYS:
            return None
        span, text = change["range"], change["text"]
        length = change.get("rangeLength")
        if type(text) is not str or type(span) is not dict or span.keys() != _RANGE_KEYS:
            return None
        if length is not None and not (type(length) is int and 0 <= length <= _UINTEGER_MAX):
            return None
        start, end = span["start"], span["end"]
        if type(start) is not dict or start.keys() != _POSITION_KEYS:
            return None
        if type(end) is not dict or end.keys() != _POSITION_KEYS:
            return None
        line, character = start["line"], start["character"]
        end_line, end_character = end["line"], end["character"]
        if not (
            type(line) is int
            and type(character) is int
            and type(end_line) is int
            and type(end_character) is int
        ):
            return None
        if min(line, character, end_line, end_character) < 0:
            return None
        if max(line, character, end_line, end_character) > _UINTEGER_MAX:
            return None
        edits.append((line, character, end_line, end_character, text))
    return uri, version, edits


def _inline_params(params: Any) -> tuple[str, types.Position, bool] | None:
    """(uri, position, invoked) of plain InlineCompletionParams."""
    if type(params) is not dict or params.keys() != _INLINE_KEYS:
        return None
    document, context, position = params["textDocument"], params["context"], params["position"]
    if type(document) is not dict or document.keys() != _URI_KEYS:
        return None
    if type(context) is not dict or context.keys() != _CONTEXT_KEYS:
        return None
    uri, trigger = document["uri"], context["triggerKind"]
    kind = _TRIGGER_KINDS.get(trigger) if type(trigger) is int else None
    if type(uri) is not str or kind is None:
        return None
    if type(position) is not dict or position.keys() != _POSITION_KEYS:
        return None
    line, character = position["line"], position["character"]
    if not (_uinteger(line) and _uinteger(character)):
        return None
    at = types.Position(line=line, character=character)
    return uri, at, kind is types.InlineCompletionTriggerKind.Invoked
