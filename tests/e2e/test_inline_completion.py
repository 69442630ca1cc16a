"""Inline completions end to end: real server process, real loopback provider, every kind."""

from __future__ import annotations

import pytest
from lsprotocol import types
from tests.e2e.conftest import (
    Editor,
    Session,
    end_of,
    inline,
    menu_only_capabilities,
    open_document,
    provider_options,
)
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize("kind", ["ollama", "openai", "llamacpp", "anthropic", "codestral"])
async def test_each_kind_completes_at_the_cursor(
    kind: str, fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake, kind)) as client:
        uri = open_document(client, PREFIX + SUFFIX)
        result = await inline(client, uri, end_of(PREFIX))

    assert [item.insert_text for item in result.items] == ["return a + b"]
    cursor = types.Position(1, 4)
    assert result.items[0].range == types.Range(cursor, cursor)

    [sent] = fake.generation_requests()
    body = sent.body
    if kind == "ollama":
        assert sent.path == "/api/generate"
        assert (body["prompt"], body["suffix"]) == (PREFIX, SUFFIX)
        assert body["model"] == "qwen2.5-coder:1.5b-base" and body["stream"] is True
    elif kind == "openai":
        assert sent.path == "/v1/completions"
        # Qwen2.5-Coder's FIM template, detected from the model name, rendered into the prompt.
        assert body["prompt"].endswith(
            f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"
        )
        assert "<|endoftext|>" in body["stop"] and body["stream"] is True
    elif kind == "llamacpp":
        assert sent.path == "/infill"
        assert (body["input_prefix"], body["input_suffix"]) == (PREFIX, SUFFIX)
        assert body["cache_prompt"] is True and body["stream"] is True
    elif kind == "anthropic":
        # No FIM endpoint: asked as a chat, the gap marked in the one user message.
        assert sent.path == "/v1/messages"
        assert sent.headers["anthropic-version"] == "2023-06-01"
        [message] = body["messages"]
        assert message["role"] == "user" and f"{PREFIX}<CURSOR>{SUFFIX}" in message["content"]
        assert "<CURSOR>" in body["system"] and body["stream"] is True
    else:
        assert sent.path == "/v1/fim/completions"
        assert (body["prompt"], body["suffix"]) == (PREFIX, SUFFIX)
        assert body["stream"] is True


async def test_single_line_suggestion_stops_the_stream_early(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """Mid-line, only the rest of the line is wanted: the server stops reading at the newline
    and closes the stream, so the provider stops generating."""
    fake.reply = " * quantity\nprint(total)\n" + "x = 1\n" * 60
    fake.inject(Fault(chunk_delay_ms=20))
    text = "price = 3\nquantity = 4\ntotal = price"
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, text)
        result = await inline(client, uri, end_of(text))
        assert await fake.wait_for_async(lambda f: f.requests[-1].finished_at is not None)

    assert [item.insert_text for item in result.items] == [" * quantity"]
    sent = fake.generation_requests()[-1]
    assert sent.disconnected and not sent.completed
    assert sent.chunks_sent < len(fake.reply) // fake.chunk_size // 2


async def test_multi_line_suggestion_ends_with_the_block(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.reply = "if a < 0:\n        raise ValueError(a)\n    return a\n\ndef other():\n    pass\n"
    text = "def check(a):\n    "
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, text)
        result = await inline(client, uri, end_of(text))

    assert [item.insert_text for item in result.items] == [
        "if a < 0:\n        raise ValueError(a)\n    return a"
    ]


async def test_utf16_positions_on_a_line_with_emoji(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """😀 is one code point but two UTF-16 code units: the cursor column counts units."""
    fake.reply = '"🎉", sep=""'
    before, after = 'print("😀é", ', ")\n"
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, before + after)
        column = len(before.encode("utf-16-le")) // 2  # 13 units for 12 code points
        result = await inline(client, uri, types.Position(0, column))

    [sent] = fake.generation_requests()
    assert (sent.body["prompt"], sent.body["suffix"]) == (before, after)
    [item] = result.items
    assert item.insert_text == '"🎉", sep=""'
    assert item.range == types.Range(types.Position(0, column), types.Position(0, column))


async def test_neighbour_documents_reach_llamacpp_input_extra(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake, "llamacpp")) as client:
        open_document(client, "def helper():\n    return 42\n", name="helpers.py")
        uri = open_document(client, PREFIX)
        await inline(client, uri, end_of(PREFIX))

    [sent] = fake.generation_requests()
    extra = sent.body["input_extra"]
    assert [e["text"] for e in extra] == ["def helper():\n    return 42\n"]
    assert extra[0]["filename"].endswith("helpers.py")


async def test_completion_items_for_clients_without_inline_completion(
    fake: FakeProvider, lsp_session: Session
) -> None:
    text = "total = pri"
    fake.reply = "ce * quantity"
    async with lsp_session(provider_options(fake), capabilities=menu_only_capabilities()) as client:
        uri = open_document(client, text)
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=end_of(text)
            )
        )

    assert isinstance(result, types.CompletionList)
    [item] = result.items
    assert item.text_edit is not None and isinstance(item.text_edit, types.TextEdit)
    # The edit re-inserts the word being typed so the client's filter keeps the item.
    assert item.text_edit.new_text == "price * quantity"
    assert item.text_edit.range == types.Range(types.Position(0, 8), types.Position(0, 11))


