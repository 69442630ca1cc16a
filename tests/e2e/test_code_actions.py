"""AI code actions through the real server: listing, resolve, the command path, progress,
cancel, changed documents, bad answers, line endings; against the loopback fake's chat
formats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Union

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Session,
    inline_capabilities,
    open_document,
    provider_options,
    server_status,
)
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest

pytestmark = pytest.mark.e2e

CHAT_ROUTES = {
    "ollama": "/api/chat",
    "openai": "/v1/chat/completions",
    "llamacpp": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "codestral": "/v1/chat/completions",
}
BUGGY = "import math\n\n\ndef area(radius):\n    return math.pi * radus**2\n\n\nprint(area(2))\n"
FIXED_LINE = "    return math.pi * radius**2\n"
ANSWER = "Here is the fix:\n```python\ndef area(radius):\n    return math.pi * radius**2\n```\n"


def options(fake: FakeProvider, kind: str = "ollama", **actions: Any) -> dict[str, Any]:
    found = provider_options(fake, kind)
    found["code_actions"] = {"timeout_ms": 10_000, **actions}
    return found


def diagnostic(line: int, start: int, end: int, message: str) -> types.Diagnostic:
    return types.Diagnostic(
        range=types.Range(types.Position(line, start), types.Position(line, end)),
        message=message,
        source="pyflakes",
        severity=types.DiagnosticSeverity.Error,
    )


RADUS = diagnostic(4, 24, 29, "undefined name 'radus'")


def open_text(
    client: LanguageClient, text: str, name: str = "geometry.py", language: str = "python"
) -> str:
    return open_document(client, text, name=name, language=language)


async def actions_at(
    client: LanguageClient,
    uri: str,
    start: tuple[int, int],
    end: tuple[int, int],
    diagnostics: list[types.Diagnostic] | None = None,
    only: list[str] | None = None,
) -> list[types.CodeAction]:
    result = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(types.Position(*start), types.Position(*end)),
            context=types.CodeActionContext(diagnostics=diagnostics or [], only=only),
        )
    )
    assert result is not None
    return [a for a in result if isinstance(a, types.CodeAction)]


def only_edits(action: types.CodeAction) -> list[types.TextEdit]:
    assert action.edit is not None, "no edit"
    if action.edit.document_changes:
        [change] = action.edit.document_changes
        assert isinstance(change, types.TextDocumentEdit)
        return [e for e in change.edits if isinstance(e, types.TextEdit)]
    assert action.edit.changes is not None
    [edits] = action.edit.changes.values()
    return list(edits)


def apply(text: str, edits: list[types.TextEdit]) -> str:
    """Apply line-based edits (UTF-16 = code points for these ASCII texts)."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(p: types.Position) -> int:
        return offsets[min(p.line, len(lines))] + p.character

    for edit in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]
    return text


def read_commands_in_actions(client: LanguageClient) -> None:
    """lsprotocol (client side) structures a CodeAction carrying a command as a Command (its
    union hook only looks for a "command" key); editors parse the JSON as it is."""
    converter = client.protocol._converter

    def structure(obj: Any, _: Any) -> types.Command | types.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], structure)  # noqa: UP007


def messages_shown(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages]


