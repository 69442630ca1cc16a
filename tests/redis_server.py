"""A real ``redis-server`` (Debian's package) for the team tests: one per test, on a Unix
socket in the test's temporary directory (no port to collide on), no persistence.

``.ci/run`` installs the package; where it is missing the tests that need it are skipped with
that reason (the README's test command on a machine without it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")
MISSING_REASON = "redis-server is not installed (Debian: apt-get install redis-server)"


class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` again keep the same socket,
    as a Redis restarted by its operator would."""

    def __init__(self, directory: Path, *, password: str | None = None, maxmemory_mb: int = 0):
        assert REDIS_SERVER is not None, MISSING_REASON
        self.directory = directory
        self.socket_path = directory / "redis.sock"
        self.password = password
        self.maxmemory_mb = maxmemory_mb
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        args = [
            REDIS_SERVER,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.maxmemory_mb:
            args += ["--maxmemory", f"{self.maxmemory_mb}mb", "--maxmemory-policy", "noeviction"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.01)
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        self.socket_path.unlink(missing_ok=True)

    def command(self, *args: str) -> bytes:
        """One command over a raw socket (RESP), the reply's raw bytes: the tests' own view
        of the server, independent of the client library under test."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(os.fspath(self.socket_path))
            payload = b""
            for words in ([["AUTH", self.password]] if self.password else []) + [list(args)]:
                payload += f"*{len(words)}\r\n".encode()
                for word in words:
                    data = word.encode()
                    payload += b"$%d\r\n%s\r\n" % (len(data), data)
            sock.sendall(payload)
            time.sleep(0.02)
            chunks = []
            sock.settimeout(0.2)
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except TimeoutError:
                pass
            return b"".join(chunks)

    def ping(self) -> bool:
        try:
            return b"PONG" in self.command("PING")
        except OSError:
            return False
