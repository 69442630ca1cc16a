"""Secrets never leave the machine, end to end: the real server against the loopback fake,
every request body the fake recorded checked.

* excluded files (built-in list, ``[privacy] exclude``, ``.crucibleignore``) get no completion
  and no provider request, and are never sent as another file's context;
* secrets in the window and in other files are replaced before any provider sees them, and
  ``crucible/status`` counts them;
* a window holding a private key, or a cursor inside a secret, sends nothing;
* paths in prompts are relative to the workspace (or only the name), never absolute.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import Session, end_of, inline, provider_options, server_status
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

KINDS = ["ollama", "openai", "llamacpp", "anthropic", "codestral"]
# The kinds whose request carries other files (llama.cpp's input_extra, the FIM template's
# file separators for qwen models, the anthropic prompt's <file> elements).
CONTEXT_KINDS = ["openai", "llamacpp", "anthropic"]

AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_" + "a1B2c3D4e5" * 4
PASSWORD = "Tr0ub4dor&3xyz"
SLACK = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
ENV_KEY = "sk-proj-" + "Q7wE9rT1yU" * 5
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
CODE = "def add(a, b):\n    "


def open_at(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    """Open ``path`` (it need not exist) with ``text``; returns its URI."""
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=text
            )
        )
    )
    return uri


def sent(fake: FakeProvider) -> str:
    """Every generation request body the fake received, as one JSON text."""
    return "\n".join(json.dumps(r.body) for r in fake.generation_requests())


async def test_excluded_files_get_no_completion_and_no_request(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / ".crucibleignore").write_text("# the repository's own list\ninternal/\n")
    options = provider_options(fake)
    options["privacy"] = {"exclude": ["*.secret.py"]}
    excluded = [
        ".env",
        "config/.env.local",
        "id_rsa",
        "certs/x.pem",
        ".git/config",
        "internal/plan.py",  # .crucibleignore
        "db.secret.py",  # [privacy] exclude
    ]
    async with lsp_session(options, workspace=root) as client:
        for name in excluded:
            uri = open_at(client, root / name, CODE)
            result = await inline(
                client, uri, end_of(CODE), types.InlineCompletionTriggerKind.Invoked
            )
            assert not result.items, name
        assert fake.generation_requests() == []
        status = await server_status(client)
        assert status["privacy"]["excluded_requests"] == len(excluded)
        assert status["requests"]["excluded"] == len(excluded)
        # The same text in an ordinary file is completed: the exclusions made the difference.
        uri = open_at(client, root / "main.py", CODE)
        result = await inline(client, uri, end_of(CODE))
        assert [item.insert_text for item in result.items] == ["return a + b"]
        assert len(fake.generation_requests()) == 1


async def test_an_ignore_file_written_while_running_takes_effect(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with lsp_session(provider_options(fake), workspace=root) as client:
        (root / ".crucibleignore").write_text("notes.py\n")
        uri = open_at(client, root / "notes.py", CODE)
        # The file is looked at once a second; by then this must be answered empty.
        for _ in range(30):
            result = await inline(
                client, uri, end_of(CODE), types.InlineCompletionTriggerKind.Invoked
            )
            if (await server_status(client))["privacy"]["excluded_requests"]:
                break
            await asyncio.sleep(0.1)
        assert (await server_status(client))["privacy"]["excluded_requests"] >= 1
        fake.reset()
        result = await inline(client, uri, end_of(CODE), types.InlineCompletionTriggerKind.Invoked)
        assert not result.items and fake.generation_requests() == []


@pytest.mark.parametrize("kind", CONTEXT_KINDS)
async def test_excluded_neighbours_are_never_sent_and_paths_are_relative(
    kind: str, fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "home" / "alice" / "ws"
    root.mkdir(parents=True)
    outside = tmp_path / "home" / "alice" / "elsewhere"
    async with lsp_session(provider_options(fake, kind), workspace=root) as client:
        open_at(client, root / ".env", f"OPENAI_API_KEY={ENV_KEY}\nDEBUG=1\n", "dotenv")
        open_at(client, root / "deploy.pem", PRIVATE_KEY, "plaintext")
        open_at(client, outside / "shared_utils.py", "def shared():\n    return 1\n")
        open_at(client, root / "lib" / "helpers.py", "def helper():\n    return 42\n")
        uri = open_at(client, root / "src" / "pkg" / "main.py", CODE)
        result = await inline(client, uri, end_of(CODE))
        assert result.items  # the request went out and was answered
    body = sent(fake)
    assert len(fake.generation_requests()) == 1
    # Neighbours are sent (the test can see one), the excluded ones never.
    assert "def helper()" in body and "def shared()" in body
    assert ENV_KEY not in body and "DEBUG=1" not in body and ".env" not in body
    assert "b3BlbnNzaC1rZXkt" not in body and "deploy.pem" not in body
    # Paths: relative inside the workspace, only the name outside it; never absolute.
    assert "src/pkg/main.py" in body or kind == "llamacpp"  # /infill has no field for it
    assert "lib/helpers.py" in body and "shared_utils.py" in body
    assert str(tmp_path) not in body and "/home/" not in body and "alice" not in body


@pytest.mark.parametrize("kind", KINDS)
async def test_secrets_near_the_cursor_never_reach_a_provider_and_are_counted(
    kind: str, fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    text = (
        "import boto3\n\n"
        f'AWS_ACCESS_KEY_ID = "{AWS_ID}"\n'
        f"aws_secret_access_key = {AWS_SECRET}\n"
        f"GITHUB_TOKEN = '{GITHUB}'\n"
        f'db = connect(host="db", password="{PASSWORD}")\n\n'
        "def add(a, b):\n    "
    )
    suffix = f'\n\nSLACK = "{SLACK}"\n'
    async with lsp_session(provider_options(fake, kind), workspace=root) as client:
        open_at(client, root / "chat.py", f"WEBHOOK_TOKEN = '{SLACK}'\n")
        uri = open_at(client, root / "main.py", text + suffix)
        result = await inline(client, uri, end_of(text))
        assert [item.insert_text for item in result.items] == ["return a + b"]
        status = await server_status(client)
    body = sent(fake)
    assert len(fake.generation_requests()) == 1
    for secret in (AWS_ID, AWS_SECRET, GITHUB, PASSWORD, SLACK):
        assert secret not in body, secret
    assert "<redacted>" in body and "def add(a, b)" in body
    in_window = 5  # the four above the cursor and the Slack token after it
    assert status["privacy"]["redactions"] >= in_window


WITHHELD = {
    "whole-block-in-prefix": (f"KEY = '''\n{PRIVATE_KEY}'''\n\n{CODE}", "\n"),
    "whole-block-in-suffix": (CODE, f"\n\nKEY = '''\n{PRIVATE_KEY}'''\n"),
    "cursor-in-the-key": ("KEY = '''\n" + PRIVATE_KEY[:60], PRIVATE_KEY[60:] + "'''\n"),
    "cursor-in-a-token": (f'token = "{GITHUB[:14]}', f'{GITHUB[14:]}"\n'),
    "typing-a-password": (f'password = "{PASSWORD[:5]}', "\n"),
}


async def test_a_window_with_a_private_key_or_a_cursor_in_a_secret_sends_nothing(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    async with lsp_session(provider_options(fake), workspace=root) as client:
        for name, (before, after) in WITHHELD.items():
            uri = open_at(client, root / f"{name}.py", before + after)
            invoked = types.InlineCompletionTriggerKind.Invoked
            result = await inline(client, uri, end_of(before), invoked)
            assert not result.items, name
            assert fake.generation_requests() == [], name
        status = await server_status(client)
        assert status["privacy"]["withheld_requests"] == len(WITHHELD)
        assert status["requests"]["withheld"] == len(WITHHELD)
        # Past the key block, with the whole block out of the window, completions come back.
        text = f"KEY = '''\n{PRIVATE_KEY}'''\n" + "\n" * 5 + CODE
        uri = open_at(client, root / "after.py", text)
        options = provider_options(fake, max_prefix_chars=len(CODE) + 4)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crucible": options})
        )
        await server_status(client)
        result = await inline(client, uri, end_of(text), types.InlineCompletionTriggerKind.Invoked)
        assert [item.insert_text for item in result.items] == ["return a + b"]
