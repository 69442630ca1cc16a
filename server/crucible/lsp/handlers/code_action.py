"""textDocument/codeAction, codeAction/resolve and the ``crucible.applyCodeAction`` command.

Listing is a plain function, answered inline from the request and the document (no provider
call): ``actions/catalog.py`` decides, this module converts. Each action carries its
``ListedAction`` as ``data``; a client that resolves edits (``resolveSupport.properties`` has
"edit") gets the edit from ``codeAction/resolve``, any other client gets a command,
``crucible.applyCodeAction``, that computes the edit and applies it with
``workspace/applyEdit``.

Both ways a resolve re-reads the document: if its version moved on since the listing, the
target's lines must still hold the text they held (their digest) and the edit is computed on
the current text, else it is refused. While the model runs, a work-done progress (for clients
that show server-created progress) is open and cancellable; its cancel, like
``$/cancelRequest``, cancels the resolve, which closes the upstream stream. Data a client sends
back that is no action of ours is answered with InvalidParams naming the bad field.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from crucible.actions.catalog import QUICKFIX, ListingRequest, wanted
from crucible.actions.listed import Intent, ListedAction, MalformedAction, Problem, digest_of
from crucible.actions.service import ActionJob, ActionResult, refusal
from crucible.lsp.clients import CodeActionTraits
from crucible.lsp.convert import encoding_of, position_to_offset, snapshot_of, workspace_edit
from crucible.lsp.diagnostics import known_diagnostics
from crucible.lsp.document_text import document_size
from crucible.lsp.handlers.review import review_fixes
from crucible.lsp.server import CrucibleLanguageServer

logger = logging.getLogger(__name__)

APPLY_COMMAND = "crucible.applyCodeAction"
KINDS = [
    types.CodeActionKind.QuickFix,
    types.CodeActionKind.Refactor,
    types.CodeActionKind.RefactorRewrite,
    types.CodeActionKind.Source,
]
_tokens = itertools.count(1)


def _traits(ls: CrucibleLanguageServer) -> CodeActionTraits:
    return ls.code_action_client  # read once at initialize


def _problem(diagnostic: types.Diagnostic) -> Problem:
    code = "" if diagnostic.code is None else str(diagnostic.code)
    return Problem(
        message=diagnostic.message[:500],
        start=(diagnostic.range.start.line, diagnostic.range.start.character),
        end=(diagnostic.range.end.line, diagnostic.range.end.character),
        source=(diagnostic.source or "")[:100],
        code=code[:100],
    )


def list_code_actions(
    ls: CrucibleLanguageServer, params: types.CodeActionParams
) -> list[types.CodeAction] | None:
    document = ls.workspace.text_documents.get(params.text_document.uri)
    if document is None:
        return None
    # Any language server's diagnostics reach hover this way too, for editors that do not
    # send crucible/didChangeDiagnostics (merged: the context holds only this range's).
    ls.backend.hover.store.learn(
        document.uri, document.version, known_diagnostics(params.context.diagnostics)
    )
    # Fixes of Crucible's own review findings: no model call, offered even with AI code
    # actions off (they belong to [review]).
    only = params.context.only
    review = (
        review_fixes(
            document.uri,
            document.version,
            params.context.diagnostics,
            versioned=_traits(ls).versioned_edits,
        )
        if wanted(QUICKFIX, only)
        else []
    )
    service = ls.backend.code_actions
    if not service.settings.enabled:
        return review or None
    if document_size(document) > ls.backend.completion.settings.max_document_chars:
        return None
    text = document.source
    diagnostics = params.context.diagnostics
    request = ListingRequest(
        uri=document.uri,
        language_id=document.language_id or "plaintext",
        version=document.version or 0,
        text=text,
        line_offset=lambda line: position_to_offset(text, types.Position(line, 0)),
        start=(params.range.start.line, params.range.start.character),
        end=(params.range.end.line, params.range.end.character),
        problems=tuple(_problem(d) for d in diagnostics[:200]),
        only=tuple(params.context.only) if params.context.only is not None else None,
    )
    actions = []
    resolves_edits = _traits(ls).resolves_edits
    for offer in service.list(request, document.path or document.uri):
        data = offer.listed.to_wire()
        action = types.CodeAction(
            title=offer.title,
            kind=offer.kind,
            diagnostics=[diagnostics[i] for i in offer.problems] or None,
            data=data,
        )
        if not resolves_edits:
            action.command = types.Command(
                title=offer.title, command=APPLY_COMMAND, arguments=[data]
            )
        actions.append(action)
    return review + actions


def _listed(data: object) -> ListedAction:
    try:
        return ListedAction.from_wire(data)
    except MalformedAction as exc:
        logger.info("code action data refused: %s", exc)
        raise JsonRpcInvalidParams(
            f"Crucible: not a code action this server listed: {exc}"
        ) from exc


def _job(ls: CrucibleLanguageServer, listed: ListedAction) -> ActionJob | ActionResult:
    """The resolve's work on the document as it is now, or why there is none."""
    document = ls.workspace.text_documents.get(listed.uri)
    if document is None:
        return refusal("the document is no longer open")
    snapshot = snapshot_of(document)
    text = snapshot.text
    template = ""
    if listed.intent is Intent.CUSTOM:
        found = ls.backend.code_actions.custom_template(listed)
        if found is None:
            return refusal(f"the custom action “{listed.title}” is no longer configured")
        template = found
    if listed.whole_file:
        return ActionJob(listed, snapshot, 0, len(text), template)
    start = position_to_offset(text, types.Position(listed.first_line, 0))
    end = position_to_offset(text, types.Position(listed.last_line + 1, 0))
    if snapshot.version != listed.version and (
        not listed.digest or digest_of(text[start:end]) != listed.digest
    ):
        return refusal("the code changed since this action was offered; ask again")
    return ActionJob(listed, snapshot, start, end, template)