@pytest.mark.parametrize("kind", list(CHAT_ROUTES))
async def test_quick_fix_lists_without_a_call_and_resolves_a_minimal_edit(
    kind: str, fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = ANSWER
    async with lsp_session(options(fake, kind)) as client:
        uri = open_text(client, BUGGY)
        listed = await actions_at(client, uri, (4, 25), (4, 25), [RADUS])
        calls_after_listing = len(fake.generation_requests())
        [fix] = [a for a in listed if a.kind == types.CodeActionKind.QuickFix]
        resolved = await client.code_action_resolve_async(fix)
        status = await server_status(client)

    assert calls_after_listing == 0
    assert fix.title == "Crucible: fix “undefined name 'radus'”"
    assert list(fix.diagnostics or []) == [RADUS] and not fix.is_preferred
    [edit] = only_edits(resolved)
    assert edit.new_text == FIXED_LINE  # only the changed line, and only code
    assert (edit.range.start, edit.range.end) == (types.Position(4, 0), types.Position(5, 0))
    assert apply(BUGGY, [edit]) == BUGGY.replace("radus", "radius")
    [chat] = fake.generation_requests()
    assert chat.path == CHAT_ROUTES[kind]
    prompt = str(chat.body)
    assert "undefined name 'radus'" in prompt and "geometry.py" in prompt
    assert "/workspace" not in prompt.replace("file:///workspace", "")
    assert status["code_actions"]["resolved"] == 1
    assert status["code_actions"]["listed"] == len(listed)
    [chat_provider] = status["code_actions"]["chat_providers"]
    assert chat_provider["name"] == f"fake-{kind}" and chat_provider["calls"] == 1
    assert chat_provider["latency_ms"]["p50"] > 0


async def test_listing_respects_only_and_offers_rewrites_on_a_selection(
    fake: FakeProvider, lsp_session: Session
) -> None:
    custom = [
        {"title": "write tests", "prompt": "Tests for {code} in {file}", "scope": "file"},
        {"title": "explain", "prompt": "{code}", "scope": "diagnostic", "kind": "quickfix"},
    ]
    other = diagnostic(7, 0, 5, "print is discouraged")
    async with lsp_session(options(fake, custom=custom)) as client:
        uri = open_text(client, BUGGY)
        selection = await actions_at(client, uri, (3, 0), (5, 0), [RADUS, other])
        fixes_only = await actions_at(client, uri, (4, 0), (7, 3), [RADUS, other], ["quickfix"])
        rewrites_only = await actions_at(client, uri, (3, 0), (5, 0), [], ["refactor"])
        empty_selection = await actions_at(client, uri, (0, 0), (0, 0), [])

    titles = [a.title for a in selection]
    assert titles == [
        "Crucible: fix “undefined name 'radus'”",
        "Crucible: simplify",
        "Crucible: add documentation",
        "Crucible: add type annotations",
        "Crucible: fix bugs",
        "Crucible: write tests",
        "Crucible: explain",
    ]
    assert [a.title for a in fixes_only] == [
        "Crucible: fix “undefined name 'radus'”",
        "Crucible: fix “print is discouraged”",
        "Crucible: fix all 2 problems here",
        "Crucible: explain",
    ]
    assert {a.kind for a in rewrites_only} == {"refactor.rewrite"}
    assert [a.title for a in empty_selection] == ["Crucible: write tests"]
    assert all(a.edit is None for a in selection)
    assert fake.generation_requests() == []


async def test_rewrite_of_a_selection_and_a_custom_file_action_resolve(
    fake: FakeProvider, lsp_session: Session
) -> None:
    custom = [{"title": "shout", "prompt": "Upper-case {language} file {file}", "scope": "file"}]
    async with lsp_session(options(fake, custom=custom)) as client:
        uri = open_text(client, BUGGY)
        listed = await actions_at(client, uri, (3, 0), (5, 0))
        fake.reply = "```\ndef area(radius):\n    return math.pi * radius * radius\n```"
        [simplify] = [a for a in listed if a.title == "Crucible: simplify"]
        simplified = only_edits(await client.code_action_resolve_async(simplify))
        fake.reply = "```python\n# SHOUTED\n" + BUGGY + "```"
        [shout] = [a for a in listed if a.title == "Crucible: shout"]
        shouted = only_edits(await client.code_action_resolve_async(shout))

    assert [e.new_text for e in simplified] == ["    return math.pi * radius * radius\n"]
    assert [e.new_text for e in shouted] == ["# SHOUTED\n"]
    assert apply(BUGGY, shouted) == "# SHOUTED\n" + BUGGY
    custom_prompt = str(fake.generation_requests()[-1].body)
    assert "Upper-case python file geometry.py" in custom_prompt


@pytest.mark.parametrize("kind", list(CHAT_ROUTES))
async def test_a_client_without_resolve_gets_a_command_that_applies_the_edit(
    kind: str, fake: FakeProvider, lsp_session: Session
) -> None:
    capabilities = inline_capabilities()
    assert capabilities.text_document and capabilities.text_document.code_action
    capabilities.text_document.code_action.resolve_support = None
    fake.reply = ANSWER
    applied: list[types.ApplyWorkspaceEditParams] = []
    async with lsp_session(options(fake, kind), capabilities=capabilities) as client:
        read_commands_in_actions(client)

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(
            _: LanguageClient, params: types.ApplyWorkspaceEditParams
        ) -> types.ApplyWorkspaceEditResult:
            applied.append(params)
            return types.ApplyWorkspaceEditResult(applied=True)

        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        assert fix.command is not None
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=fix.command.command, arguments=fix.command.arguments)
        )
        status = await server_status(client)
        commands = client.initialize_result.capabilities.execute_command_provider.commands

    assert "crucible.applyCodeAction" in commands
    assert result == {"applied": True, "message": ""}
    [params] = applied
    assert params.edit.document_changes is not None
    [change] = params.edit.document_changes
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document.version == 1  # pinned to the version it was computed for
    assert [e.new_text for e in change.edits] == [FIXED_LINE]
    assert status["code_actions"]["applied"] == 1


