"""With no provider configured, the real server chooses: Ollama when it answers (at
``OLLAMA_HOST``), else its own local model when it is downloaded, else it asks the user's
consent to download it (``window/showMessageRequest``) and downloads nothing without it. The
pure rule, on every combination (the extra installed or not), is tested first."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from crucible.config.settings import DEFAULT_LOCAL_MODEL, ProviderKind, ProviderSettings
from crucible.local.catalogue import find
from crucible.providers.default_choice import decide, ollama_address, unconfigured
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    open_document,
    server_status,
)
from tests.fakes.provider import FakeProvider
from tests.llama_server.tiny_model import write_tiny_model

TEXT = "def add(a, b):\n    "
NOBODY = "http://127.0.0.1:1"  # nothing listens on port 1


@pytest.mark.parametrize(
    ("answers", "extra", "present", "kind", "ask"),
    [
        (True, True, True, "ollama", False),  # Ollama first, even with the model downloaded
        (True, False, False, "ollama", False),
        (False, False, True, "ollama", False),  # no extra: nothing to run the model with
        (False, False, False, "ollama", False),
        (False, True, True, "local", False),
        (False, True, False, "ollama", True),  # could download: only with consent
    ],
)
def test_the_default_is_ollama_then_the_local_model_then_a_question(
    answers: bool, extra: bool, present: bool, kind: str, ask: bool
) -> None:
    choice = decide(ollama_url=NOBODY, ollama_answers=answers, extra=extra, model_present=present)
    assert (choice.kind, choice.ask_consent) == (kind, ask)
    if not extra and not answers:
        assert "pip install 'crucible-lsp[local]'" in choice.reason


def test_the_rule_applies_only_without_providers_and_reads_ollama_host() -> None:
    assert unconfigured((ProviderSettings(),))
    assert not unconfigured((ProviderSettings(name="mine"),))
    assert not unconfigured((ProviderSettings(), ProviderSettings(name="b")))
    assert ollama_address({}) == "http://127.0.0.1:11434"
    assert ollama_address({"OLLAMA_HOST": "127.0.0.1:9999"}) == "http://127.0.0.1:9999"
    assert find(DEFAULT_LOCAL_MODEL) is not None  # the settings' default is in the catalogue
    assert ProviderKind.LOCAL.value == "local"


# -- the real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("default-model") / "tiny.gguf")


@asynccontextmanager
async def unconfigured_session(
    lsp_session: Session, ollama: str, answer: str | None = None
) -> AsyncIterator[LanguageClient]:
    """The server with no provider anywhere; ``answer`` is what the user clicks when asked."""
    asked: list[str] = []

    def answer_questions(client: LanguageClient) -> None:
        client.asked = asked  # type: ignore[attr-defined]

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def show_message_request(
            _: LanguageClient, params: types.ShowMessageRequestParams
        ) -> types.MessageActionItem | None:
            asked.append(params.message)
            return None if answer is None else types.MessageActionItem(title=answer)

    options = {
        "completion": {"debounce_mode": "fixed", "debounce_ms": 0, "max_tokens": 8},
        "cache": {"prefetch": "off", "enabled": False},
    }
    async with lsp_session(
        options, env={"OLLAMA_HOST": ollama}, before_initialize=answer_questions
    ) as client:
        yield client


async def chosen(client: LanguageClient, within_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while (found := (await server_status(client))["default_provider"]) is None:
        assert time.monotonic() < deadline, "no default provider was chosen"
        await asyncio.sleep(0.05)
    return dict(found)


@pytest.mark.e2e
async def test_ollama_is_used_when_it_answers(lsp_session: Session) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base", reply="return a + b") as fake:
        async with unconfigured_session(lsp_session, fake.base_url) as client:
            choice = await chosen(client)
            uri = open_document(client, TEXT)
            result = await inline(client, uri, end_of(TEXT))
    assert choice["kind"] == "ollama" and "answers" in choice["reason"]
    assert [item.insert_text for item in result.items] == ["return a + b"]


@pytest.mark.e2e
async def test_the_downloaded_local_model_is_used_when_ollama_does_not_answer(
    tmp_path: Path, tiny_model: Path, lsp_session: Session
) -> None:
    entry = find(DEFAULT_LOCAL_MODEL)
    assert entry is not None
    models = tmp_path / "xdg-cache" / "crucible" / "models"
    models.mkdir(parents=True)
    shutil.copy(tiny_model, models / entry.file_name)  # as if pulled
    async with unconfigured_session(lsp_session, NOBODY) as client:
        choice = await chosen(client)
        uri = open_document(client, TEXT)
        result = await inline(client, uri, end_of(TEXT))
        asked = list(client.asked)  # type: ignore[attr-defined]
    assert choice["kind"] == "local" and "downloaded" in choice["reason"]
    assert [item.insert_text for item in result.items] == ["abcdefgh"]
    assert asked == []


@pytest.mark.e2e
async def test_nothing_is_downloaded_without_consent(tmp_path: Path, lsp_session: Session) -> None:
    async with unconfigured_session(lsp_session, NOBODY, answer="Not now") as client:
        deadline = time.monotonic() + 10
        while "declined" not in (await chosen(client))["reason"]:
            assert time.monotonic() < deadline, "the consent answer was not heard"
            await asyncio.sleep(0.05)
        choice = await chosen(client)
        asked = list(client.asked)  # type: ignore[attr-defined]
    assert len(asked) == 1 and "Download" in asked[0] and "GB" in asked[0]
    assert choice["kind"] == "ollama"
    models = tmp_path / "xdg-cache" / "crucible" / "models"
    assert not models.exists() or list(models.iterdir()) == []