async def _compute(
    ls: CrucibleLanguageServer, listed: ListedAction
) -> tuple[ActionResult, ActionJob | None]:
    job = _job(ls, listed)
    if isinstance(job, ActionResult):
        ls.backend.code_actions.note("refused")
        return job, None
    # The progress first: a resolve cancelled while it is being created has started nothing.
    token = await _begin_progress(ls, listed)
    work = asyncio.ensure_future(ls.backend.code_actions.resolve(job))
    if token is not None:
        # pygls cancels this future on window/workDoneProgress/cancel for the token.
        ls.work_done_progress.tokens[token].add_done_callback(lambda _: work.cancel())
    try:
        result = await work
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # $/cancelRequest (or the server going away): pygls answers it
        result = ActionResult(message="")  # the user pressed cancel on the progress
    finally:
        _end_progress(ls, token)
    return result, job


async def _begin_progress(ls: CrucibleLanguageServer, listed: ListedAction) -> str | None:
    if not _traits(ls).work_done_progress:
        return None
    token = f"crucible/codeAction/{next(_tokens)}"
    progress = ls.work_done_progress
    try:
        await asyncio.wait_for(progress.create_async(token), 5)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a client refusing progress still gets its edit
        logger.debug("no progress for a code action: %s", exc)
        return None
    progress.begin(
        token,
        types.WorkDoneProgressBegin(
            title="Crucible", message=f"asking the model: {listed.title}", cancellable=True
        ),
    )
    return token


def _end_progress(ls: CrucibleLanguageServer, token: str | None) -> None:
    if token is None:
        return
    progress = ls.work_done_progress
    progress.end(token, types.WorkDoneProgressEnd())
    progress.tokens.pop(token, None)  # pygls keeps every token otherwise


def _edit_of(
    ls: CrucibleLanguageServer, result: ActionResult, job: ActionJob
) -> types.WorkspaceEdit | ActionResult:
    """The edit as the document is now; a refusal when it changed under the edit.

    The model may take seconds, and the user may type meanwhile. Edits computed on the
    snapshot still mean the same on the current text when everything up to the last edit's
    end is unchanged (positions there count the same characters): they are pinned to the
    current version. Any other change refuses the edit, so nothing is applied to text it was
    not computed for, by clients with versioned edits or without.
    """
    document = ls.workspace.text_documents.get(job.snapshot.uri)
    if document is None:
        ls.backend.code_actions.note("stale")
        return refusal("the document was closed while the model was writing")
    version, text = result.version, job.snapshot.text
    if (document.version or 0) != version:
        current = snapshot_of(document)
        reach = max(edit.end for edit in result.edits)
        if current.text[:reach] != text[:reach]:
            ls.backend.code_actions.note("stale")
            return refusal("the code changed while the model was writing; ask again")
        version, text = current.version, current.text
    return workspace_edit(
        text,
        job.snapshot.uri,
        version,
        result.edits,
        encoding_of(document),
        versioned=_traits(ls).versioned_edits,
    )


def _refused(ls: CrucibleLanguageServer, result: ActionResult) -> None:
    if result.message:
        ls.show_message(result.message, 3)


def register(server: CrucibleLanguageServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=KINDS, resolve_provider=True),
    )
    def code_action(
        ls: CrucibleLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction] | None:
        return list_code_actions(ls, params)

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: CrucibleLanguageServer, action: types.CodeAction) -> types.CodeAction:
        if action.command is not None and action.command.command == APPLY_COMMAND:
            # Listed for a client that does not resolve edits, which may resolve anyway
            # (Neovim does, for any action without an edit): the command computes the edit.
            # Computing it here too would apply it, then refuse the command ("changed").
            return action
        listed = _listed(action.data)
        result, job = await _compute(ls, listed)
        edit = _edit_of(ls, result, job) if job is not None and result.ok else result
        if isinstance(edit, ActionResult):
            _refused(ls, edit)
        else:
            action.edit = edit
        return action

    @server.command(APPLY_COMMAND)
    async def apply(ls: CrucibleLanguageServer, *args: Any) -> dict[str, Any]:
        listed = _listed(args[0] if args else None)
        result, job = await _compute(ls, listed)
        edit = _edit_of(ls, result, job) if job is not None and result.ok else result
        if isinstance(edit, ActionResult):
            _refused(ls, edit)
            return {"applied": False, "message": edit.message}
        answer = await ls.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=f"Crucible: {listed.title}")
        )
        if answer.applied:
            ls.backend.code_actions.note("applied")
            return {"applied": True, "message": ""}
        reason = answer.failure_reason or "the editor did not apply it"
        return {"applied": False, "message": f"Crucible: {reason}"}
