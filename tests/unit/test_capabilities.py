"""``lsp/capabilities.py`` answers ``initialize`` exactly as the full server (pygls building
capabilities from the registered handlers) answers it, for clients of every kind: the early
answer of ``lsp/early_start.py`` can never drift from the server's."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.written import Written

from crucible.app import App, build_server
from crucible.lsp.capabilities import initialize_result
from crucible.lsp.framing import Frame

CLIENTS: dict[str, dict[str, Any]] = {
    "no capabilities": {},
    "utf-8 first": {"general": {"positionEncodings": ["utf-8", "utf-16"]}},
    "utf-32 only": {"general": {"positionEncodings": ["utf-32"]}},
    "unknown encodings": {"general": {"positionEncodings": ["utf-7", "latin-1"]}},
    "unknown then utf-8": {"general": {"positionEncodings": ["utf-7", "utf-8"]}},
    "empty encodings": {"general": {"positionEncodings": []}},
    "general without encodings": {"general": {"markdown": {"parser": "marked"}}},
    "inline completion": {
        "textDocument": {
            "inlineCompletion": {"dynamicRegistration": False},
            "completion": {"completionItem": {"snippetSupport": True}},
        }
    },
    "completion only (the fallback)": {
        "textDocument": {"completion": {"completionItem": {"snippetSupport": False}}}
    },
    "will save and notebooks": {
        "textDocument": {"synchronization": {"willSave": True, "willSaveWaitUntil": True}},
        "notebookDocument": {"synchronization": {"dynamicRegistration": False}},
    },
    "will save stated false": {
        "textDocument": {"synchronization": {"willSave": False, "didSave": True}},
    },
    "file operations and configuration": {
        "workspace": {
            "configuration": True,
            "workspaceFolders": True,
            "fileOperations": {"willCreate": True, "didRename": True, "didDelete": True},
            "executeCommand": {"dynamicRegistration": False},
        }
    },
    "code actions with resolve": {
        "textDocument": {
            "codeAction": {
                "resolveSupport": {"properties": ["edit"]},
                "codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["quickfix"]}},
            }
        }
    },
}


async def server_answer(tmp_path: Path, capabilities: dict[str, Any]) -> dict[str, Any]:
    """The full server's ``initialize`` result, through the protocol as a client gets it."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    server = build_server(App(config_path=tmp_path / "absent.toml", env=env))
    written = Written()
    server.protocol.set_writer(written)
    params = {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": capabilities}
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    server.protocol.handle_frame(Frame(json.dumps(request).encode()))
    try:
        for _ in range(500):
            answers = [m for m in written.messages if m.get("id") == 1]
            if answers:
                assert "result" in answers[0], answers[0]
                result: dict[str, Any] = answers[0]["result"]
                return result
            await asyncio.sleep(0.01)
        raise AssertionError("the server did not answer initialize")
    finally:
        await server.backend.aclose()


@pytest.mark.parametrize("client", sorted(CLIENTS))
async def test_the_early_answer_is_the_servers(tmp_path: Path, client: str) -> None:
    capabilities = CLIENTS[client]
    assert initialize_result(capabilities) == await server_answer(tmp_path, capabilities)


def test_the_answer_is_a_fresh_copy() -> None:
    first = initialize_result({})
    first["capabilities"]["executeCommandProvider"]["commands"].append("x")
    assert "x" not in initialize_result({})["capabilities"]["executeCommandProvider"]["commands"]
