"""textDocument/inlineCompletion, and textDocument/completion for clients without it."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import NamedTuple

from lsprotocol import types
from pygls.workspace import TextDocument

from crucible.completion.service import CompletionRequest, CompletionResult
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp.clients import menu_wants_suggestions
from crucible.lsp.convert import (
    encoding_of,
    inline_completion_list,
    position_to_offset,
    snapshot_of,
)
from crucible.lsp.document_text import OpenDocument, document_size
from crucible.lsp.menu import completion_list
from crucible.lsp.protocol import frame_waited_s
from crucible.lsp.server import CrucibleLanguageServer

logger = logging.getLogger(__name__)

# A completion reads the prompt's window around the cursor and a little more: type-through
# looks back over what was typed since a suggestion was shown plus its fingerprint, and a
# prefetch reads past a suggestion as if it were accepted. This many characters beyond the
# window on each side cover both (a suggestion is at most a few thousand characters).
_EXCERPT_MARGIN = 1 << 14

# Characters after which a completion-menu client should ask even without a word typed.
_TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", ":", "=", " "]


def _too_large(ls: CrucibleLanguageServer, document: TextDocument) -> bool:
    """Whether ``document`` is past ``completion.max_document_chars``; the user is told once
    per document (until it is closed), never per request."""
    size = document_size(document)
    limit = ls.backend.completion.settings.max_document_chars
    if size <= limit:
        return False
    if document.uri not in ls.told_too_large:
        ls.told_too_large.add(document.uri)
        name = PurePosixPath(document.path or document.uri).name or document.uri
        logger.info("%s: %d characters, over max_document_chars (%d)", name, size, limit)
        ls.show_warning(
            f"Crucible: {name} is {size / 1e6:.1f} MB; completions are off for files over"
            f" {limit / 1e6:g} MB (completion.max_document_chars)"
        )
    return True


class InlineAnswer(NamedTuple):
    """What an inline completion answers, for its writer (the pygls handler, the fast lane)."""

    snapshot: DocumentSnapshot  # what the completion read
    result: CompletionResult | None  # None: nothing to show
    encoding: str  # the client's position encoding
    # (offset in the snapshot, position) when the request's position converted exactly to
    # that offset (an ASCII line up to it: ``OpenDocument.converts_exactly``), so an answer
    # placed there needs no conversion back.
    cursor: tuple[int, types.Position] | None = None


def _request(
    ls: CrucibleLanguageServer, uri: str, position: types.Position, *, invoked: bool
) -> tuple[CompletionRequest, str, bool] | None:
    """The completion request at ``position``, the client's encoding, and whether the
    position converted exactly (``InlineAnswer.cursor``)."""
    document = ls.workspace.text_documents.get(uri)
    if document is None:  # never opened: nothing we may read
        return None
    if _too_large(ls, document):  # answered empty at once: no window, no provider call
        return None
    encoding = encoding_of(document)
    settings = ls.backend.completion.settings
    exact = False
    if isinstance(document, OpenDocument):
        snapshot, offset = document.snapshot_near(
            position,
            settings.max_prefix_chars + _EXCERPT_MARGIN,
            settings.max_suffix_chars + _EXCERPT_MARGIN,
            encoding,
        )
        exact = document.converts_exactly(position, encoding)
    else:
        snapshot = snapshot_of(document)
        offset = position_to_offset(snapshot.text, position, encoding)
    # Every other open document is a candidate, its text unread: which of them the prompt
    # carries is ``context/neighbours.py``'s choice.
    neighbours = (
        ls.backend.recent.candidates(uri, max_size=settings.max_document_chars)
        if settings.neighbour_files > 0
        else ()
    )
    request = CompletionRequest(
        snapshot=snapshot,
        offset=offset,
        invoked=invoked,
        neighbours=neighbours,
        waited_s=frame_waited_s(),
    )
    return request, encoding, exact


async def inline_answer(
    ls: CrucibleLanguageServer, uri: str, position: types.Position, *, invoked: bool
) -> InlineAnswer | None:
    """What an inline completion at ``position`` answers; None when there is nothing to
    read. The pygls handler and ``lsp/fast_lane.py`` each write it in their own way."""
    built = _request(ls, uri, position, invoked=invoked)
    if built is None:
        return None
    request, encoding, exact = built
    result = await ls.backend.completion.complete(request)
    cursor = (request.offset, position) if exact else None
    return InlineAnswer(request.snapshot, result, encoding, cursor)


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CrucibleLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        answer = await inline_answer(
            ls,
            params.text_document.uri,
            params.position,
            invoked=params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked,
        )
        if answer is None:
            return types.InlineCompletionList(items=[])
        return inline_completion_list(answer.snapshot, answer.result, answer.encoding)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=_TRIGGER_CHARACTERS),
    )
    async def completion(
        ls: CrucibleLanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        client = ls.client
        if not menu_wants_suggestions(ls.backend.completion.settings.completion_items, client):
            return types.CompletionList(is_incomplete=False, items=[])
        invoked = params.context is None or (
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        built = _request(ls, params.text_document.uri, params.position, invoked=invoked)
        if built is None:
            return types.CompletionList(is_incomplete=False, items=[])
        request, encoding, _ = built
        result = await ls.backend.completion.complete(request)
        return completion_list(request.snapshot, result, encoding, client)
