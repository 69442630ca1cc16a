"""textDocument/inlineCompletion, and textDocument/completion for clients without it."""

from __future__ import annotations

import logging

from lsprotocol import types

from crucible.completion.service import CompletionRequest
from crucible.context.snapshot import DocumentSnapshot
from crucible.lsp.clients import client_traits, menu_wants_suggestions
from crucible.lsp.convert import (
    encoding_of,
    inline_completion_list,
    position_to_offset,
    snapshot_of,
)
from crucible.lsp.menu import completion_list
from crucible.lsp.server import CrucibleLanguageServer

logger = logging.getLogger(__name__)

# Characters after which a completion-menu client should ask even without a word typed.
_TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", ":", "=", " "]


def _neighbours(ls: CrucibleLanguageServer, uri: str, limit: int) -> tuple[DocumentSnapshot, ...]:
    documents = ls.workspace.text_documents
    found: list[DocumentSnapshot] = []
    for other in ls.recent_uris:
        if len(found) >= limit:
            break
        if other != uri and other in documents:
            found.append(snapshot_of(documents[other]))
    return tuple(found)


def _request(
    ls: CrucibleLanguageServer, uri: str, position: types.Position, *, invoked: bool
) -> tuple[CompletionRequest, str] | None:
    document = ls.workspace.text_documents.get(uri)
    if document is None:  # never opened: nothing we may read
        return None
    snapshot = snapshot_of(document)
    encoding = encoding_of(document)
    offset = position_to_offset(snapshot.text, position, encoding)
    limit = ls.backend.completion.settings.neighbour_files
    request = CompletionRequest(
        snapshot=snapshot,
        offset=offset,
        invoked=invoked,
        neighbours=_neighbours(ls, uri, limit) if limit else (),
    )
    return request, encoding


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CrucibleLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        built = _request(
            ls,
            params.text_document.uri,
            params.position,
            invoked=params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked,
        )
        if built is None:
            return types.InlineCompletionList(items=[])
        request, encoding = built
        result = await ls.backend.completion.complete(request)
        return inline_completion_list(request.snapshot, result, encoding)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=_TRIGGER_CHARACTERS),
    )
    async def completion(
        ls: CrucibleLanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        client = client_traits(ls.client_info, ls.client_capabilities)
        if not menu_wants_suggestions(ls.backend.completion.settings.completion_items, client):
            return types.CompletionList(is_incomplete=False, items=[])
        invoked = params.context is None or (
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        built = _request(ls, params.text_document.uri, params.position, invoked=invoked)
        if built is None:
            return types.CompletionList(is_incomplete=False, items=[])
        request, encoding = built
        result = await ls.backend.completion.complete(request)
        return completion_list(request.snapshot, result, encoding, client)
