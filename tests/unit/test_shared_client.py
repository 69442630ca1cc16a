"""The shared daemon's stdlib pieces: the handshake lines, what of the environment a session
gets, the thin client's frame splitter and relay filter, and the daemon's directory checks."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from crucible.lsp.capabilities import initialize_result
from crucible.shared.client import Relay
from crucible.shared.daemon import peer_allowed, peer_uid
from crucible.shared.frames import FrameSplitter
from crucible.shared.handshake import HandshakeError, Hello, Welcome, key_names, session_env
from crucible.shared.place import UnsafeDirectory, daemon_dir, log_path, private_dir


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_hello_and_welcome_round_trip() -> None:
    hello = Hello("1.2", {"HOME": "/h"}, "/w", "/c.toml", "DEBUG")
    assert Hello.decode(hello.encode()) == hello
    assert Welcome.decode(Welcome("1.2", True).encode()) == Welcome("1.2", True)
    for bad in (b"", b"{}\n", b"[1]\n", b"not json\n", b'{"crucible": "1", "env": [1]}\n'):
        with pytest.raises(HandshakeError):
            Hello.decode(bad)


def test_the_session_env_holds_keys_and_paths_not_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[providers]]\napi_key_env = "MY_PROVIDER_PASS"\n'
        '[cache]\nshared_password_env = "TEAM_REDIS"\n'
        '[telemetry]\notlp_headers_env = "COLLECTOR_AUTH"\n'
    )
    environ = {
        "HOME": "/home/u",
        "XDG_CACHE_HOME": "/c",
        "CRUCIBLE_SHARED": "1",
        "OPENAI_API_KEY": "sk-1",
        "GITHUB_TOKEN": "t",
        "MY_PROVIDER_PASS": "p",
        "TEAM_REDIS": "r",
        "COLLECTOR_AUTH": "a",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OLLAMA_HOST": "127.0.0.1:11434",
        "PATH": "/bin",
        "EDITOR": "vim",
    }
    env = session_env(environ, [config, tmp_path / "absent.toml"])
    assert set(env) == {
        "HOME",
        "XDG_CACHE_HOME",
        "CRUCIBLE_SHARED",
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "MY_PROVIDER_PASS",
        "TEAM_REDIS",
        "COLLECTOR_AUTH",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OLLAMA_HOST",
    }


def test_the_splitter_yields_bodies_across_chunks_and_stops_at_damage() -> None:
    stream = frame({"id": 1}) + frame({"id": 2})
    splitter = FrameSplitter()
    bodies = [b for i in range(len(stream)) for b in splitter.feed(stream[i : i + 1])]
    assert [json.loads(b) for b in bodies] == [{"id": 1}, {"id": 2}]
    broken = FrameSplitter()
    assert list(broken.feed(b"Content-Type: x\r\n\r\n{}")) == []
    assert broken.broken


class _Pipe:
    """An editor's stdin (bytes we write) and stdout (bytes the relay writes)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.out = io.BytesIO()


def test_the_relay_answers_initialize_and_drops_the_daemons_duplicate(tmp_path: Path) -> None:
    pipe = _Pipe()
    relay = Relay(pipe.read_fd, pipe.out, tmp_path / "log")  # type: ignore[arg-type]
    ours, theirs = socket.socketpair()
    capabilities: dict[str, Any] = {"general": {"positionEncodings": ["utf-16"]}}
    initialize = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "initialize",
        "params": {"processId": None, "capabilities": capabilities},
    }
    relay.start_reading()
    os.write(pipe.write_fd, frame(initialize))
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(relay.run(ours)))
    thread.start()
    # The daemon gets the frames as the editor sent them, and answers initialize too.
    received = theirs.recv(65536)
    assert received == frame(initialize)
    log = {"jsonrpc": "2.0", "method": "window/logMessage", "params": {"type": 3, "message": "x"}}
    duplicate = {"jsonrpc": "2.0", "id": 7, "result": initialize_result(capabilities)}
    after = {"jsonrpc": "2.0", "id": 8, "result": None}
    theirs.sendall(frame(log) + frame(duplicate) + frame(after))
    os.write(pipe.write_fd, frame({"jsonrpc": "2.0", "id": 8, "method": "shutdown"}))
    os.write(pipe.write_fd, frame({"jsonrpc": "2.0", "method": "exit"}))
    os.close(pipe.write_fd)
    while theirs.recv(65536):  # until the client shuts its side
        pass
    theirs.close()
    thread.join(5)
    assert done == [0]
    expected = frame({"jsonrpc": "2.0", "id": 7, "result": initialize_result(capabilities)})
    assert pipe.out.getvalue() == expected + frame(log) + frame(after)


