"""What a user sees when providers are slow, down, misconfigured or limited, end to end:
suggestions from a slow single provider, one message per problem, requests stopped on a
rejected key, the status notifications an editor draws its status bar from, and the fallback
for a model that cannot fill in the middle."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Editor,
    Session,
    inline,
    open_document,
    provider_options,
    server_status,
    statuses,
    texts,
)
from tests.fakes.provider import FakeProvider, Fault

pytestmark = pytest.mark.e2e

TEXT = "def add(a, b):\n    "
MODEL = "qwen2.5-coder:1.5b-base"
REPLY = "return a + b"


async def ask(editor: Editor, n: int) -> list[str]:
    editor.type(f"x{n} = {n}\n    ")  # a new spot each time: no cache, no type-through
    return texts(await asyncio.wait_for(editor.request(invoked=True), 15))


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> bool:
    ends = time.monotonic() + within
    while not condition():
        if time.monotonic() > ends:
            return False
        await asyncio.sleep(0.02)
    return True


def warnings(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Warning]


def one_provider(base_url: str, kind: str = "ollama", **provider: Any) -> dict[str, Any]:
    """One provider at ``base_url``; its breaker out of the way unless a test wants it."""
    return {
        "providers": [
            {"name": "local", "kind": kind, "base_url": base_url, "model": MODEL, **provider}
        ],
        "completion": {"debounce_ms": 0},
        "cache": {"enabled": False},
        "resilience": {"failure_threshold": 50, "health_probes": False},
    }


@pytest.fixture
def slow() -> Iterator[FakeProvider]:
    with FakeProvider(model=MODEL, reply=REPLY) as fake:
        fake.inject(Fault(latency_ms=2500))  # a cold prompt on a CPU model
        yield fake


async def test_a_sole_provider_with_a_slow_first_token_still_suggests(
    slow: FakeProvider, lsp_session: Session
) -> None:
    options = one_provider(slow.base_url)
    options["resilience"] = {}  # the shipped defaults: a 1.5 s cut-off, a 4 s deadline
    async with lsp_session(options) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        answers = [await ask(editor, n) for n in range(2)]
        status = await server_status(client)

    # Each within the completion deadline: one past it is answered empty, as a timeout.
    assert answers == [[REPLY], [REPLY]]
    assert (status["requests"]["served"], status["requests"]["timeout"]) == (2, 0)
    provider = status["providers"][0]
    assert (provider["state"], provider["failures"], provider["health"]) == ("closed", 0, "slow")
    assert provider["first_byte_ms"]["p50"] >= 2500
    assert status["status"]["state"] == "ready"
    assert "slow" in status["status"]["message"]


async def test_a_refused_provider_is_announced_once_and_again_after_it_came_back(
    lsp_session: Session, refused_port: int
) -> None:
    port = refused_port  # refused until the fake below serves on it, and refused again after
    async with lsp_session(one_provider(f"http://127.0.0.1:{port}")) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert [await ask(editor, n) for n in range(4)] == [[]] * 4
        assert await eventually(lambda: len(warnings(client)) >= 1)
        with FakeProvider(model=MODEL, reply=REPLY, port=port):
            assert await ask(editor, 4) == [REPLY]
        assert [await ask(editor, n) for n in range(5, 8)] == [[]] * 3
        assert await eventually(lambda: len(warnings(client)) >= 2)
        await asyncio.sleep(0.2)  # nothing more comes
        told = warnings(client)

    assert len(told) == 2
    assert told[0] == told[1]
    assert told[0].startswith(f"Crucible: Ollama at http://127.0.0.1:{port} refused the connection")
    assert "ollama serve" in told[0] and "crucible-lsp doctor" in told[0]


async def test_a_rejected_key_stops_calls_and_names_its_variable(lsp_session: Session) -> None:
    secret = "sk-wrong-0123456789abcdef"
    with FakeProvider(model=MODEL, reply=REPLY, require_api_key="sk-right") as fake:
        options = one_provider(f"{fake.base_url}/v1", "openai", api_key_env="CRUCIBLE_E2E_KEY")
        async with lsp_session(options, env={"CRUCIBLE_E2E_KEY": secret}) as client:
            editor = Editor(client, open_document(client, TEXT), TEXT)
            assert [await ask(editor, n) for n in range(4)] == [[]] * 4
            calls_before_change = len(fake.generation_requests())
            assert await eventually(lambda: len(warnings(client)) >= 1)
            status = await server_status(client)
            # A configuration change lifts the stop: the user may have fixed something.
            client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings={"crucible": options})
            )
            assert await ask(editor, 4) == []
            calls_after_change = len(fake.generation_requests())
            assert await eventually(lambda: len(warnings(client)) >= 2)

    assert calls_before_change == 1
    assert calls_after_change == 2
    told = warnings(client)
    assert "CRUCIBLE_E2E_KEY" in told[0] and "rejected the API key" in told[0]
    assert "stops calling 'local'" in told[0]
    assert all(secret not in m and secret[:8] not in m for m in told)
    provider = status["providers"][0]
    assert (provider["health"], status["status"]["state"]) == ("disabled", "offline")
    assert secret not in str(status)


async def test_status_notifications_follow_ready_busy_offline_and_back(
    lsp_session: Session, refused_port: int
) -> None:
    port = refused_port  # held while the fake is stopped: the second fake gets it back
    fake = FakeProvider(model=MODEL, reply=REPLY, port=port).start()
    fake.inject(Fault(latency_ms=300))  # long enough to be seen as busy (100 ms rate limit)
    async with lsp_session(one_provider(fake.base_url)) as client:
        assert await eventually(lambda: bool(statuses(client)))
        editor = Editor(client, open_document(client, TEXT), TEXT)
        assert await ask(editor, 0) == [REPLY]
        fake.stop()
        assert await ask(editor, 1) == []
        assert await eventually(lambda: statuses(client)[-1]["state"] == "offline")
        with FakeProvider(model=MODEL, reply=REPLY, port=port):
            assert await ask(editor, 2) == [REPLY]
            assert await eventually(lambda: statuses(client)[-1]["state"] == "ready")
        seen = list(statuses(client))

    states = [s["state"] for s in seen]
    assert _subsequence(["ready", "busy", "ready", "offline", "ready"], states), states
    assert all(a != b for a, b in itertools.pairwise(seen))  # sent on change only
    offline = next(s for s in seen if s["state"] == "offline")
    assert "refused the connection" in offline["message"]
    assert offline["providers"] == [{"name": "local", "state": "failing"}]
    assert seen[-1]["providers"] == [{"name": "local", "state": "ready"}]


async def test_status_is_disabled_when_completion_is_off(
    fake: FakeProvider, lsp_session: Session
) -> None:
    options = provider_options(fake, enabled=False)
    async with lsp_session(options) as client:
        assert await eventually(lambda: bool(statuses(client)))
        first = statuses(client)[0]
    assert first["state"] == "disabled"
    assert "off" in first["message"]


@pytest.mark.parametrize("kind", ["llamacpp", "ollama"])
async def test_a_model_without_fim_is_named_once_and_still_suggests(
    kind: str, lsp_session: Session
) -> None:
    with FakeProvider(model=MODEL, reply=REPLY) as fake:
        fake.fim_supported = False
        async with lsp_session(one_provider(fake.base_url, kind)) as client:
            answers = []
            for n in range(3):  # code after the cursor too: a fill-in-the-middle request
                text = f"def add{n}(a, b):\n    \n\nprint(add{n}(1, 2))\n"
                uri = open_document(client, text, name=f"m{n}.py")
                result = await inline(client, uri, types.Position(1, 4))
                answers.append(texts(result))
            assert await eventually(lambda: len(warnings(client)) >= 1)
            await asyncio.sleep(0.1)
            status = await server_status(client)
        paths = [(r.path, bool((r.body or {}).get("suffix"))) for r in fake.generation_requests()]

    assert answers == [[REPLY]] * 3
    told = warnings(client)
    assert len(told) == 1 and "cannot fill in the middle" in told[0]
    if kind == "llamacpp":  # /infill once (501), then /completion with the prefix
        assert [p for p, _ in paths] == ["/infill", "/completion", "/completion", "/completion"]
    else:  # with a suffix once (400), then raw without one
        assert [s for _, s in paths] == [True, False, False, False]
    provider = status["providers"][0]
    assert (provider["state"], provider["failures"]) == ("closed", 0)


def _subsequence(wanted: list[str], seen: list[str]) -> bool:
    found = iter(seen)
    return all(state in found for state in wanted)


async def test_a_superseded_prompt_the_next_one_shares_runs_on_to_warm_the_cache(
    lsp_session: Session,
) -> None:
    # One slot and 800 ms of "prompt processing", like a local model on a CPU. Typing on along
    # a suggestion would reuse its stream; a backspace cannot, so the first stream is
    # abandoned before its first byte. (Invoked requests: no debounce to wait out.)
    with FakeProvider(model=MODEL, reply=REPLY, slots=1) as fake:
        fake.inject(Fault(latency_ms=800))
        async with lsp_session(one_provider(fake.base_url)) as client:
            editor = Editor(client, open_document(client, TEXT), TEXT)

            async def supersede(start: int, end: int, new: str) -> None:
                first = editor.request(invoked=True)
                await asyncio.sleep(0.3)  # the provider is "processing" the first prompt
                editor.edit(start, end, new)
                second = editor.request(invoked=True)
                await asyncio.wait_for(asyncio.gather(first, second), 10)

            editor.type("x = 1\n    ret")
            # A backspace: the new prompt shares the old one up to the start of its line.
            await supersede(len(editor.text) - 1, len(editor.text), "")
            # An edit at the top: the new prompt shares nothing a prompt cache could reuse.
            await supersede(0, 0, "# c\n")
            assert await fake.wait_for_async(
                lambda f: (
                    len(f.generation_requests()) == 4
                    and all(r.finished_at is not None for r in f.generation_requests())
                )
            )
            warmed, _, cut, _ = fake.generation_requests()

    assert warmed.chunks_sent >= 1  # it went on to its first byte: the prompt was processed
    assert cut.chunks_sent == 0 and cut.disconnected  # closed while still "processing"
