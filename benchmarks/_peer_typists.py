"""Typing into a language server over :class:`~benchmarks._peer_lsp.RawLsp`: the peers'
typist, the same client for Crucible and tabby-agent.

Per keystroke: ``didChange`` (one character inserted, incremental, UTF-16 positions) and one
completion request at the new cursor, sent without waiting and never cancelled, as the typing
replay's Crucible typist does. The request is ``textDocument/inlineCompletion`` for Crucible and
``textDocument/completion`` for tabby-agent 1.5, whose language server handles only that one (it
answers ``textDocument/inlineCompletion`` with "Unhandled method"); each item's ``textEdit``
carries the suggestion. tabby-agent cancels its own previous completion when a new one arrives
(it answers the cancelled one with an empty list), Crucible coalesces: what each does with a
request per keystroke is the subject.

A suggestion is recorded as the whole text it proposes (the document before the item's range,
then its text), as in :mod:`benchmarks._typists`, so that fitting is judged against the final
text.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from lsprotocol import types

from benchmarks._lsp_client import end_position, offset_of
from benchmarks._peer_lsp import Message, RawLsp
from benchmarks._typists import Answer, Keystroke

INLINE = "textDocument/inlineCompletion"
COMPLETION = "textDocument/completion"


def _position(text: str) -> dict[str, int]:
    position = end_position(text)
    return {"line": position.line, "character": position.character}


def _offset(text: str, position: Any) -> int:
    return offset_of(text, types.Position(line=position["line"], character=position["character"]))


def proposals(message: Message, text: str) -> tuple[str, ...]:
    """The whole texts the items of an inline-completion or completion answer propose."""
    result = message.get("result")
    items = result.get("items", []) if isinstance(result, dict) else result or []
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        edit = item.get("textEdit")
        if isinstance(edit, dict):  # a completion item: its edit replaces a range of the line
            edit_range = edit.get("range") or edit.get("replace")
            start = _offset(text, edit_range["start"]) if edit_range else len(text)
            found.append(text[:start] + str(edit.get("newText", "")))
            continue
        insert = item.get("insertText", "")
        insert = insert.get("value", "") if isinstance(insert, dict) else insert
        start = _offset(text, item["range"]["start"]) if item.get("range") else len(text)
        found.append(text[:start] + str(insert))
    return tuple(found)


class LspTypist:
    """A language server asked on every keystroke; see the module docstring."""

    def __init__(self, name: str, lsp: RawLsp, method: str) -> None:
        self.name = name
        self._lsp = lsp
        self._method = method

    def open(self, uri: str, language_id: str, text: str) -> None:
        document = {"uri": uri, "languageId": language_id, "version": 1, "text": text}
        self._lsp.notify("textDocument/didOpen", {"textDocument": document})

    def type(self, uri: str, version: int, before: str, char: str) -> Keystroke:
        self._lsp.check_alive()  # a crash is a broken run, not a keystroke without answer
        at = time.perf_counter()
        cursor = _position(before)
        change = {"range": {"start": cursor, "end": cursor}, "text": char}
        self._lsp.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
        )
        text = before + char
        params: dict[str, Any] = {"textDocument": {"uri": uri}, "position": _position(text)}
        if self._method == INLINE:
            params["context"] = {"triggerKind": types.InlineCompletionTriggerKind.Automatic}
        else:
            params["context"] = {"triggerKind": types.CompletionTriggerKind.Invoked}
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        pending = self._lsp.request(self._method, params)
        pending.add_done_callback(lambda done: _settle(answered, done, text))
        return Keystroke(at, answered)

    def close(self, uri: str) -> None:
        self._lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    async def abandon(self) -> None:
        return None  # an unanswered request stays unanswered: that is the figure

    async def status(self) -> dict[str, Any] | None:
        """Crucible's ``crucible/status`` (None from a server without it, or no answer)."""
        try:
            _, message = await asyncio.wait_for(self._lsp.request("crucible/status", {}), 10)
        except TimeoutError:
            return None
        result = message.get("result")
        return result if isinstance(result, dict) else None


def _settle(
    answered: asyncio.Future[Answer], done: asyncio.Future[tuple[float, Message]], text: str
) -> None:
    if answered.done():
        return
    if done.cancelled() or done.exception() is not None:
        error = "cancelled" if done.cancelled() else type(done.exception()).__name__
        answered.set_result(Answer(time.perf_counter(), (), error=error))
        return
    arrived, message = done.result()
    if "error" in message:
        code = message["error"].get("code") if isinstance(message["error"], dict) else None
        answered.set_result(Answer(arrived, (), error=f"LSP error {code}"))
        return
    answered.set_result(Answer(arrived, proposals(message, text)))
