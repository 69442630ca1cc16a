"""JSON-RPC 2.0 message shapes: a frame's body -> a request, notification, response, or the
error the specification gives for it. Pure functions, no I/O, no pygls.

    parse_body(body) -> Request | Notification | Response | Batch | Invalid

    Invalid(code, message, reply_id)   answered as is: PARSE_ERROR when the body is not UTF-8
                                       JSON; INVALID_REQUEST when the JSON is not a message
                                       (not an object, "jsonrpc" not "2.0", an id that is not an
                                       integer or a string, a method that is not a string,
                                       params that are neither an object nor an array)
    Batch(reply_ids)                   a JSON array: LSP has no batches, so each request in it
                                       gets INVALID_REQUEST (the reply is an array, as JSON-RPC
                                       answers a batch); its notifications are dropped

``reply_id`` is the request's id when it has a valid one, else None (JSON-RPC: "If there was an
error in detecting the id in the Request object, it MUST be Null").

``redact`` takes file paths out of text bound for an error reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002  # LSP

MsgId = int | str


@dataclass(frozen=True)
class Request:
    id: MsgId
    method: str
    params: Any
    has_params: bool


@dataclass(frozen=True)
class Notification:
    method: str
    params: Any
    has_params: bool


@dataclass(frozen=True)
class Response:
    """The client's answer to a request the server sent (workspace/configuration, …)."""

    id: MsgId | None
    message: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    reply_ids: tuple[MsgId | None, ...]  # one INVALID_REQUEST each
    dropped_notifications: int


@dataclass(frozen=True)
class Invalid:
    code: int
    message: str
    reply_id: MsgId | None


Message = Request | Notification | Response


def valid_id(value: object) -> bool:
    """LSP ids are integers or strings (not booleans, floats, null, objects or arrays)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: ``json.loads`` with an argument builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_body(body: bytes) -> Message | Batch | Invalid:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(PARSE_ERROR, f"Parse error: the body is not UTF-8 (byte {exc.start})", None)
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return Invalid(PARSE_ERROR, f"Parse error: {exc.msg} (character {exc.pos})", None)
    except RecursionError:
        return Invalid(PARSE_ERROR, "Parse error: nested too deeply", None)
    except ValueError as exc:  # NaN/Infinity, an integer of thousands of digits
        return Invalid(PARSE_ERROR, f"Parse error: {str(exc)[:100]}", None)
    if isinstance(value, list):
        return _batch(value)
    return classify(value)


def classify(value: object) -> Message | Invalid:
    """What one decoded JSON value is, as a JSON-RPC message."""
    if not isinstance(value, dict):
        return Invalid(INVALID_REQUEST, "Invalid Request: a message is a JSON object", None)
    has_id = "id" in value
    raw_id = value.get("id")
    reply_id = raw_id if valid_id(raw_id) else None
    if value.get("jsonrpc") != "2.0":
        return Invalid(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', reply_id)
    if "method" in value:
        method = value["method"]
        if not isinstance(method, str):
            return Invalid(INVALID_REQUEST, "Invalid Request: method must be a string", reply_id)
        if has_id and reply_id is None:
            return Invalid(
                INVALID_REQUEST, "Invalid Request: id must be an integer or a string", None
            )
        # ``"params": null`` is read as no params. JSON-RPC 2.0 allows only an object or an
        # array, but clients send null for LSP's void params (``shutdown``, ``exit``): Atom's
        # client did, and eglot until Emacs bug#66144; refusing it left such an editor's
        # ``shutdown`` unanswered and its ``exit`` ignored, the server killed after a timeout.
        params = value.get("params")
        has_params = params is not None
        if has_params and not isinstance(params, dict | list):
            return Invalid(
                INVALID_REQUEST, "Invalid Request: params must be an object or an array", reply_id
            )
        if reply_id is not None:
            return Request(reply_id, method, params, has_params)
        return Notification(method, params, has_params)
    if "result" in value or "error" in value:
        return Response(reply_id, value)
    return Invalid(INVALID_REQUEST, "Invalid Request: no method", reply_id)


def _batch(items: list[Any]) -> Batch | Invalid:
    if not items:
        return Invalid(INVALID_REQUEST, "Invalid Request: an empty batch", None)
    reply_ids: list[MsgId | None] = []
    notifications = 0
    for item in items:
        if isinstance(item, dict) and "method" in item and "id" not in item:
            notifications += 1  # JSON-RPC: notifications get no reply, even in a batch
        elif isinstance(item, dict) and ("result" in item or "error" in item):
            continue  # a response in a batch: nothing to answer
        else:
            raw_id = item.get("id") if isinstance(item, dict) else None
            reply_ids.append(raw_id if valid_id(raw_id) else None)
    return Batch(tuple(reply_ids), notifications)


# Absolute paths (POSIX, home-relative, Windows) and file URIs.
_PATH = re.compile(
    r"""file://[^\s'"]*"""
    r"""|(?<![\w.])[A-Za-z]:[\\/][^\s'"]*"""
    r"""|(?<![\w.:/~-])~?/[^\s'"/<>]+(?:/[^\s'"<>]*)?"""
)


def redact(text: str) -> str:
    """``text`` with file paths replaced by ``<path>``: error replies reach the editor's UI,
    and a path names the user, the machine's layout and files the client never sent."""
    return _PATH.sub("<path>", text)


def redact_value(value: Any) -> Any:
    """``redact`` over every string in a JSON value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value
