"""The bytecode cache of attrs' generated methods (``runtime/bytecode_cache.py``), through the
real server process: started twice with the same cache directory, the first start compiles
and saves, the second reads the file, and both answer ``initialize`` and an inline completion
the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_startup import answers_until, frame, spawn
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

CAPABILITIES = {"textDocument": {"inlineCompletion": {"dynamicRegistration": False}}}
TEXT = "def add(a, b):\n    "


def _session(tmp_path: Path, base_url: str, early: bool) -> dict[Any, list[Any]]:
    """One server: initialize, a completion asked at once, the status, shutdown and exit."""
    uri = (tmp_path / "a.py").as_uri()
    provider = {"name": "fake", "kind": "ollama", "base_url": base_url, "model": "m"}
    document = {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}
    initialize = {
        "processId": os.getpid(),
        "rootUri": tmp_path.as_uri(),
        "capabilities": CAPABILITIES,
        "initializationOptions": {"providers": [provider], "completion": {"debounce_ms": 0}},
    }
    completion = {
        "textDocument": {"uri": uri},
        "position": {"line": 1, "character": 4},
        "context": {"triggerKind": 1},
    }
    process = spawn(tmp_path, early)
    assert process.stdin is not None
    try:
        process.stdin.write(
            frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
            + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + frame(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": document},
                }
            )
            + frame(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "textDocument/inlineCompletion",
                    "params": completion,
                }
            )
            + frame({"jsonrpc": "2.0", "id": 3, "method": "crucible/status", "params": {}})
        )
        process.stdin.flush()
        found = answers_until(process, {1, 2, 3})
        process.stdin.write(
            frame({"jsonrpc": "2.0", "id": 4, "method": "shutdown"})
            + frame({"jsonrpc": "2.0", "method": "exit"})
        )
        process.stdin.flush()
        found.update(answers_until(process, {4}))
        assert process.wait(30) == 0  # the save (a thread of its own) is over by then
    finally:
        process.kill()
        process.wait()
    return found


@pytest.mark.parametrize("early", [True, False], ids=["early start", "loaded first"])
def test_a_cold_then_a_warm_start_answer_the_same(tmp_path: Path, early: bool) -> None:
    with FakeProvider(model="m", reply="return a + b") as fake:
        cold = _session(tmp_path, fake.base_url, early)
        files = os.listdir(tmp_path / "cache" / "crucible" / "bytecode")
        warm = _session(tmp_path, fake.base_url, early)

    assert len(files) == 1 and files[0].startswith("attrs-")
    assert cold[1][0]["result"] == warm[1][0]["result"]  # initialize
    assert cold[2][0]["result"] == warm[2][0]["result"]  # the completion
    assert [item["insertText"] for item in warm[2][0]["result"]["items"]] == ["return a + b"]
    cold_counts = cold[3][0]["result"]["startup"]["bytecode_cache"]
    warm_counts = warm[3][0]["result"]["startup"]["bytecode_cache"]
    assert cold_counts["hits"] == 0 and cold_counts["misses"] > 500
    assert warm_counts["hits"] == cold_counts["misses"] and warm_counts["misses"] == 0
    assert warm_counts["uncached"] == cold_counts["uncached"]
