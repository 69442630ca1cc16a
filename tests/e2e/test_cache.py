"""The response cache end to end: repeats, type-through (backspace, newline, partial accept),
persistence across server processes, a file that is not Crucible's left alone, the file's
mode, clearCache, configuration changes and prefetch, each asserted on what the provider
received."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Editor,
    Session,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.provider import FakeProvider, RecordedRequest

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "
SUGGESTION = "total = a + b\n    return total"


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply=SUGGESTION) as provider:
        yield provider


def cache_file(cache_home: Path) -> Path:
    return cache_home / "crucible" / "completions.sqlite3"


async def ask(editor: Editor) -> list[str]:
    return texts(await asyncio.wait_for(editor.request(), 10))


def reopen(client: LanguageClient, editor: Editor) -> Editor:
    """Close the document and open it again: what the editor does on a revisit."""
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(editor.uri))
    )
    return Editor(client, open_document(client, editor.text), editor.text)


async def test_a_repeated_request_is_served_from_memory(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = await ask(editor)
        again = await ask(reopen(client, editor))
        status = await server_status(client)

    assert first == again == [SUGGESTION]
    assert len(fake.generation_requests()) == 1
    assert status["cache"]["levels"]["l1"]["hits"] == 1
    assert status["requests"]["cache_hit"] == 1


async def test_typing_through_a_suggestion_asks_nothing_more(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == [SUGGESTION]
        seen = []
        for char in "tot":
            editor.type(char)
            seen.append(await ask(editor))
        editor.edit(len(editor.text) - 1, len(editor.text), "")  # backspace
        after_backspace = await ask(editor)
        editor.type("tal = a + b")
        editor.edit(len(editor.text), len(editor.text), "\n    ")  # Enter, auto-indented
        after_newline = await ask(editor)
        anchor = len(TEXT)
        editor.edit(anchor, len(editor.text), "")  # backspace all the way to the anchor
        back_at_start = await ask(editor)
        editor.edit(anchor, anchor, "total ")  # accept one word
        after_word = await ask(editor)
        editor.edit(len(editor.text), len(editor.text), "= a + b\n")  # accept the line
        after_line = await ask(editor)
        status = await server_status(client)

    assert seen == [[SUGGESTION[n:]] for n in (1, 2, 3)]
    assert after_backspace == [SUGGESTION[2:]]
    assert after_newline == ["return total"]
    assert back_at_start == [SUGGESTION]
    assert after_word == ["= a + b\n    return total"]
    assert after_line == ["    return total"]
    assert len(fake.generation_requests()) == 1
    assert status["requests"]["type_through"] == 8
    assert status["cache"]["type_through_hits"] == 8


async def test_typing_through_an_auto_closed_bracket(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = "total = sum([a, b])"
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor) == ["total = sum([a, b])"]
        editor.type("total = sum(")
        editor.edit(len(editor.text), len(editor.text), ")")  # the editor auto-closes
        cursor = len(editor.text) - 1  # between "(" and the editor's ")"
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=editor.uri),
            position=editor.position(cursor),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        result = await client.text_document_inline_completion_async(params)

    assert isinstance(result, types.InlineCompletionList)
    (item,) = result.items
    assert item.insert_text == "[a, b])"
    assert item.range is not None  # it replaces the editor's ")" so accepting leaves one
    assert (item.range.start, item.range.end) == (
        editor.position(cursor),
        editor.position(cursor + 1),
    )
    assert len(fake.generation_requests()) == 1


async def test_a_different_text_after_the_cursor_is_not_typed_through(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake)) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        await ask(editor)
        editor.type("x")  # not what the suggestion starts with
        await ask(editor)

    assert len(fake.generation_requests()) == 2


async def test_answers_survive_a_restart_through_the_disk_cache(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    home = tmp_path / "shared-cache"
    env = {"XDG_CACHE_HOME": str(home)}
    async with lsp_session(provider_options(fake), env=env) as client:
        first = await ask(Editor(client, open_document(client, TEXT), TEXT))
    async with lsp_session(provider_options(fake), env=env) as client:
        second = await ask(Editor(client, open_document(client, TEXT), TEXT))
        status = await server_status(client)

    assert first == second == [SUGGESTION]
    assert len(fake.generation_requests()) == 1
    assert status["cache"]["levels"]["l2"]["hits"] == 1
    mode = stat.S_IMODE(os.stat(cache_file(home)).st_mode)
    assert mode == 0o600, oct(mode)


async def test_a_cache_file_that_is_not_crucibles_is_left_untouched_and_serving_goes_on(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    home = tmp_path / "shared-cache"
    path = cache_file(home)
    path.parent.mkdir(parents=True)
    foreign = b"this is not a database\x00" * 100
    path.write_bytes(foreign)
    env = {"XDG_CACHE_HOME": str(home)}
    async with lsp_session(provider_options(fake), env=env) as client:
        served = await ask(Editor(client, open_document(client, TEXT), TEXT))
        status = await server_status(client)
    async with lsp_session(provider_options(fake), env=env) as client:
        again = await ask(Editor(client, open_document(client, TEXT), TEXT))

    assert served == again == [SUGGESTION]
    assert path.read_bytes() == foreign  # not renamed, truncated or written
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert status["cache"]["levels"]["l2"]["recoveries"] == 0
    assert len(fake.generation_requests()) == 2  # no L2: the second server asked again


async def test_clear_cache_empties_every_level(fake: FakeProvider, lsp_session: Session) -> None:
    async with lsp_session(provider_options(fake)) as client:
        capabilities = client.initialize_result.capabilities
        editor = Editor(client, open_document(client, TEXT), TEXT)
        await ask(editor)
        cleared = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="crucible.clearCache")
        )
        again = await ask(reopen(client, editor))
        status = await server_status(client)

    assert capabilities.execute_command_provider is not None
    assert "crucible.clearCache" in capabilities.execute_command_provider.commands
    assert (cleared["l1"], cleared["type_through"]) == (1, 1)
    assert again == [SUGGESTION]
    assert len(fake.generation_requests()) == 2
    assert status["cache"]["levels"]["l1"]["hits"] == 0


async def test_a_configuration_change_that_alters_the_answer_changes_the_key(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake)
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        await ask(editor)
        # Another model at the same address answers otherwise (a new name alone would not:
        # a provider's name is the user's label, not part of what answers).
        changed = {**options, "providers": [{**options["providers"][0], "model": "another"}]}
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crucible": changed})
        )
        await ask(reopen(client, editor))
        # Same settings again: the first answer is still there.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crucible": options})
        )
        await ask(reopen(client, editor))

    assert len(fake.generation_requests()) == 2


def _next_step(record: RecordedRequest) -> str:
    """A model that suggests ``total = a`` and, once that is accepted, `` + b``, then `` + c``."""
    prompt = record.body.get("prompt", "") if isinstance(record.body, dict) else ""
    if prompt.endswith("total = a"):
        return " + b"
    return " + c" if prompt.endswith(" + b") else "total = a"


async def _settled(client: LanguageClient) -> None:
    """Until no stream runs: the fake marks a response complete before its bytes leave."""
    for _ in range(200):
        if (await server_status(client))["scheduling"]["in_flight"] == 0:
            return
        await asyncio.sleep(0.01)


async def test_prefetch_makes_accepting_a_suggestion_instant(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = _next_step
    options = provider_options(fake, cache={"prefetch": "on"})
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        first = await ask(editor)
        await _settled(client)
        # No use measured yet: the first suggestion is not prefetched, its acceptance is
        # measured (issue 16, "prefetch earns its calls").
        assert len(fake.generation_requests()) == 1
        editor.edit(len(editor.text), len(editor.text), "total = a")  # accept it
        second = await ask(editor)
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 3)
        prefetched = fake.generation_requests()[2].body
        await fake.wait_for_async(lambda f: all(r.completed for r in f.generation_requests()))
        await _settled(client)
        editor.edit(len(editor.text), len(editor.text), " + b")  # accept that one too
        after_accept = await ask(editor)
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 4)
        status = await server_status(client)

    assert (first, second) == (["total = a"], [" + b"])
    assert isinstance(prefetched, dict) and prefetched["prompt"].endswith("total = a + b")
    assert after_accept == [" + c"]
    assert status["requests"]["cache_hit"] == 1  # the prefetched answer
    assert status["prefetch"]["measured_used"] == 1
    # Each state was asked once: the first, the accepted one (measured), the prefetch of the
    # next accept, and (shown " + c" was followed by) the prefetch of the state after that.
    prompts = [r.body["prompt"] for r in fake.generation_requests() if isinstance(r.body, dict)]
    lines = [prompt.rsplit("\n", 1)[-1] for prompt in prompts]
    assert lines == ["    ", "    total = a", "    total = a + b", "    total = a + b + c"]
    assert status["requests"]["prefetched"] == 2


async def test_prefetch_is_on_by_default_for_a_local_provider(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = _next_step
    options = provider_options(fake)
    del options["cache"]  # the default, prefetch = "auto", and the fake is on 127.0.0.1
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        await ask(editor)
        await _settled(client)
        editor.edit(len(editor.text), len(editor.text), "total = a")  # accept: measured
        await ask(editor)
        assert await fake.wait_for_async(lambda f: len(f.generation_requests()) == 3)
