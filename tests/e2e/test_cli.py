"""The command line: --version, doctor, --tcp, --log-file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from tests.fakes.provider import FakeProvider

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "crucible"]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_version_is_fast_and_imports_nothing_heavy() -> None:
    import crucible

    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"crucible-lsp {crucible.__version__}"
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "crucible", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    imported = {line.split("|")[-1].strip() for line in probe.stderr.splitlines()}
    assert not {"pygls", "lsprotocol", "httpx"} & imported


def write_config(path: Path, base_url: str, kind: str = "ollama", extra: str = "") -> Path:
    path.write_text(
        f'[[providers]]\nname = "p1"\nkind = "{kind}"\nbase_url = "{base_url}"\n'
        f'model = "qwen2.5-coder:1.5b-base"\n{extra}'
    )
    return path


def test_doctor_reports_a_healthy_provider_and_masks_secrets(tmp_path: Path) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        config = write_config(
            tmp_path / "c.toml",
            fake.base_url.replace("http://", "http://user:hunter2@"),
            extra='api_key_env = "DOCTOR_KEY"\n',
        )
        done = run(
            "doctor",
            "--config",
            str(config),
            env={"XDG_CONFIG_HOME": str(tmp_path), "DOCTOR_KEY": "sk-doctor-secret-123"},
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] p1" in done.stdout
    assert "hunter2" not in done.stdout and "sk-doctor-secret-123" not in done.stdout
    assert "DOCTOR_KEY" in done.stdout


def test_doctor_fails_when_no_provider_answers_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path / "c.toml", f"http://127.0.0.1:{port}")
    done = run(
        "doctor", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "[FAIL] p1" in done.stdout and "refused" in done.stdout


def test_doctor_names_a_missing_model(tmp_path: Path) -> None:
    with FakeProvider(model="other-model") as fake:
        config = write_config(tmp_path / "c.toml", fake.base_url)
        done = run(
            "doctor", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path
        )
    assert done.returncode == 1
    assert "not found" in done.stdout and "other-model" in done.stdout


def _frame(message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _read_reply(stream: BinaryIO) -> dict[str, object]:
    """The next response, past the server's notifications (window/logMessage)."""
    while "id" not in (message := _read_message(stream)):
        pass
    return message


def _read_message(stream: BinaryIO) -> dict[str, object]:
    length = 0
    while (line := stream.readline().strip()) != b"":
        name, _, value = line.partition(b": ")
        if name.lower() == b"content-length":
            length = int(value)
    return json.loads(stream.read(length))  # type: ignore[no-any-return]


def test_tcp_transport_and_log_file(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "logs" / "crucible.log"
    server = subprocess.Popen(
        [*CLI, "--tcp", "--host", "127.0.0.1", "--port", str(port), "--log-file", str(log)],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not listen"
                time.sleep(0.05)
        with conn, conn.makefile("rb") as replies:
            conn.sendall(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {"processId": None, "rootUri": None, "capabilities": {}},
                    }
                )
            )
            reply = _read_reply(replies)
            assert reply["id"] == 1
            assert "inlineCompletionProvider" in reply["result"]["capabilities"]  # type: ignore[index]
            conn.sendall(_frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}))
            assert _read_reply(replies)["id"] == 2
            conn.sendall(_frame({"jsonrpc": "2.0", "method": "exit"}))
        server.wait(timeout=10)
    finally:
        server.kill()
        server.wait()
        assert server.stderr is not None
        server.stderr.close()
    assert "configuration applied" in log.read_text()
