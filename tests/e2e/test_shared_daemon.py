"""The shared daemon end to end: real ``crucible-lsp --stdio --shared`` processes (thin
clients), the daemon they start, and the loopback fake provider.

Each test has its own short XDG_RUNTIME_DIR (a Unix socket path has ~100 bytes), cache, state
and config directories; the ``daemons`` fixture kills every process started for that runtime
directory at the end, whatever the test did.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from tests.e2e.conftest import (
    end_of,
    inline,
    inline_capabilities,
    open_document,
    provider_options,
    server_status,
    watch_status,
)
from tests.fakes.provider import FakeProvider

SHARED = [sys.executable, "-m", "crucible", "--stdio", "--shared"]
# A thin client, or a daemon, that says it is another version.
OLD = "0.0.1-old"
OLD_CLIENT = [
    sys.executable,
    "-c",
    f"import sys, crucible; crucible.__version__ = {OLD!r}; from crucible.cli import main;"
    " sys.exit(main())",
    "--stdio",
    "--shared",
]
OLD_DAEMON = (
    f"import sys, crucible; crucible.__version__ = {OLD!r};"
    " from crucible.shared.daemon import main; sys.exit(main(sys.argv[1:]))"
)


class Place:
    """One test's directories, and the processes started for them."""

    def __init__(self, tmp_path: Path) -> None:
        self.runtime = Path(tempfile.mkdtemp(prefix="crd", dir="/tmp"))
        self.home = tmp_path
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
            "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        }

    @property
    def directory(self) -> Path:
        return self.runtime / "crucible"

    @property
    def socket(self) -> Path:
        return self.directory / "daemon.sock"

    def daemons(self) -> list[psutil.Process]:
        """Live daemon processes serving this test's directory."""
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            cmdline = process.info["cmdline"] or []
            if str(self.directory) in cmdline and process.info["status"] != "zombie":
                found.append(process)
        return found

    def daemon_pid(self) -> int:
        return int((self.directory / "daemon.pid").read_text())

    def wait_daemons(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while (found := self.daemons()) and len(found) != count:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return self.daemons()

    def kill_all(self) -> None:
        """SIGKILL every daemon of this directory and wait until each has ended: ended, not
        reaped. A daemon outlives the thin client that started it, so init (or the nearest
        subreaper) reaps it on its own schedule, here ~2 s later; ``Process.wait`` waited for
        that, at every test's end. A zombie holds no socket, file or port of the next test's."""
        found = self.daemons()
        for process in found:
            try:
                process.kill()
            except psutil.Error:
                pass
        deadline = time.monotonic() + 5
        while not all(map(ended, found)) and time.monotonic() < deadline:
            time.sleep(0.01)
        shutil.rmtree(self.runtime, ignore_errors=True)


def ended(process: psutil.Process) -> bool:
    """The process has exited: it is gone, or a zombie waiting for its parent to reap it."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    found = Place(tmp_path)
    try:
        yield found
    finally:
        found.kill_all()


@asynccontextmanager
async def window(
    place: Place,
    init_options: Any = None,
    *,
    workspace: Path | None = None,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    shutdown: bool = True,
    process_id: int | None = None,
) -> AsyncIterator[LanguageClient]:
    """One editor window: a thin client process, initialized (``process_id``: the editor's,
    which the session watches)."""
    root = workspace or place.home / "workspace"
    root.mkdir(parents=True, exist_ok=True)
    config = ClientServerConfig(
        server_command=command or SHARED, server_env={**place.env, **(env or {})}
    )
    client = await config.start()
    watch_status(client)
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=inline_capabilities(),
                process_id=process_id,
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                initialization_options=init_options,
            )
        )
        try:
            yield client
        finally:
            if shutdown:
                await asyncio.wait_for(client.shutdown_session(), 10)
    finally:
        await client.stop()


async def suggestion(client: LanguageClient, text: str, *, name: str = "main.py") -> str:
    uri = open_document(client, text, name=name)
    result = await inline(client, uri, end_of(text))
    return "".join(str(item.insert_text) for item in result.items)


TEXT = "def add(a, b):\n    "


async def test_two_windows_share_one_daemon_and_its_cache(place: Place, fake: FakeProvider) -> None:
    options = provider_options(fake)
    async with window(place, options) as first, window(place, options) as second:
        one, two = await server_status(first), await server_status(second)
        assert one["shared"]["pid"] == two["shared"]["pid"] == place.daemon_pid()
        assert two["shared"]["sessions"] == 2
        assert len(place.daemons()) == 1
        # Two windows configured alike use one cache and one provider.
        assert two["shared"]["caches"] == 1 and two["shared"]["providers"] == 1

        assert await suggestion(first, TEXT) == "return a + b"
        calls = len(fake.generation_requests())
        assert calls == 1
        # The second window, the same file (the file's name is part of the prompt): served
        # from the cache the first window filled.
        assert await suggestion(second, TEXT) == "return a + b"
        assert len(fake.generation_requests()) == calls
        assert (await server_status(second))["cache"]["hits"] >= 1


async def test_each_window_keeps_its_own_documents_and_configuration(
    place: Place, fake: FakeProvider
) -> None:
    options = provider_options(fake)
    quiet = place.home / "quiet"
    quiet.mkdir()
    (quiet / "crucible.toml").write_text("[completion]\nenabled = false\n")
    async with (
        window(place, options, workspace=quiet) as disabled,
        window(place, options) as enabled,
    ):
        assert (await server_status(disabled))["shared"]["sessions"] == 2
        # The workspace crucible.toml of one window turns completions off there only.
        assert await suggestion(disabled, TEXT) == ""
        assert await suggestion(enabled, TEXT) == "return a + b"
        assert len(fake.generation_requests()) == 1

        # The same URI opened in two windows is two documents: each prompt is its own text.
        fake.reset()
        await suggestion(enabled, "x = 1\n# first window\n", name="same.py")
        async with window(place, options) as third:
            await suggestion(third, "y = 2\n# third window\n", name="same.py")
        prompts = [json.dumps(r.body) for r in fake.generation_requests()]
        assert len(prompts) == 2
        assert "first window" in prompts[0] and "third window" not in prompts[0]
        assert "third window" in prompts[1] and "first window" not in prompts[1]


async def test_a_killed_window_leaves_the_others_served(place: Place, fake: FakeProvider) -> None:
    options = provider_options(fake)
    async with window(place, options) as survivor:
        async with window(place, options, shutdown=False) as doomed:
            open_document(doomed, TEXT, name="doomed.py")
            await server_status(doomed)
            doomed._server.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await doomed._server.wait()  # type: ignore[union-attr]
        for _ in range(100):  # the daemon notices the end of the connection
            if (await server_status(survivor))["shared"]["sessions"] == 1:
                break
            await asyncio.sleep(0.05)
        assert (await server_status(survivor))["shared"]["sessions"] == 1
        assert await suggestion(survivor, TEXT) == "return a + b"
        assert len(place.daemons()) == 1


async def test_the_daemon_exits_after_the_idle_period(place: Place) -> None:
    async with window(place, env={"CRUCIBLE_DAEMON_IDLE_S": "0.5"}) as client:
        # initialize is answered by the client itself: ask the daemon something.
        pid = (await server_status(client))["shared"]["pid"]
        assert pid == place.daemon_pid()
        directory, sock = place.directory.stat(), place.socket.stat()
        assert stat.S_IMODE(directory.st_mode) == 0o700
        assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
        assert time.monotonic() < deadline, "the daemon outlived its idle period"
        await asyncio.sleep(0.05)
    assert not place.socket.exists()
    assert not (place.directory / "daemon.pid").exists()


async def test_a_newer_client_retires_an_older_daemon_without_cutting_its_sessions(
    place: Place,
) -> None:
    place.directory.mkdir(mode=0o700, parents=True)
    old = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OLD_DAEMON,
        str(place.directory),
        env=place.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(200):
            if place.socket.exists():
                break
            await asyncio.sleep(0.01)
        async with window(place, command=OLD_CLIENT) as old_window:
            assert (await server_status(old_window))["version"] == OLD
            async with window(place) as new_window:
                status = await server_status(new_window)
                assert status["version"] != OLD
                assert status["shared"]["pid"] != old.pid
                assert old.returncode is None  # retired, still serving its session
                assert (await server_status(old_window))["version"] == OLD
        # Its last session ended: it exited.
        assert await asyncio.wait_for(old.wait(), 10) == 0
    finally:
        if old.returncode is None:
            old.kill()
            await old.wait()


async def test_a_stale_socket_is_replaced(place: Place) -> None:
    place.directory.mkdir(mode=0o700, parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(place.socket))  # a daemon that died without removing its socket
    dead.close()
    async with window(place) as client:
        status = await server_status(client)
        assert status["shared"]["pid"] == place.daemon_pid()


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_windows_starting_together_end_with_one_daemon(place: Place) -> None:
    initialize = _frame(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"processId": None, "capabilities": {}},
        }
    )
    status = _frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status", "params": {}})
    place.directory.mkdir(mode=0o700, parents=True)
    lock = os.open(place.directory / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as if another window were starting the daemon
    try:
        clients = [
            await asyncio.create_subprocess_exec(
                *SHARED,
                env=place.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        await asyncio.sleep(0.5)
        assert place.daemons() == []  # each waits for the lock before starting one
    finally:
        os.close(lock)
    pids = set()
    for client in clients:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(initialize + _frame({"jsonrpc": "2.0", "method": "initialized"}))
        client.stdin.write(status)
    for client in clients:
        assert client.stdout is not None
        answer = await asyncio.wait_for(_answer(client.stdout, 2), 20)
        pids.add(answer["result"]["shared"]["pid"])
    assert len(pids) == 1
    assert [p.pid for p in place.daemons()] == list(pids)
    for client in clients:
        client.kill()
        await client.wait()


async def _answer(stream: asyncio.StreamReader, msg_id: int) -> dict[str, Any]:
    while True:
        headers = await stream.readuntil(b"\r\n\r\n")
        length = int(headers.split(b":")[1].split(b"\r\n")[0])
        message = json.loads(await stream.readexactly(length))
        if message.get("id") == msg_id and "method" not in message:
            assert isinstance(message, dict)
            return message


async def test_a_client_whose_daemon_dies_exits_non_zero(place: Place) -> None:
    process = await asyncio.create_subprocess_exec(
        *SHARED,
        env=place.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(
        _frame(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "capabilities": {}},
            }
        )
    )
    process.stdin.write(_frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status"}))
    await asyncio.wait_for(_answer(process.stdout, 2), 20)
    os.kill(place.daemon_pid(), signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), 10) == 1
    assert process.stderr is not None
    assert b"daemon ended this session" in await process.stderr.read()


async def test_the_editor_process_ending_ends_its_session_not_the_daemon(place: Place) -> None:
    editor = await asyncio.create_subprocess_exec("sleep", "30")
    watched = await asyncio.create_subprocess_exec(
        *SHARED, env=place.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert watched.stdin is not None and watched.stdout is not None
    params = {"processId": editor.pid, "capabilities": {}}
    watched.stdin.write(
        _frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    )
    watched.stdin.write(_frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status"}))
    await asyncio.wait_for(_answer(watched.stdout, 2), 20)
    async with window(place) as other:
        editor.kill()
        await editor.wait()
        # The watched session ends: its relay exits non-zero, as a server whose editor died.
        assert await asyncio.wait_for(watched.wait(), 10) == 1
        status = await server_status(other)
        assert status["shared"]["sessions"] == 1
        assert status["shared"]["pid"] == place.daemon_pid()


async def test_each_window_sends_its_own_editors_key(place: Place, fake: FakeProvider) -> None:
    options = provider_options(fake, "openai")
    options["providers"][0]["api_key_env"] = "MY_LLM_CREDENTIAL"  # named like no secret
    async with (
        window(place, options, env={"MY_LLM_CREDENTIAL": "first-key"}) as first,
        window(place, options, env={"MY_LLM_CREDENTIAL": "second-key"}) as second,
    ):
        await suggestion(first, TEXT, name="one.py")
        await suggestion(second, TEXT, name="two.py")
        # The same settings with another key: another provider, never the other's key.
        assert (await server_status(second))["shared"]["providers"] == 2
    keys = [r.headers.get("authorization") for r in fake.generation_requests()]
    assert keys == ["Bearer first-key", "Bearer second-key"]


async def _clear_cache(client: LanguageClient) -> dict[str, int]:
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="crucible.clearCache")
    )
    assert isinstance(result, dict)
    return result


async def test_clear_cache_in_one_window_says_it_is_shared_and_tells_the_others(
    place: Place, fake: FakeProvider
) -> None:
    options = provider_options(fake)
    # Another cache, and no sqlite file shared with the first: its write of the answer could
    # land after the clear and serve the first window again (a race under load, not a bug).
    separate = {**options, "cache": {**options["cache"], "memory_mb": 16, "disk": False}}
    async with (
        window(place, options) as first,
        window(place, options) as second,
        window(place, separate) as third,
    ):
        assert await suggestion(first, TEXT) == "return a + b"
        assert await suggestion(third, TEXT) == "return a + b"
        calls = len(fake.generation_requests())
        cleared = await _clear_cache(second)
        # The cache the second window uses is the first's too: it says so.
        assert cleared["shared_with"] == 1 and cleared["l1"] >= 1
        told = "emptied by crucible.clearCache in another window"
        for _ in range(100):
            if any(told in m.message for m in first.log_messages):
                break
            await asyncio.sleep(0.05)
        assert any(told in m.message for m in first.log_messages)
        assert not any(told in m.message for m in third.log_messages + second.log_messages)
        # Cleared for the first window too (an answer belongs to no one window) ...
        assert await suggestion(first, TEXT, name="main.py") == "return a + b"
        assert len(fake.generation_requests()) == calls + 1
        # ... not for the third, whose own cache it is not.
        assert await suggestion(third, TEXT, name="main.py") == "return a + b"
        assert len(fake.generation_requests()) == calls + 1
        assert (await _clear_cache(third))["shared_with"] == 0


async def test_what_follows_initialize_waits_for_the_sessions_configuration(
    place: Place, fake: FakeProvider
) -> None:
    # The client answers initialize itself, so an editor asks at once: the daemon must hold
    # what follows until the session has applied the editor's options. A status request
    # (answered on the spot) right behind initialize, in the same write, shows the
    # configuration it was answered with; twice, the second time from a loaded daemon.
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            *SHARED, env=place.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdin is not None and process.stdout is not None
        params = {
            "processId": None,
            "capabilities": {},
            "initializationOptions": provider_options(fake),
        }
        process.stdin.write(
            _frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
            + _frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + _frame({"jsonrpc": "2.0", "id": 2, "method": "crucible/status"})
        )
        status = (await asyncio.wait_for(_answer(process.stdout, 2), 20))["result"]
        assert [p["name"] for p in status["providers"]] == ["fake-ollama"]
        process.kill()
        await process.wait()