async def test_inline_clients_are_not_charged_twice_for_completion_requests(
    fake: FakeProvider, lsp_session: Session
) -> None:
    text = "total = pri"
    async with lsp_session(provider_options(fake)) as client:
        uri = open_document(client, text)
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=end_of(text)
            )
        )
    assert isinstance(result, types.CompletionList) and not result.items
    assert fake.generation_requests() == []


async def test_completion_items_can_be_turned_off(fake: FakeProvider, lsp_session: Session) -> None:
    text = "total = pri"
    options = provider_options(fake, completion_items=False)
    async with lsp_session(options, capabilities=menu_only_capabilities()) as client:
        uri = open_document(client, text)
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=end_of(text)
            )
        )
    assert isinstance(result, types.CompletionList) and not result.items
    assert fake.generation_requests() == []


async def test_a_same_language_neighbour_is_found_behind_other_recent_files(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """Three files of other languages opened after a Python file still leave it the first
    neighbour of another Python file (``neighbour_files`` is 3 by default)."""
    async with lsp_session(provider_options(fake, "llamacpp")) as client:
        open_document(client, "def helper():\n    return 42\n", name="helpers.py")
        open_document(client, "# Notes\n", name="notes.md", language="markdown")
        open_document(client, '{"debug": true}\n', name="config.json", language="json")
        open_document(client, "buy milk\n", name="todo.txt", language="plaintext")
        uri = open_document(client, PREFIX)
        await inline(client, uri, end_of(PREFIX))

    [sent] = fake.generation_requests()
    names = [e["filename"].rpartition("/")[2] for e in sent.body["input_extra"]]
    assert names[0] == "helpers.py"
    assert sent.body["input_extra"][0]["text"] == "def helper():\n    return 42\n"
    assert sorted(names[1:]) == ["config.json", "todo.txt"]  # the two most recent of the rest


async def test_an_edited_neighbour_is_sent_as_edited(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """A neighbour's head is read once per version: after an edit, the next prompt has the
    new text."""
    async with lsp_session(provider_options(fake, "llamacpp")) as client:
        helpers_text = "def helper():\n    return 42\n"
        helpers = Editor(
            client, open_document(client, helpers_text, name="helpers.py"), helpers_text
        )
        uri = open_document(client, PREFIX)
        await inline(client, uri, end_of(PREFIX))
        helpers.edit(len("def "), len("def helper"), "assist")
        other = open_document(client, "x = ", name="other.py")
        await inline(client, other, end_of("x = "))

    first, second = fake.generation_requests()
    assert first.body["input_extra"][0]["text"] == "def helper():\n    return 42\n"
    names = [e["filename"].rpartition("/")[2] for e in second.body["input_extra"]]
    assert names == ["helpers.py", "main.py"]  # the edit made it the most recent
    assert second.body["input_extra"][0]["text"] == "def assist():\n    return 42\n"


async def test_a_completion_deep_in_a_large_edited_document_sees_and_lands_where_the_cursor_is(
    fake: FakeProvider, lsp_session: Session
) -> None:
    """A 600 K-character document, edited (held in pieces): the request reads an excerpt of
    the lines around the cursor, and the prompt, the suffix and the range it answers with are
    those of the whole document; typing through the suggestion costs no second call."""
    lines = [f"value_{n} = compute({n})  # ünïcode 😀 line {n}\n" for n in range(15_000)]
    text = "".join(lines)
    row = 12_345
    cursor = sum(len(line) for line in lines[:row]) + len("value_12345 = ")
    fake.reply = "compute_more(1)"
    async with lsp_session(provider_options(fake, max_prefix_chars=500)) as client:
        uri = open_document(client, text)
        editor = Editor(client, uri, text)
        editor.edit(10, 10, "#")  # an edit far above the cursor: the text is now in pieces
        cursor += 1
        text = editor.text
        column = len(text[text.rfind("\n", 0, cursor) + 1 : cursor].encode("utf-16-le")) // 2
        position = types.Position(row, column)
        result = await inline(client, uri, position)
        [sent] = fake.generation_requests()
        prompt, suffix = sent.body["prompt"], sent.body["suffix"]
        assert text[:cursor].endswith(prompt) and 400 < len(prompt) <= 500
        assert text[cursor:].startswith(suffix) and suffix
        [item] = result.items
        assert item.insert_text == "compute_more(1)"
        assert item.range == types.Range(position, position)

        editor.edit(cursor, cursor, "comp")  # typed through: answered from memory
        typed = types.Position(row, column + 4)
        again = await inline(client, uri, typed)
        assert [i.insert_text for i in again.items] == ["ute_more(1)"]
        assert again.items[0].range == types.Range(typed, typed)
    assert len(fake.generation_requests()) == 1
