"""Keys only to their own origin: never across a redirect, never in a log at any level, never
in status or an error message, whole or in part, even when a provider echoes them back."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from lsprotocol import types

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.http import make_client, mask_key
from tests.e2e.conftest import Session, end_of, inline, server_status
from tests.fakes.provider import FakeProvider
from tests.security.hostile import HostileProvider

KEY = "sk-proj-" + "K3yMat3r1aL" * 4 + "zQ"
ENV = "CRUCIBLE_SECURITY_KEY"
CODE = "def add(a, b):\n    "
MODEL = "qwen2.5-coder:1.5b-base"
# Each kind's base_url on a server at ``origin`` (openai and codestral include /v1).
BASES = {
    "ollama": "{}",
    "llamacpp": "{}",
    "openai": "{}/v1",
    "anthropic": "{}",
    "codestral": "{}/v1",
}


def leaked(text: str, key: str = KEY, run: int = 10) -> list[str]:
    """The pieces of ``key`` (``run`` characters or more) found in ``text``."""
    return [key[i : i + run] for i in range(len(key) - run + 1) if key[i : i + run] in text]


def options(kind: str, origin: str, **completion: Any) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "hosted",
                "kind": kind,
                "base_url": BASES[kind].format(origin),
                "model": MODEL,
                "api_key_env": ENV,
            }
        ],
        "completion": {"debounce_ms": 0, **completion},
        "cache": {"prefetch": "off"},
    }


def test_clients_never_follow_redirects() -> None:
    for kind in ProviderKind:
        client = make_client(ProviderSettings(kind=kind, base_url="http://127.0.0.1:9"))
        assert client.follow_redirects is False
        asyncio.run(client.aclose())


def providers(origins: list[tuple[str, str]], **completion: Any) -> dict[str, Any]:
    """One provider per (kind, origin), tried in this order: a request fails over through
    every one that fails, so one request exercises them all."""
    table = options("openai", "", **completion)
    table["providers"] = [
        {
            "name": f"p{i}-{kind}",
            "kind": kind,
            "base_url": BASES[kind].format(origin),
            "model": MODEL,
            "api_key_env": ENV,
        }
        for i, (kind, origin) in enumerate(origins)
    ]
    return table


async def ask_once(client: Any, tmp_path: Path) -> types.InlineCompletionList:
    uri = (tmp_path / "workspace" / "main.py").as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri, "python", 1, CODE)
        )
    )
    return await inline(client, uri, end_of(CODE), types.InlineCompletionTriggerKind.Invoked)


# Every kind, the statuses shared out among them (check_status's own test takes each status).
REDIRECTS = list(zip(BASES, (302, 307, 308, 301, 307), strict=True))


async def test_a_redirect_to_another_origin_carries_no_key(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    # A provider per kind, each redirecting to the fake.
    with contextlib.ExitStack() as stack:
        hostiles = [
            stack.enter_context(HostileProvider(status=status, redirect_to=fake.base_url))
            for _, status in REDIRECTS
        ]
        origins = [(kind, h.base_url) for (kind, _), h in zip(REDIRECTS, hostiles, strict=True)]
        async with lsp_session(providers(origins, timeout_ms=20_000), env={ENV: KEY}) as client:
            result = await ask_once(client, tmp_path)
            await server_status(client)  # the warnings, logged before the answer, are in
            logged = "\n".join(m.message for m in client.log_messages)
    assert not result.items
    for (kind, status), hostile in zip(REDIRECTS, hostiles, strict=True):
        # The configured origin got the key (it is the one the user chose) …
        assert hostile.seen, f"{kind} {status} was never asked"
        assert any(leaked(json.dumps(s.headers)) for s in hostile.seen), kind
        # … and the user is told where it pointed.
        assert f"HTTP {status}: redirected to {fake.base_url}, not followed" in logged
    # The origin they pointed at got nothing at all, and no message holds the key.
    assert fake.requests == []
    assert not leaked(logged)


ECHOES = {
    "whole": lambda key: f"Incorrect API key provided: {key}.",
    "prefix": lambda key: f"Incorrect API key provided: {key[:20]}****************.",
    "tail": lambda key: f"Key ending in ...{key[-12:]} is not valid",
    "quoted-middle": lambda key: f'bad key "{key[5:30]}" (see docs)',
}


async def test_a_key_echoed_by_a_provider_is_masked_everywhere(
    lsp_session: Session, tmp_path: Path
) -> None:
    log = tmp_path / "crucible.log"
    args = ("--log-level", "DEBUG", "--log-file", str(log))
    # Bearer (openai) and x-api-key (anthropic) providers, each echoing the key one way.
    cases = [("openai", "whole"), ("openai", "prefix"), ("anthropic", "tail")]
    cases.append(("anthropic", "quoted-middle"))
    with contextlib.ExitStack() as stack:
        hostiles = [
            stack.enter_context(HostileProvider(status=401, echo=ECHOES[echo])) for _, echo in cases
        ]
        origins = [(kind, h.base_url) for (kind, _), h in zip(cases, hostiles, strict=True)]
        table = providers(origins, timeout_ms=20_000)
        async with lsp_session(table, env={ENV: KEY}, args=args) as client:
            await ask_once(client, tmp_path)
            for _ in range(100):  # the warnings are pushed after the answer
                if len(client.messages) >= len(cases):
                    break
                await asyncio.sleep(0.05)
            status_now = await server_status(client)
    assert all(h.seen for h in hostiles)  # each was asked, and echoed the key
    shown = [m.message for m in client.messages] + [m.message for m in client.log_messages]
    everything = "\n".join([log.read_text(), json.dumps(status_now), *shown])
    assert "rejected the API key" in everything  # the errors themselves are reported
    assert leaked(everything) == []


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_debug_log_of_a_session_with_a_key_holds_no_key(
    kind: str, lsp_session: Session, tmp_path: Path
) -> None:
    log = tmp_path / "crucible.log"
    args = ("--log-level", "DEBUG", "--log-file", str(log))
    with FakeProvider(model=MODEL, reply="return a + b", require_api_key=KEY) as fake:
        async with lsp_session(options(kind, fake.base_url), env={ENV: KEY}, args=args) as client:
            uri = (tmp_path / "workspace" / "main.py").as_uri()
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(uri, "python", 1, CODE)
                )
            )
            result = await inline(client, uri, end_of(CODE))
            status_now = await server_status(client)
    assert [item.insert_text for item in result.items] == ["return a + b"]  # the key worked
    text = log.read_text()
    assert "HTTP Request: POST" in text  # httpx's own DEBUG lines are in the log
    shown = [m.message for m in client.log_messages]
    assert leaked("\n".join([text, json.dumps(status_now), *shown])) == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_an_error_naming_only_the_origin(status: int) -> None:
    from crucible.providers.errors import ProviderUnavailable
    from crucible.providers.http import check_status

    async def run() -> str:
        request = httpx.Request("POST", "http://127.0.0.1:1/v1/x", headers={"x-api-key": KEY})
        location = "http://127.0.0.1:2/steal?key=abc#frag"
        response = httpx.Response(status, request=request, headers={"location": location})
        try:
            await check_status("p", response)
        except ProviderUnavailable as exc:
            return str(exc)
        raise AssertionError("no error")

    message = asyncio.run(run())
    assert f"HTTP {status}: redirected to http://127.0.0.1:2, not followed" in message
    assert "steal" not in message and "abc" not in message


@pytest.mark.parametrize(
    "message",
    [
        f"bad key {KEY}",
        f"Incorrect API key provided: {KEY[:16]}*****",
        f"key ...{KEY[-9:]}",
        f'{{"detail": "{KEY[3:40]}"}}',
        f"two: {KEY} and {KEY[:12]}",
    ],
)
def test_mask_key_masks_the_key_and_any_long_piece_of_it(message: str) -> None:
    masked = mask_key(message, KEY)
    assert leaked(masked, run=8) == []
    assert "***" in masked


def test_mask_key_leaves_ordinary_words_alone() -> None:
    assert mask_key("model not found: qwen2.5-coder", KEY) == "model not found: qwen2.5-coder"
    assert mask_key("short", "abc") == "short"


def test_an_error_body_echoing_the_key_is_masked_in_the_typed_error() -> None:
    from crucible.providers.errors import AuthError
    from crucible.providers.http import check_status

    async def run() -> str:
        request = httpx.Request("POST", "http://127.0.0.1:1/v1/x", headers={"x-api-key": KEY})
        body = json.dumps({"error": {"message": f"invalid x-api-key {KEY[:20]}..."}})
        response = httpx.Response(401, request=request, content=body.encode())
        try:
            await check_status("p", response)
        except AuthError as exc:
            return str(exc)
        raise AssertionError("no error")

    assert leaked(asyncio.run(run()), run=8) == []
