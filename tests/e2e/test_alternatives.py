"""Alternatives for editors that cycle through inline suggestions (VS Code's Alt+] / Alt+[):
sampled only when the user asks explicitly, never on automatic triggers."""

from __future__ import annotations

import itertools

import pytest
from lsprotocol import types
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    open_document,
    provider_options,
)
from tests.fakes.provider import FakeProvider, RecordedRequest

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "
INVOKED = types.InlineCompletionTriggerKind.Invoked


@pytest.fixture
def sampling() -> FakeProvider:
    """A provider whose every answer differs, as sampling at a temperature does."""
    counter = itertools.count()

    def reply(_: RecordedRequest) -> str:
        return f"return a + b + {next(counter)}"

    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply=reply) as fake:
        yield fake


def items(result: types.InlineCompletionList) -> list[str]:
    return [item.insert_text for item in result.items]


async def test_an_invoked_request_gets_alternatives_sampled_concurrently(
    sampling: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(sampling, alternatives=3)) as client:
        uri = open_document(client, TEXT)
        invoked = await inline(client, uri, end_of(TEXT), INVOKED)
        calls_after_invoke = len(sampling.generation_requests())
        # The editor asks again at the same spot (automatically): the samples are in memory.
        again = await inline(client, uri, end_of(TEXT))
        calls_after_automatic = len(sampling.generation_requests())

    assert len(items(invoked)) == 3 and len(set(items(invoked))) == 3
    assert all(text.startswith("return a + b + ") for text in items(invoked))
    assert calls_after_invoke == 3
    assert sorted(items(again)) == sorted(items(invoked))
    assert calls_after_automatic == 3  # nothing more asked
    temperatures = sorted(r.body["options"]["temperature"] for r in sampling.generation_requests())
    assert temperatures == [0.2, 0.8, 0.8]  # the first as configured, the samples hotter
    ranges = {(i.range.start.character, i.range.end.character) for i in invoked.items}
    assert ranges == {(4, 4)}


async def test_cycling_from_a_shown_suggestion_samples_alternatives(
    sampling: FakeProvider, lsp_session: Session
) -> None:
    """The user sees the automatic suggestion and asks for the next one: the invoked request
    at the same spot (VS Code's Alt+] on a single item, crucible.el's M-n) must sample
    alternatives, not only hand back the shown suggestion as a type-through of nothing."""
    async with lsp_session(provider_options(sampling, alternatives=3)) as client:
        uri = open_document(client, TEXT)
        automatic = await inline(client, uri, end_of(TEXT))
        invoked = await inline(client, uri, end_of(TEXT), INVOKED)

    assert items(automatic) == ["return a + b + 0"]
    assert items(invoked)[0] == "return a + b + 0"  # the shown one stays first
    assert len(set(items(invoked))) == 3
    assert len(sampling.generation_requests()) == 3


async def test_automatic_requests_never_cost_an_extra_call(
    sampling: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(sampling, alternatives=3)) as client:
        uri = open_document(client, TEXT)
        automatic = await inline(client, uri, end_of(TEXT))

    assert len(items(automatic)) == 1
    assert len(sampling.generation_requests()) == 1


async def test_the_default_is_one_suggestion_even_when_invoked(
    sampling: FakeProvider, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(sampling)) as client:
        uri = open_document(client, TEXT)
        invoked = await inline(client, uri, end_of(TEXT), INVOKED)

    assert len(items(invoked)) == 1
    assert len(sampling.generation_requests()) == 1
