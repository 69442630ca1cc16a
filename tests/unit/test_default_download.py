"""The consented download of the default model, in the App (composition root) with an editor
that answers "Download": the editor is asked once, shows the download's progress ($/progress:
begin, reports, end), the file lands verified in the XDG cache, and the local provider replaces
the schema's default. The catalogue's real URL is on the internet, so the default model's
source is pointed at a loopback server serving the tiny model's bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.model_files import ModelFileServer
from tests.llama_server.tiny_model import write_tiny_model

from crucible.app import App
from crucible.config.settings import ProviderKind
from crucible.local.models import ModelSource
from crucible.providers import default_choice


class Editor:
    """An EditorChannel that answers ``answer`` and records what it was shown."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.progress: list[tuple[str, Any]] = []
        self.warnings: list[str] = []

    def show_warning(self, message: str) -> None:
        self.warnings.append(message)

    def send_status(self, payload: dict[str, Any]) -> None:
        pass

    def documents_bytes(self) -> int:
        return 0

    async def ask(self, message: str, actions: tuple[str, ...]) -> str | None:
        self.asked.append(message)
        return self.answer

    async def begin_progress(self, title: str) -> str | None:
        self.progress.append(("begin", title))
        return "token"

    def report_progress(self, token: str, percentage: int, message: str) -> None:
        self.progress.append(("report", percentage))

    def end_progress(self, token: str, message: str) -> None:
        self.progress.append(("end", message))


@pytest.fixture
def payload(tmp_path: Path) -> bytes:
    return write_tiny_model(tmp_path / "tiny.gguf").read_bytes()


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
        "OLLAMA_HOST": "http://127.0.0.1:1",  # nothing answers
    }


@pytest.mark.parametrize("answer", ["Download", "Not now", "Don't ask again"])
async def test_the_default_model_is_downloaded_only_on_yes_with_progress(
    tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    target = tmp_path / "cache" / "crucible" / "models" / "default.gguf"
    with ModelFileServer(payload) as server:
        digest = hashlib.sha256(payload).hexdigest()
        source = ModelSource("default", target, f"{server.url}/m.gguf", len(payload), digest)
        monkeypatch.setattr(default_choice, "catalogue_source", lambda name, env: source)
        app = App(env=env_for(tmp_path))
        editor = Editor(answer)
        app.connect_editor(editor)  # type: ignore[arg-type]
        await app._choose_default()
        kinds = [s.kind for s in app.settings.providers]
        choice = app.default_choice
        await app.aclose()

    assert len(editor.asked) == 1 and "Download" in editor.asked[0]
    assert choice is not None
    if answer == "Download":
        assert target.read_bytes() == payload
        assert editor.progress[0][0] == "begin" and editor.progress[-1] == ("end", "downloaded")
        assert ("report", 100) in editor.progress
        assert kinds == [ProviderKind.LOCAL] and choice.kind == "local"
    else:
        assert server.seen == [] and not target.exists()
        assert editor.progress == []
        assert kinds == [ProviderKind.OLLAMA] and "declined" in choice.reason


@pytest.mark.parametrize(("answer", "asked_again"), [("Not now", True), ("Don't ask again", False)])
async def test_the_next_start_asks_again_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, asked_again: bool
) -> None:
    monkeypatch.setattr(default_choice, "extra_installed", lambda: True)
    editors = []
    for _ in range(2):  # two starts of the server, on the same machine
        app = App(env=env_for(tmp_path))
        editor = Editor(answer)
        app.connect_editor(editor)  # type: ignore[arg-type]
        await app._choose_default()
        choice = app.default_choice
        await app.aclose()
        editors.append(editor)
    assert len(editors[0].asked) == 1
    assert len(editors[1].asked) == (1 if asked_again else 0)
    assert choice is not None and choice.kind == "ollama"
    if not asked_again:
        assert "asked not to be asked" in choice.reason