async def test_a_command_action_resolved_anyway_is_left_to_its_command(
    fake: FakeProvider, lsp_session: Session
) -> None:
    # Neovim sends codeAction/resolve for any action without an edit when the server has
    # resolveProvider, even when it did not announce resolveSupport for "edit".
    capabilities = inline_capabilities()
    assert capabilities.text_document and capabilities.text_document.code_action
    capabilities.text_document.code_action.resolve_support = None
    fake.reply = ANSWER
    async with lsp_session(options(fake), capabilities=capabilities) as client:
        read_commands_in_actions(client)
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        resolved = await client.code_action_resolve_async(fix)
        status = await server_status(client)

    assert resolved.edit is None
    assert resolved.command == fix.command
    assert fake.generation_requests() == []
    assert status["code_actions"]["resolved"] == 0


async def test_progress_is_shown_while_the_model_runs(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = ANSWER
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        await client.code_action_resolve_async(fix)
        reports = dict(client.progress_reports)

    [(token, values)] = list(reports.items())
    assert str(token).startswith("crucible/codeAction/")
    assert isinstance(values[0], types.WorkDoneProgressBegin) and values[0].cancellable
    assert isinstance(values[-1], types.WorkDoneProgressEnd)


async def _in_flight(client: LanguageClient, fake: FakeProvider) -> tuple[Any, str]:
    fake.reply = ANSWER
    fake.inject(Fault(latency_ms=20_000), times=1)
    uri = open_text(client, BUGGY)
    [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
    pending = client.protocol.send_request(types.CODE_ACTION_RESOLVE, fix, msg_id="resolve-1")
    assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 1)
    return asyncio.wrap_future(pending), uri


async def test_cancelling_the_progress_cancels_the_resolve_and_closes_the_stream(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        pending, _ = await _in_flight(client, fake)
        for _ in range(200):
            if client.progress_reports:
                break
            await asyncio.sleep(0.01)
        [token] = list(client.progress_reports)
        client.protocol.notify(
            types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token)
        )
        resolved = await asyncio.wait_for(pending, 5)
        closed = await fake.wait_for_async(lambda f: f.generation_requests()[0].disconnected)
        status = await server_status(client)

    assert resolved.edit is None
    assert closed
    assert status["code_actions"]["cancelled"] == 1


async def test_cancel_request_cancels_the_resolve_and_closes_the_stream(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        pending, _ = await _in_flight(client, fake)
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="resolve-1"))
        with pytest.raises(Exception, match="cancel"):
            await asyncio.wait_for(pending, 5)
        closed = await fake.wait_for_async(lambda f: f.generation_requests()[0].disconnected)
        status = await server_status(client)

    assert closed
    assert status["code_actions"]["cancelled"] == 1


def change(client: LanguageClient, uri: str, version: int, line: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(line, 0), types.Position(line, 0)), text=text
                )
            ],
        )
    )