def test_the_daemon_directory_is_private_and_ours(tmp_path: Path) -> None:
    path = private_dir(tmp_path / "crucible")
    assert path.stat().st_mode & 0o777 == 0o700
    path.chmod(0o755)  # loosened: tightened again
    assert private_dir(path).stat().st_mode & 0o777 == 0o700
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(UnsafeDirectory):
        private_dir(file)
    assert daemon_dir({"XDG_RUNTIME_DIR": "/run/user/5"}) == Path("/run/user/5/crucible")
    assert daemon_dir({"XDG_RUNTIME_DIR": "relative"}).name == f"crucible-{os.getuid()}"
    assert log_path({"XDG_STATE_HOME": "/s"}) == Path("/s/crucible/daemon.log")
    assert log_path({"HOME": "/h"}) == Path("/h/.local/state/crucible/daemon.log")


def test_a_peer_is_allowed_by_its_uid(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert peer_uid(ours) == os.getuid()
        assert peer_allowed(ours, tmp_path)
        assert not peer_allowed(None, tmp_path)


def test_the_editors_options_name_key_variables_too() -> None:
    options = {
        "providers": [{"name": "a", "api_key_env": "LLM_CREDENTIAL"}, {"name": "b"}],
        "cache": {"shared_password_env": "TEAM_REDIS"},
    }
    assert key_names(options) == {"LLM_CREDENTIAL", "TEAM_REDIS"}
    assert key_names(None) == set()
    environ = {"LLM_CREDENTIAL": "k", "TEAM_REDIS": "r", "OTHER": "x"}
    assert session_env(environ, [], key_names(options)) == {
        "LLM_CREDENTIAL": "k",
        "TEAM_REDIS": "r",
    }


def test_versions_are_totally_ordered_and_only_the_newer_retires_a_daemon() -> None:
    from crucible.shared.handshake import PROTOCOL, newer, welcome_for

    ordered = ["0.0.1", "0.1.0rc1", "0.1.0", "0.1.0+local", "0.2.0", "0.10.0", "nightly"]
    for a in ordered:
        for b in ordered:
            if a != b:
                assert newer(a, b) != newer(b, a)  # exactly one of two versions is newer
    assert newer("0.10.0", "0.2.0") and newer("0.1.0", "0.1.0rc1")
    old, new = Hello("0.1.0"), Hello("0.2.0")
    assert welcome_for(new, "0.1.0", retiring=False) == (False, True)  # retire for the newer
    assert welcome_for(old, "0.2.0", retiring=False) == (True, False)  # serve the older
    alien = Hello("0.1.0", protocol=PROTOCOL + 1)
    assert welcome_for(alien, "0.2.0", retiring=False) == (False, False)  # refuse, stay
    assert welcome_for(old, "0.1.0", retiring=True) == (False, False)
    # A hello from before the field was added is protocol 1.
    assert Hello.decode(b'{"crucible": "0.0.9"}\n').protocol == 1


def test_the_splitter_resynchronises_on_a_body_cut_short_by_the_next_frame() -> None:
    cut = b'Content-Length: 30\r\n\r\n{"id": 2,'  # 9 bytes of 30, then the next frame
    stream = frame({"id": 1}) + cut + frame({"id": 3, "method": "shutdown"}) + frame({"id": 4})
    for size in (1, 7, len(stream)):
        splitter = FrameSplitter()
        bodies = [
            b for i in range(0, len(stream), size) for b in splitter.feed(stream[i : i + size])
        ]
        assert [json.loads(b)["id"] for b in bodies] == [1, 3, 4]
        assert not splitter.broken
    junk = FrameSplitter()
    assert [json.loads(b) for b in junk.feed(b"junk\r\n\r\n" + frame({"id": 5}))] == [{"id": 5}]
