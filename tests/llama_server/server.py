"""A real llama.cpp server in a child process, for the tests in this folder.

``LlamaServerProcess`` starts ``serve.py`` (llama.cpp's own HTTP server, from the ``xllamacpp``
wheel) on 127.0.0.1 with an ephemeral port and parallel slots, waits until ``/health`` answers
200, and stops it by its PID with a bounded wait (SIGTERM, then SIGKILL). The server's log goes
to a file next to the model, quoted when it fails to start.

A server that dies of SIGILL was built for instructions this CPU lacks: ``start`` raises
``CpuNotSupported`` for that case alone, so the fixture can skip with the reason; any other
failure to start is a ``RuntimeError`` (a broken install must fail, not skip).

The async helpers read the server's own monitoring endpoints: ``/slots`` (which slots are
generating) and ``/metrics`` (tokens generated so far), the evidence for the cancellation and
parallelism tests.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

SERVE = Path(__file__).with_name("serve.py")
_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f")


class CpuNotSupported(Exception):
    """The server binary cannot execute on this CPU (it died with SIGILL)."""


def cpu_flags() -> str:
    """The SIMD flags of this CPU the server build cares about, for the skip reason."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    return " ".join(flag for flag in _CPU_FLAGS if flag in flags) or "none of " + str(_CPU_FLAGS)


class LlamaServerProcess:
    """One llama.cpp server serving ``model`` with ``parallel`` slots."""

    def __init__(
        self, model: Path, workdir: Path, *, parallel: int = 2, ctx: int = 8192, threads: int = 1
    ) -> None:
        self.model = model
        self.parallel = parallel
        self.threads = threads
        self.log_path = workdir / "llama-server.log"
        self._address_file = workdir / "llama-server.address"
        self._ctx = ctx
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.root = ""  # http://127.0.0.1:PORT, once started

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once ``/health`` answers 200, within ``timeout``."""
        command = [
            sys.executable,
            str(SERVE),
            str(self.model),
            str(self._address_file),
            f"--parallel={self.parallel}",
            f"--ctx={self._ctx}",
            # Tests and the client share two cores: one thread, as OpenMP spinning hurts.
            f"--threads={self.threads}",
        ]
        self._address_file.unlink(missing_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        try:
            self.root = self._wait_for_address(deadline)
            self._wait_for_health(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is None:
            return
        if code == -signal.SIGILL:
            raise CpuNotSupported(
                "the llama.cpp server (xllamacpp wheel) died with SIGILL: it uses instructions"
                f" this CPU lacks (it needs x86-64 AVX2, FMA and F16C; this CPU has:"
                f" {cpu_flags()})"
            )
        raise RuntimeError(
            f"the llama.cpp server exited with code {code} before it was ready;"
            f" log {self.log_path}:\n{self.log_tail()}"
        )

    def _wait_for_address(self, deadline: float) -> str:
        while True:
            self._check_alive()
            if self._address_file.exists():
                return self._address_file.read_text().strip().rstrip("/")
            self._wait_or_fail(deadline, "to listen")

    def _wait_for_health(self, deadline: float) -> None:
        with httpx.Client(base_url=self.root, trust_env=False, timeout=2.0) as client:
            while True:
                self._check_alive()
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                self._wait_or_fail(deadline, "to answer /health with 200")

    def _wait_or_fail(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the llama.cpp server took too long {what}; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        time.sleep(0.02)


async def slots(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The server's ``/slots``: one object per slot, ``is_processing`` while generating."""
    response = await client.get("/slots")
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


async def busy_slots(client: httpx.AsyncClient) -> list[int]:
    return [slot["id"] for slot in await slots(client) if slot["is_processing"]]


async def tokens_predicted(client: httpx.AsyncClient) -> int:
    """Tokens the server has generated since it started (``/metrics``), cancelled tasks too."""
    response = await client.get("/metrics")
    response.raise_for_status()
    match = re.search(r"^llamacpp:tokens_predicted_total (\S+)$", response.text, re.MULTILINE)
    assert match, "no llamacpp:tokens_predicted_total in /metrics"
    return int(float(match.group(1)))


async def wait_until_idle(client: httpx.AsyncClient, within_s: float = 5.0) -> float:
    """Wait until no slot is generating; return how long that took (seconds).

    Fails the test when a slot is still busy after ``within_s`` seconds.
    """
    start = time.monotonic()
    while True:
        busy = await busy_slots(client)
        waited = time.monotonic() - start
        if not busy:
            return waited
        if waited > within_s:
            raise AssertionError(f"slots {busy} still generating after {within_s} s")
        await asyncio.sleep(0.01)