async def test_a_document_changed_elsewhere_is_fixed_on_its_current_text(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = ANSWER
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        change(client, uri, 2, 7, "# a comment below the target\n")
        resolved = await client.code_action_resolve_async(fix)

    assert resolved.edit is not None and resolved.edit.document_changes
    [change_] = resolved.edit.document_changes
    assert isinstance(change_, types.TextDocumentEdit)
    assert change_.text_document.version == 2
    assert [e.new_text for e in change_.edits] == [FIXED_LINE]


async def test_a_changed_target_is_refused_without_a_call(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = ANSWER
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        change(client, uri, 2, 4, "    # the user typed here\n")
        resolved = await client.code_action_resolve_async(fix)
        await asyncio.sleep(0.05)
        shown = messages_shown(client)

    assert resolved.edit is None
    assert fake.generation_requests() == []
    assert any("changed since this action was offered" in m for m in shown)


@pytest.mark.parametrize(
    ("line", "pinned"), [(7, True), (0, False)], ids=["after-the-edit", "before-the-edit"]
)
async def test_a_document_edited_while_the_model_writes(
    line: int, pinned: bool, fake: FakeProvider, lsp_session: Session
) -> None:
    """An edit below what the edit touches leaves it valid (pinned to the new version); an
    edit above it moves its lines, so it is refused rather than applied to other text."""
    fake.reply = ANSWER
    fake.inject(Fault(latency_ms=600), times=1)
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        pending = asyncio.wrap_future(client.protocol.send_request(types.CODE_ACTION_RESOLVE, fix))
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 1)
        change(client, uri, 2, line, "# typed while waiting\n")
        resolved = await asyncio.wait_for(pending, 10)
        await asyncio.sleep(0.05)
        shown = messages_shown(client)
        status = await server_status(client)

    if pinned:
        assert resolved.edit is not None and resolved.edit.document_changes
        [change_] = resolved.edit.document_changes
        assert isinstance(change_, types.TextDocumentEdit)
        assert change_.text_document.version == 2
        assert [(e.range.start.line, e.new_text) for e in change_.edits] == [(4, FIXED_LINE)]
    else:
        assert resolved.edit is None
        assert any("changed while the model was writing" in m for m in shown), shown
        assert status["code_actions"]["stale"] == 1


@pytest.mark.parametrize(
    ("reply", "fault", "message"),
    [
        ("", None, "the answer was empty"),
        ("I am sorry, I cannot help with that.", None, "only prose"),
        ("Sure:\n```python\ndef area(radius):\n    return math.pi", None, "cut off"),
        (ANSWER * 20, Fault(truncate_after=3), "failed"),
        ("```python\ndef area(radius:\n    return 1\n```", None, "does not parse"),
    ],
    ids=["empty", "prose-only", "unclosed-fence", "truncated-stream", "invalid-python"],
)
async def test_an_answer_without_usable_code_is_refused_with_a_message(
    reply: str, fault: Fault | None, message: str, fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = reply
    if fault is not None:
        fake.inject(fault)
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        resolved = await client.code_action_resolve_async(fix)
        await asyncio.sleep(0.05)
        shown = messages_shown(client)
        status = await server_status(client)

    assert resolved.edit is None
    assert any(message in m for m in shown), shown
    assert status["code_actions"]["refused"] == 1


async def test_invalid_python_is_retried_once_with_the_error_in_the_prompt(
    fake: FakeProvider, lsp_session: Session
) -> None:
    answers = iter(["```python\ndef area(radius:\n    return 1\n```", ANSWER])

    def reply(_: RecordedRequest) -> str:
        return next(answers)

    fake.reply = reply
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        resolved = await client.code_action_resolve_async(fix)

    assert [e.new_text for e in only_edits(resolved)] == [FIXED_LINE]
    first, second = fake.generation_requests()
    assert "does not parse" in str(second.body) and "does not parse" not in str(first.body)


@pytest.mark.parametrize("eol", ["\r\n", "\n"], ids=["crlf", "lf"])
async def test_crlf_and_tab_indented_files_keep_their_style(
    eol: str, fake: FakeProvider, lsp_session: Session
) -> None:
    text = eol.join(["func main() {", "\tif ok {", "\t\tfmt.Println(valeu)", "\t}", "}", ""])
    # The model answers with spaces and LF, dedented.
    fake.reply = "```go\nif ok {\n    fmt.Println(value)\n}\n```"
    problem = diagnostic(2, 14, 19, "undefined: valeu")
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, text, "main.go", "go")
        listed = await actions_at(client, uri, (1, 0), (4, 0), [problem])
        [fix] = [a for a in listed if a.title == "Crucible: fix bugs"]
        resolved = await client.code_action_resolve_async(fix)

    [edit] = only_edits(resolved)
    assert edit.new_text == f"\t\tfmt.Println(value){eol}"
    assert edit.range.start == types.Position(2, 0)


async def test_malformed_data_gets_a_clear_error_and_the_server_lives_on(
    fake: FakeProvider, lsp_session: Session
) -> None:
    bad: list[Callable[[dict[str, Any]], Any]] = [
        lambda d: None,
        lambda d: "text",
        lambda d: {**d, "lines": [5, 1]},
        lambda d: {**d, "problems": [{"message": 3}]},
        lambda d: {**d, "intent": "delete_everything"},
        lambda d: {**d, "uri": "x" * 10_000},
    ]
    async with lsp_session(options(fake)) as client:
        uri = open_text(client, BUGGY)
        [fix] = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])
        errors = []
        for change_data in bad:
            action = types.CodeAction(title=fix.title, data=change_data(dict(fix.data)))
            with pytest.raises(Exception, match="not a code action this server listed") as info:
                await client.code_action_resolve_async(action)
            errors.append(str(info.value))
        alive = await actions_at(client, uri, (4, 25), (4, 25), [RADUS], ["quickfix"])

    assert "data.lines" in errors[2] and "data.problems[0]" in errors[3]
    assert len(alive) == 1
    assert fake.generation_requests() == []
