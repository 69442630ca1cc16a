"""The ``local`` kind end to end: the real Crucible server process runs its own llama.cpp
server (``crucible/local/``) with the tiny deterministic model, and the suggestion comes from
it. The managed server starts on the first request (not at ``initialize``), and is gone after
shutdown, after its idle period, after Crucible is killed with SIGKILL, and is started again
after it crashes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pytest_lsp import LanguageClient

from tests.e2e.conftest import Session, end_of, inline, open_document, server_status
from tests.e2e.test_startup import answers_until, frame
from tests.llama_server.tiny_model import write_tiny_model

pytestmark = pytest.mark.e2e

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("local-model") / "tiny.gguf")


def options(model: Path, **provider: Any) -> dict[str, Any]:
    local = {"name": "mine", "kind": "local", "model_path": str(model), "threads": 1, **provider}
    return {
        "providers": [local],
        "completion": {
            "debounce_mode": "fixed",
            "debounce_ms": 0,
            "temperature": 0.0,
            "max_tokens": 8,
        },
        "cache": {"prefetch": "off", "enabled": False},
    }


def children_serving(model: Path) -> list[int]:
    """Pids of managed llama.cpp servers serving ``model`` (any parent)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "crucible.local.child" in cmdline and str(model) in cmdline:
            found.append(process.info["pid"])
    return found


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ended(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def managed_until(
    client: LanguageClient, done: Callable[[dict[str, Any]], bool], within_s: float = 10.0
) -> dict[str, Any]:
    """The managed server's ``crucible/status`` entry, once ``done`` says so."""
    deadline = time.monotonic() + within_s
    while True:
        state: dict[str, Any] = (await server_status(client))["providers"][0]["managed"]
        if done(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def no_server_left(tiny_model: Path) -> Iterator[None]:
    yield
    left = children_serving(tiny_model)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"managed llama.cpp servers left running: {left}"


async def test_suggests_from_the_server_it_starts_on_the_first_request(
    tiny_model: Path, lsp_session: Session, tmp_path: Path
) -> None:
    log = tmp_path / "crucible.log"
    async with lsp_session(options(tiny_model), args=("--log-file", str(log))) as client:
        provider = (await server_status(client))["providers"][0]
        before = provider["managed"]
        running_before = children_serving(tiny_model)
        uri = open_document(client, PREFIX + SUFFIX)
        result = await inline(client, uri, end_of(PREFIX))
        after = (await server_status(client))["providers"][0]["managed"]
        assert children_serving(tiny_model) == [after["pid"]]
        # On loopback, and only for whoever has this launch's key (Crucible).
        root = f"http://127.0.0.1:{after['port']}"
        async with httpx.AsyncClient(base_url=root, trust_env=False) as other_user:
            unkeyed = await other_user.post("/infill", json={"input_prefix": "a", "n_predict": 1})

    assert (before["state"], before["starts"], before["pid"]) == ("stopped", 0, None)
    assert provider["model"] == tiny_model.name  # the file served, not the catalogue's default
    assert running_before == []
    assert [item.insert_text for item in result.items] == ["abcdefgh"]
    assert (after["state"], after["starts"]) == ("running", 1)
    assert after["last_start_s"] > 0 and after["port"] > 0
    assert unkeyed.status_code == 401
    # Stopped by Crucible at shutdown, not only killed by the parent-death signal after it.
    assert await gone(after["pid"])
    assert f"stopped the local llama.cpp server (pid {after['pid']}): shutdown" in log.read_text()


async def test_stops_after_the_idle_period_and_starts_again(
    tiny_model: Path, lsp_session: Session
) -> None:
    async with lsp_session(options(tiny_model, idle_stop_s=1)) as client:
        uri = open_document(client, PREFIX + SUFFIX)
        await inline(client, uri, end_of(PREFIX))
        first = (await server_status(client))["providers"][0]["managed"]
        stopped = await managed_until(client, lambda state: state["state"] != "running")
        assert await gone(first["pid"])
        again = await inline(client, uri, end_of(PREFIX))
        second = (await server_status(client))["providers"][0]["managed"]

    assert (stopped["state"], stopped["stops"]) == ("stopped", {"idle": 1})
    assert [item.insert_text for item in again.items] == ["abcdefgh"]
    assert second["starts"] == 2 and second["pid"] != first["pid"]


async def test_a_crashed_server_is_started_again(tiny_model: Path, lsp_session: Session) -> None:
    async with lsp_session(options(tiny_model)) as client:
        uri = open_document(client, PREFIX + SUFFIX)
        await inline(client, uri, end_of(PREFIX))
        first = (await server_status(client))["providers"][0]["managed"]
        os.kill(first["pid"], signal.SIGKILL)
        crashed = await managed_until(client, lambda state: state["state"] != "running")
        # Another document, so the answer cannot come from the first request's flight.
        other = open_document(client, "def sub(a, b):\n    ", name="other.py")
        result = await inline(client, other, end_of("def sub(a, b):\n    "))
        second = (await server_status(client))["providers"][0]["managed"]

    assert crashed["state"] == "failed" and "signal 9" in crashed["last_error"]
    assert [item.insert_text for item in result.items] == ["abcdefgh"]
    assert (second["state"], second["starts"], second["crashes"]) == ("running", 2, 1)


def test_no_server_is_left_when_crucible_is_killed(tmp_path: Path, tiny_model: Path) -> None:
    """SIGKILL gives Crucible no chance to stop anything: the parent-death signal (and the
    child's own watch of its parent) must end the llama.cpp server."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    crucible = subprocess.Popen(
        [sys.executable, "-m", "crucible", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    assert crucible.stdin is not None
    uri = (tmp_path / "a.py").as_uri()
    document = {"uri": uri, "languageId": "python", "version": 1, "text": PREFIX + SUFFIX}
    messages = [
        (
            "initialize",
            1,
            {
                "processId": os.getpid(),
                "rootUri": tmp_path.as_uri(),
                "capabilities": {"textDocument": {"inlineCompletion": {}}},
                "initializationOptions": options(tiny_model),
            },
        ),
        ("initialized", None, {}),
        ("textDocument/didOpen", None, {"textDocument": document}),
        (
            "textDocument/inlineCompletion",
            2,
            {
                "textDocument": {"uri": uri},
                "position": {"line": 1, "character": 4},
                "context": {"triggerKind": 2},
            },
        ),
    ]
    try:
        for method, request_id, params in messages:
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
            if request_id is not None:
                message["id"] = request_id
            crucible.stdin.write(frame(message))
        crucible.stdin.flush()
        answers = answers_until(crucible, {1, 2})
        status = {"jsonrpc": "2.0", "id": 3, "method": "crucible/status", "params": {}}
        crucible.stdin.write(frame(status))
        crucible.stdin.flush()
        answers |= answers_until(crucible, {3})
        items = answers[2][0]["result"]["items"]
        managed = answers[3][0]["result"]["providers"][0]["managed"]
        assert [item["insertText"] for item in items] == ["abcdefgh"], json.dumps(answers[2])
        assert children_serving(tiny_model) == [managed["pid"]]

        crucible.kill()
        crucible.wait(5)
        deadline = time.monotonic() + 5.0
        while not ended(managed["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ended(managed["pid"]), "the llama.cpp server outlived Crucible"
    finally:
        if crucible.poll() is None:
            crucible.kill()
            crucible.wait(5)
