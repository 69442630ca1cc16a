"""Requests the server sends the client leave no bookkeeping behind in the protocol, however
they end: answered with an error, or given up (the handler awaiting the answer cancelled)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from tests.fakes.written import Written

from crucible.app import App, build_server
from crucible.lsp.framing import Frame
from crucible.lsp.handlers import lifecycle
from crucible.lsp.server import CrucibleLanguageServer


@pytest.fixture
def server(tmp_path: Path) -> tuple[CrucibleLanguageServer, Written]:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    built = build_server(App(config_path=tmp_path / "absent.toml", env=env))
    written = Written()
    built.protocol.set_writer(written)
    return built, written


def pull(server: CrucibleLanguageServer) -> asyncio.Future[Any]:
    params = types.ConfigurationParams(items=[types.ConfigurationItem(section="crucible")])
    return asyncio.ensure_future(server.workspace_configuration_async(params))


def bookkeeping(server: CrucibleLanguageServer) -> tuple[int, int]:
    protocol = server.protocol
    return len(protocol._request_futures), len(protocol._result_types)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_request_answered_with_an_error_leaves_nothing(
    server: tuple[CrucibleLanguageServer, Written],
) -> None:
    ls, written = server
    for _ in range(3):
        asked = pull(ls)
        await settle()
        request_id = written.messages[-1]["id"]
        error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no"}}
        ls.protocol.handle_frame(Frame(json.dumps(error).encode()))
        with pytest.raises(Exception, match="no"):
            await asyncio.wait_for(asked, 1)
    await settle()
    assert bookkeeping(ls) == (0, 0)


async def test_a_request_given_up_leaves_nothing(
    server: tuple[CrucibleLanguageServer, Written], caplog: pytest.LogCaptureFixture
) -> None:
    ls, written = server
    asked = pull(ls)
    await settle()
    assert bookkeeping(ls) == (1, 1)
    asked.cancel()
    await settle()
    assert bookkeeping(ls) == (0, 0)
    # A late answer is no error: it finds nobody waiting.
    late = {"jsonrpc": "2.0", "id": written.messages[-1]["id"], "result": [{}]}
    with caplog.at_level(logging.DEBUG):
        ls.protocol.handle_frame(Frame(json.dumps(late).encode()))
    assert bookkeeping(ls) == (0, 0)
    # Nothing an editor would show as an error (pygls warned "unknown message id" on stderr).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


async def test_an_answered_request_leaves_nothing(
    server: tuple[CrucibleLanguageServer, Written],
) -> None:
    ls, written = server
    asked = pull(ls)
    await settle()
    answer = {"jsonrpc": "2.0", "id": written.messages[-1]["id"], "result": [{"a": 1}]}
    ls.protocol.handle_frame(Frame(json.dumps(answer).encode()))
    assert list(await asyncio.wait_for(asked, 1)) == [{"a": 1}]
    await settle()
    assert bookkeeping(ls) == (0, 0)


async def test_a_configuration_pull_the_client_never_answers_is_given_up(
    server: tuple[CrucibleLanguageServer, Written], monkeypatch: pytest.MonkeyPatch
) -> None:
    ls, written = server
    monkeypatch.setattr(lifecycle, "CONFIGURATION_ANSWER_S", 0)
    await asyncio.wait_for(lifecycle._pull_configuration(ls), 1)
    await settle()
    assert written.messages[-1]["method"] == "workspace/configuration"
    assert bookkeeping(ls) == (0, 0)


async def test_a_pull_answered_after_a_push_does_not_undo_it(
    server: tuple[CrucibleLanguageServer, Written],
) -> None:
    # Neovim 0.12 answers the pull after a plugin's didChangeConfiguration sent meanwhile.
    ls, written = server
    pulling = asyncio.ensure_future(lifecycle._pull_configuration(ls))
    await settle()
    asked = written.messages[-1]
    assert asked["method"] == "workspace/configuration"
    lifecycle._apply_pushed(ls, {"completion": {"enabled": False}})
    stale = {"jsonrpc": "2.0", "id": asked["id"], "result": [{"completion": {"enabled": True}}]}
    ls.protocol.handle_frame(Frame(json.dumps(stale).encode()))
    await asyncio.wait_for(pulling, 1)
    assert ls.backend.settings.completion.enabled is False


async def test_a_pull_answer_applies_when_nothing_came_meanwhile(
    server: tuple[CrucibleLanguageServer, Written],
) -> None:
    ls, written = server
    pulling = asyncio.ensure_future(lifecycle._pull_configuration(ls))
    await settle()
    answer = {
        "jsonrpc": "2.0",
        "id": written.messages[-1]["id"],
        "result": [{"completion": {"enabled": False}}],
    }
    ls.protocol.handle_frame(Frame(json.dumps(answer).encode()))
    await asyncio.wait_for(pulling, 1)
    assert ls.backend.settings.completion.enabled is False


async def test_a_server_dropped_after_serving_is_freed(tmp_path: Path) -> None:
    """pygls's lru_cache on ``get_result_type``/``get_message_type`` held every protocol that
    looked a method up: the shared daemon kept each ended session's server and App."""
    import gc
    import weakref

    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    built = build_server(App(config_path=tmp_path / "absent.toml", env=env))
    built.protocol.set_writer(Written())
    built.protocol.get_message_type(types.TEXT_DOCUMENT_HOVER)
    built.protocol.get_result_type(types.WORKSPACE_CONFIGURATION)
    assert built.protocol.get_result_type(types.WORKSPACE_CONFIGURATION) is not None
    gone = weakref.ref(built)
    del built
    gc.collect()
    assert gone() is None
