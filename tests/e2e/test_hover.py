"""Hover explanations end to end: the real server process, diagnostics sent as Crucible's
editor clients send them (``crucible/didChangeDiagnostics``), the loopback fake as the chat
provider; every claim about provider calls is checked on the fake's request log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import Session, open_document, provider_options, server_status
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

TEXT = "import math\n\n\ndef area(radius):\n    return math.pi * radus ** 2\n"
EXPLANATION = "`radus` is not defined here: you meant `radius`.\n\n```python\nradius ** 2\n```"
DIAGNOSTIC = {
    "range": {"start": {"line": 4, "character": 21}, "end": {"line": 4, "character": 26}},
    "severity": 1,
    "source": "Pyflakes",
    "code": "F821",
    "message": "undefined name 'radus'",
}
ON_THE_ERROR = types.Position(4, 23)


@pytest.fixture
def fake() -> Any:
    with FakeProvider(model="test-chat", reply=EXPLANATION) as provider:
        yield provider


def options(fake: FakeProvider, kind: str = "ollama", **hover: Any) -> dict[str, Any]:
    return {**provider_options(fake, kind), "hover": {"prefetch": "off", **hover}}


def send_diagnostics(
    client: LanguageClient, uri: str, diagnostics: list[dict[str, Any]], version: int = 1
) -> None:
    client.protocol.notify(
        "crucible/didChangeDiagnostics",
        {"textDocument": {"uri": uri, "version": version}, "diagnostics": diagnostics},
    )


async def hover(client: LanguageClient, uri: str, position: types.Position) -> str | None:
    result = await asyncio.wait_for(
        client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), position)
        ),
        10,
    )
    if result is None:
        return None
    assert isinstance(result.contents, types.MarkupContent)
    assert result.contents.kind == types.MarkupKind.Markdown
    return result.contents.value


def chat_calls(fake: FakeProvider) -> int:
    return len(fake.generation_requests())


@pytest.mark.parametrize("kind", ["ollama", "anthropic"])
async def test_a_hover_on_a_diagnostic_explains_it_then_repeats_from_cache(
    fake: FakeProvider, lsp_session: Session, kind: str
) -> None:
    async with lsp_session(options(fake, kind)) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [DIAGNOSTIC])
        first = await hover(client, uri, ON_THE_ERROR)
        again = await hover(client, uri, types.Position(4, 21))
        status = await server_status(client)

    assert first is not None and first == again
    assert first.startswith("**error** `Pyflakes` `F821`: undefined name 'radus'")
    assert EXPLANATION in first
    assert "Crucible: fix" in first
    assert chat_calls(fake) == 1  # the second hover cost nothing
    request = fake.generation_requests()[0]
    assert request.path in ("/api/chat", "/v1/messages")
    assert "undefined name 'radus'" in str(request.body)
    assert "main.py" in str(request.body)
    assert status["hover"]["explained"] == 1 and status["hover"]["cached"] == 1


async def test_the_same_error_on_the_same_code_elsewhere_is_the_same_explanation(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [DIAGNOSTIC])
        first = await hover(client, uri, ON_THE_ERROR)
        other = open_document(client, TEXT, name="copy.py")
        send_diagnostics(client, other, [DIAGNOSTIC])
        second = await hover(client, other, ON_THE_ERROR)

    assert first == second
    assert chat_calls(fake) == 1


async def test_no_diagnostic_there_no_provider_call(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        assert client.initialize_result.capabilities.hover_provider  # type: ignore[attr-defined]
        send_diagnostics(client, uri, [DIAGNOSTIC])
        found = await hover(client, uri, types.Position(3, 4))

    assert found is None
    assert chat_calls(fake) == 0


async def test_a_slow_provider_is_answered_in_time_then_from_cache(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(latency_ms=1000), times=1)
    async with lsp_session(options(fake, timeout_ms=200)) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [DIAGNOSTIC])
        first = await hover(client, uri, ON_THE_ERROR)
        assert await fake.wait_for_async(
            lambda f: any(r.completed for r in f.generation_requests())
        )
        await asyncio.sleep(0.1)  # the flight stores the answer once the stream ends
        second = await hover(client, uri, ON_THE_ERROR)
        status = await server_status(client)

    assert first is not None and "undefined name 'radus'" in first
    assert "on its way" in first and EXPLANATION not in first
    assert second is not None and EXPLANATION in second
    assert chat_calls(fake) == 1
    assert status["hover"]["timed_out"] == 1 and status["hover"]["cached"] == 1


async def test_an_edit_on_its_lines_drops_a_diagnostic_and_close_forgets_it(
    fake: FakeProvider, lsp_session: Session
) -> None:
    below = {
        **DIAGNOSTIC,
        "range": {"start": {"line": 4, "character": 21}, "end": {"line": 4, "character": 26}},
    }
    above = {
        **DIAGNOSTIC,
        "message": "'math' imported",
        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 11}},
    }
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [above, below])
        # A line inserted at the top: 'math' imported (line 0) is touched, the other moves.
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(0, 0), types.Position(0, 0)),
                        text="# area\n",
                    )
                ],
            )
        )
        dropped = await hover(client, uri, types.Position(1, 3))
        moved = await hover(client, uri, types.Position(5, 23))
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))
        )
        open_document(client, "# area\n" + TEXT)
        forgotten = await hover(client, uri, types.Position(5, 23))

    assert dropped is None
    assert moved is not None and "undefined name 'radus'" in moved
    assert forgotten is None
    assert chat_calls(fake) == 1


async def test_a_provider_down_gives_the_diagnostic_alone(
    fake: FakeProvider, lsp_session: Session
) -> None:
    fake.inject(Fault(status=500))
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [DIAGNOSTIC])
        found = await hover(client, uri, ON_THE_ERROR)

    assert found is not None and "undefined name 'radus'" in found
    assert EXPLANATION not in found


async def test_an_excluded_file_gets_no_provider_call(
    fake: FakeProvider, lsp_session: Session
) -> None:
    settings = {**options(fake), "privacy": {"exclude": ["secret_*.py"]}}
    async with lsp_session(settings) as client:
        uri = open_document(client, TEXT, name="secret_area.py")
        send_diagnostics(client, uri, [DIAGNOSTIC])
        found = await hover(client, uri, ON_THE_ERROR)

    assert found is not None and "undefined name 'radus'" in found
    assert chat_calls(fake) == 0


async def test_prefetch_explains_errors_when_diagnostics_arrive(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake, prefetch="on")) as client:
        uri = open_document(client, TEXT)
        send_diagnostics(client, uri, [DIAGNOSTIC])
        assert await fake.wait_for_async(lambda f: chat_calls(f) == 1)
        await asyncio.sleep(0.2)
        found = await hover(client, uri, ON_THE_ERROR)
        status = await server_status(client)

    assert found is not None and EXPLANATION in found
    assert chat_calls(fake) == 1
    assert status["hover"]["prefetched"] == 1


async def test_explain_code_explains_the_code_under_the_cursor_when_asked(
    fake: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(options(fake, explain_code=True)) as client:
        uri = open_document(client, TEXT)
        found = await hover(client, uri, types.Position(3, 6))

    assert found is not None and EXPLANATION in found
    assert "Quick fix" not in found  # no diagnostic, no fix to point at
    assert chat_calls(fake) == 1
    assert "def area(radius):" in str(fake.generation_requests()[0].body)


async def test_diagnostics_seen_in_a_code_action_request_are_explained_on_hover(
    fake: FakeProvider, lsp_session: Session
) -> None:
    # An editor that never sends crucible/didChangeDiagnostics still asks for code actions
    # with the diagnostics under the cursor: hover learns them from there.
    async with lsp_session(options(fake)) as client:
        uri = open_document(client, TEXT)
        before = await hover(client, uri, ON_THE_ERROR)
        diagnostic = types.Diagnostic(
            range=types.Range(types.Position(4, 21), types.Position(4, 26)),
            message="undefined name 'radus'",
            severity=types.DiagnosticSeverity.Error,
            source="Pyflakes",
            code="F821",
        )
        await asyncio.wait_for(
            client.text_document_code_action_async(
                types.CodeActionParams(
                    types.TextDocumentIdentifier(uri),
                    diagnostic.range,
                    types.CodeActionContext(diagnostics=[diagnostic]),
                )
            ),
            10,
        )
        after = await hover(client, uri, ON_THE_ERROR)

    assert before is None
    assert after is not None and EXPLANATION in after
    assert chat_calls(fake) == 1
