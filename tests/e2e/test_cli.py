"""The command line: --version, doctor, --tcp, --log-file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, BinaryIO

import psutil
import pytest
from tests.fakes.provider import FakeProvider, Fault

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
        # A base_url carrying credentials is refused (keys live in the environment only), and
        # shown masked; the healthy provider beside it is still checked.
        config = write_config(
            tmp_path / "c.toml",
            fake.base_url,
            extra='api_key_env = "DOCTOR_KEY"\n\n[[providers]]\nname = "p2"\n'
            f'base_url = "{fake.base_url.replace("http://", "http://user:hunter2@")}"\n',
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
    assert "providers[1].base_url: must not carry credentials" in done.stdout


def test_doctor_fails_when_no_provider_answers_and_says_why(
    tmp_path: Path, refused_port: int
) -> None:
    config = write_config(tmp_path / "c.toml", f"http://127.0.0.1:{refused_port}")
    done = run(
        "doctor", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "[FAIL] p1" in done.stdout and "refused" in done.stdout
    assert "Is `ollama serve` running?" in done.stdout
    assert "Not ready: no completion provider can serve" in done.stdout
    report = run(
        "doctor",
        "--json",
        "--config",
        str(config),
        env={"XDG_CONFIG_HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert report.returncode == 1
    parsed = json.loads(report.stdout)
    assert parsed["verdict"] == "not ready"
    assert parsed["providers"][0]["reachable"] is False


def test_doctor_names_a_missing_model(tmp_path: Path) -> None:
    with FakeProvider(model="other-model") as fake:
        config = write_config(tmp_path / "c.toml", fake.base_url)
        done = run(
            "doctor", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path
        )
    assert done.returncode == 1
    assert "not found" in done.stdout and "other-model" in done.stdout


def _effective_toml(stdout: str) -> dict[str, Any]:
    _, _, toml_text = stdout.partition("Effective configuration (secrets masked):")
    assert toml_text, stdout
    return tomllib.loads(toml_text)


def test_doctor_from_a_subfolder_finds_the_workspace_file_and_lists_it(tmp_path: Path) -> None:
    """As an editor would: the workspace is the nearest folder up with crucible.toml (here a
    repository whose root holds it), not the folder doctor was started in."""
    workspace = tmp_path / "project"
    (workspace / ".git").mkdir(parents=True)
    (workspace / "src" / "pkg").mkdir(parents=True)
    user_file = tmp_path / "xdg" / "crucible" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(f"trusted_workspaces = [{json.dumps(str(workspace))}]\n")
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        write_config(workspace / "crucible.toml", fake.base_url)
        done = run(
            "doctor", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd=workspace / "src" / "pkg"
        )
        other = tmp_path / "elsewhere"
        other.mkdir()
        named = run(
            "doctor",
            "--workspace",
            str(workspace),
            env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
            cwd=other,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Workspace: {workspace} (crucible.toml)" in done.stdout
    assert f"workspace file  {workspace / 'crucible.toml'}: loaded" in done.stdout
    assert f"user file       {user_file}: loaded" in done.stdout
    assert "Workspace file: trusted" in done.stdout
    # The file's provider is the one checked, not the default Ollama.
    assert "[ok  ] p1" in done.stdout
    assert named.returncode == 0, named.stdout + named.stderr
    assert f"workspace file  {workspace / 'crucible.toml'}: loaded" in named.stdout


def test_doctor_gives_verdicts_first_with_first_token_latency(tmp_path: Path) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        fake.inject(Fault(latency_ms=200))
        config = write_config(tmp_path / "c.toml", fake.base_url)
        done = run(
            "doctor", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}, cwd=tmp_path
        )
        sent = fake.generation_requests()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    match = re.search(r"first token: (\d+) ms", out)
    assert match is not None, out
    assert 200 <= int(match.group(1)) < 5000
    # ONE tiny request: a few tokens.
    assert len(sent) == 1 and sent[0].body["options"]["num_predict"] <= 8
    configuration = out.index("Effective configuration")
    assert out.index("[ok  ] p1") < out.index("Ready: 1 of 1") < configuration
    assert out.index("reachable:   yes") < configuration
    assert out.index("model:       present") < configuration
    # The configuration is valid TOML, providers as an array of tables.
    effective = _effective_toml(out)
    assert effective["providers"][0]["name"] == "p1"
    assert effective["completion"]["timeout_ms"] == 4000


def test_doctor_says_a_slow_first_token_is_slow_and_names_a_model_without_fim(
    tmp_path: Path,
) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        fake.fim_supported = False
        fake.inject(Fault(latency_ms=700))
        config = write_config(
            tmp_path / "c.toml",
            fake.base_url,
            kind="llamacpp",
            extra="[resilience]\nfirst_byte_timeout_ms = 500\n",
        )
        done = run(
            "doctor", "--json", "--config", str(config), env={"XDG_CONFIG_HOME": str(tmp_path)}
        )
    assert done.returncode == 0, done.stdout + done.stderr  # it still serves, from the prefix
    provider = json.loads(done.stdout)["providers"][0]
    assert provider["slow"] is True and provider["first_token_ms"] >= 700
    assert any("cannot fill in the middle" in p for p in provider["problems"])


def test_doctor_json_is_one_object_for_scripts(tmp_path: Path) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        fake.inject(Fault(latency_ms=200))
        config = write_config(tmp_path / "c.toml", fake.base_url)
        base_url = fake.base_url
        done = run(
            "doctor",
            "--json",
            "--config",
            str(config),
            env={"XDG_CONFIG_HOME": str(tmp_path)},
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)  # the whole of stdout
    assert {"verdict", "workspace", "config_files", "providers", "settings", "problems"} <= set(
        report
    )
    assert report["verdict"] == "ready" and report["problems"] == []
    (provider,) = report["providers"]
    assert provider["name"] == "p1" and provider["can_serve"] is True
    assert provider["reachable"] is True and provider["model_present"] is True
    assert provider["first_token_ms"] >= 200
    assert [(f["source"], f["state"]) for f in report["config_files"]] == [
        ("user file", "not found"),
        ("workspace file", "not found"),
        ("--config", "loaded"),
    ]
    assert report["settings"]["providers"][0]["base_url"] == base_url


def test_doctor_names_a_missing_key_variable_and_fails(tmp_path: Path) -> None:
    with FakeProvider(model="qwen2.5-coder:1.5b-base") as fake:
        config = write_config(
            tmp_path / "c.toml",
            f"{fake.base_url}/v1",
            kind="openai",
            extra='api_key_env = "DOCTOR_MISSING_KEY"\n',
        )
        env = {"XDG_CONFIG_HOME": str(tmp_path), "DOCTOR_MISSING_KEY": ""}
        done = run("doctor", "--config", str(config), env=env, cwd=tmp_path)
        report = run("doctor", "--json", "--config", str(config), env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "API key:     DOCTOR_MISSING_KEY is NOT set" in done.stdout
    assert "Not ready" in done.stdout
    assert report.returncode == 1
    (provider,) = json.loads(report.stdout)["providers"]
    assert provider["api_key"] == {"env": "DOCTOR_MISSING_KEY", "needed": True, "present": False}
    assert any("DOCTOR_MISSING_KEY" in p for p in provider["problems"])


def test_doctor_with_a_wrong_key_says_so_and_never_prints_it(tmp_path: Path) -> None:
    key = "sk-wrong-doctor-key-4242"
    with FakeProvider(model="qwen2.5-coder:1.5b-base", require_api_key="sk-right") as fake:
        config = write_config(
            tmp_path / "c.toml",
            f"{fake.base_url}/v1",
            kind="openai",
            extra='api_key_env = "DOCTOR_KEY"\n',
        )
        env = {"XDG_CONFIG_HOME": str(tmp_path), "DOCTOR_KEY": key}
        done = run("doctor", "--config", str(config), env=env, cwd=tmp_path)
        report = run("doctor", "--json", "--config", str(config), env=env, cwd=tmp_path)
    assert done.returncode == 1 and report.returncode == 1
    assert "refused the API key; check the key in DOCTOR_KEY" in done.stdout
    for output in (done.stdout + done.stderr, report.stdout + report.stderr):
        assert key not in output and key[:8] not in output and key[-8:] not in output


def test_doctor_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("doctor", "--workspace", str(tmp_path / "absent"), cwd=tmp_path).returncode == 2
    assert run("--json", cwd=tmp_path).returncode == 2


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


def listening_port(process: subprocess.Popen[bytes], within_s: float) -> int:
    """The TCP port ``process`` listens on, once it does."""
    deadline = time.monotonic() + within_s
    while True:
        assert process.poll() is None, "the server exited before it listened"
        listening = [
            c.laddr.port
            for c in psutil.Process(process.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        if listening:
            return listening[0]
        assert time.monotonic() < deadline, "server did not listen"
        time.sleep(0.05)


def test_tcp_transport_and_log_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "crucible.log"
    # Port 0: the server binds a port the OS picks, read back from the process's own sockets.
    # A number picked here, released and passed as --port could be taken by another xdist
    # worker's server meanwhile, and this test would then talk to that one.
    server = subprocess.Popen(
        [*CLI, "--tcp", "--host", "127.0.0.1", "--port", "0", "--log-file", str(log)],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port = listening_port(server, within_s=40)  # a start-up at load 14 took over 20 s
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
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
