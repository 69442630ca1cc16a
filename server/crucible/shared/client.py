"""The thin client: ``crucible-lsp --stdio --shared`` relays LSP between the editor and the
per-user daemon (``shared/daemon.py``), starting the daemon when there is none.

Standard library only, and little of it (no asyncio, no pygls, no ``crucible.app``): it is
what the editor waits for on every window's start. Four threads:

- the editor reader reads stdin in chunks and queues each, untouched, for the daemon. It also
  splits the chunks into frames (a copy; only the headers are read, and only small bodies are
  decoded) to answer the first ``initialize`` at once from ``lsp/capabilities.py``, as
  ``lsp/early_start.py`` does, and to notice ``shutdown`` and ``exit``;
- the main thread waits for the editor's ``initialize`` (it comes at once; the API-key
  variables its ``initializationOptions`` name go with the hello), connects (or starts the
  daemon, then connects), says hello (``shared/handshake.py``), and sends what is queued;
  the editor waits for none of it;
- the daemon reader copies the daemon's frames to stdout, except its own answer to the
  ``initialize`` answered early: the editor has one already (a difference is logged to
  stderr, as early start logs it). After that answer it copies bytes without looking;
- the stderr copier (``StderrPipe``) copies the session's warnings, which the daemon writes
  to a pipe whose write end went with the hello, to this process's stderr.

Starting is race-free: a client that finds no daemon takes ``start.lock`` (``fcntl.flock``),
tries again (another window may have started one meanwhile), and only then replaces a stale
socket (nothing accepts on it: its daemon died) and starts a daemon, detached (its own
session, stdio to /dev/null and the log), which binds the socket before anything else; the
lock is released once the daemon accepts, and a thread of the client waits for the daemon it
started (its child until the client exits), so it never lingers as a zombie. Versions meet as
``shared/handshake.py`` says: an older daemon retires when greeted and the client starts its
own; a newer one serves the client, or, speaking another protocol, refuses it and stays, and
the client then serves its window alone: a plain server of its own version, its child, joined
to the relay by a socket pair.

The end: once the editor sent ``exit`` (or closed stdin) and the daemon closed the session,
the client exits 0 (1 for ``exit`` without ``shutdown``, as the server would). The daemon
closing first means it died or ended the session (the editor's process is gone): the reason
goes to stderr, and the exit code is 1, so an editor restarts the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from crucible.lsp.capabilities import early_capabilities, initialize_result
from crucible.shared import handshake
from crucible.shared.code_version import code_version
from crucible.shared.frames import FrameSplitter, decode_object, encode_frame
from crucible.shared.handshake import (
    HandshakeError,
    Hello,
    Welcome,
    key_names,
    newer,
    session_env,
    user_config_file,
)
from crucible.shared.place import DaemonPlace, UnsafeDirectory, daemon_place, log_path

if TYPE_CHECKING:
    import subprocess

CHUNK = 1 << 16
HANDSHAKE_S = 10.0  # the daemon answers at once, even while it loads
DAEMON_START_S = 10.0  # for a new daemon to bind its socket
POLL_S = 0.005
CLOSE_S = 30.0  # after the editor's end, for the daemon to finish the session
# Not ``-m crucible.shared.daemon``: its records would be logged as ``__main__``.
_DAEMON_MAIN = "import sys; from crucible.shared.daemon import main; sys.exit(main(sys.argv[1:]))"
SMALL_BODY = 256  # bodies read for ``shutdown`` / ``exit`` (both are tiny)
STDERR_DRAIN_S = 2.0  # at the end, for the session's last warnings to reach our stderr
# For the editor's initialize (it comes first, at once) before saying hello: the API-key
# variables its initializationOptions name go with the hello.
INITIALIZE_WAIT_S = 2.0


class Relay:
    """The editor's stdio and the daemon's socket, joined (module docstring)."""

    def __init__(self, stdin_fd: int, stdout: BinaryIO, log_file: Path) -> None:
        self._stdin_fd = stdin_fd
        self._stdout = stdout
        self._log_file = log_file
        self._out_lock = threading.Lock()
        self._to_daemon: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._early: tuple[Any, dict[str, Any]] | None = None  # (id, result) answered here
        self._initialize_seen = threading.Event()
        self.key_names: set[str] = set()  # api_key_env names in initializationOptions
        self._shutdown_seen = False
        self._exit_seen = False
        self._editor_done = False

    # -- the editor's side ---------------------------------------------------------------------

    def start_reading(self) -> None:
        threading.Thread(target=self._read_editor, name="editor", daemon=True).start()

    def _read_editor(self) -> None:
        splitter = FrameSplitter()
        while True:
            try:
                data = os.read(self._stdin_fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                self._editor_done = True
                self._to_daemon.put(None)
                return
            if not splitter.broken and not self._exit_seen:
                for body in splitter.feed(data):
                    self._look_at(body)
            self._to_daemon.put(data)

    def _look_at(self, body: bytes) -> None:
        if not self._initialize_seen.is_set():
            message = decode_object(body)
            if message is not None and message.get("method") == "initialize" and "id" in message:
                params = message.get("params")
                if isinstance(params, dict):
                    self.key_names = key_names(params.get("initializationOptions"))
                capabilities = early_capabilities(params)
                if capabilities is not None:
                    result = initialize_result(capabilities)
                    self._early = (message["id"], result)
                    self._write(
                        encode_frame({"jsonrpc": "2.0", "id": message["id"], "result": result})
                    )
                self._initialize_seen.set()  # before the frame is queued for the daemon
            return
        if len(body) <= SMALL_BODY:
            method = (decode_object(body) or {}).get("method")
            if method == "shutdown":
                self._shutdown_seen = True
            elif method == "exit":
                self._exit_seen = self._editor_done = True

    def wait_initialize(self, timeout: float) -> None:
        self._initialize_seen.wait(timeout)

    def _write(self, data: bytes) -> None:
        with self._out_lock:
            self._stdout.write(data)
            self._stdout.flush()

    # -- the daemon's side ---------------------------------------------------------------------

    def run(self, sock: socket.socket) -> int:
        """Relay until the end; returns the exit code (module docstring)."""
        ended = threading.Event()
        code: list[int] = []

        def read_daemon() -> None:
            code.append(self._read_daemon(sock))
            ended.set()
            self._to_daemon.put(None)  # wakes the sender, which may be waiting for the editor

        threading.Thread(target=read_daemon, name="daemon", daemon=True).start()
        while not ended.is_set():
            data = self._to_daemon.get()
            if data is None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                ended.wait(CLOSE_S)
                break
            try:
                sock.sendall(data)
            except OSError:
                ended.wait(CLOSE_S)  # the reader sees the end too, and says why
                break
        return code[0] if code else 0

    def _read_daemon(self, sock: socket.socket) -> int:
        splitter: FrameSplitter | None = FrameSplitter()
        while True:
            try:
                data = sock.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                return self._ended()
            try:
                if splitter is None:
                    self._write(data)
                    continue
                dropped = False
                for body in splitter.feed(data):
                    if not dropped and self._filtered(body):
                        dropped = True  # the early answer's duplicate
                        continue
                    self._write(_frame_of(body))
                if dropped or splitter.broken or self._nothing_to_drop():
                    # From here on bytes are copied as they come, without looking.
                    rest = splitter.unfinished()
                    splitter = None
                    if rest:
                        self._write(rest)
            except OSError:  # the editor is gone
                return 1

    def _nothing_to_drop(self) -> bool:
        return self._initialize_seen.is_set() and self._early is None

    def _filtered(self, body: bytes) -> bool:
        """Whether ``body`` is the daemon's answer to the ``initialize`` answered here."""
        if self._early is None:
            return False
        message = decode_object(body)
        if message is None or "method" in message or message.get("id") != self._early[0]:
            return False
        if message.get("result") != self._early[1]:
            _say(
                "initialize was answered early with "
                f"{json.dumps(self._early[1])}; the daemon answers {json.dumps(message)}"
            )
        return True

    def _ended(self) -> int:
        if self._editor_done:
            return 1 if self._exit_seen and not self._shutdown_seen else 0
        _say(
            "the shared daemon ended this session (it stopped, or the editor process is gone);"
            f" its log: {self._log_file}"
        )
        return 1


def _frame_of(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(f"crucible: {message}\n")
        sys.stderr.flush()


# -- finding, or starting, the daemon -------------------------------------------------------


class Refused(Exception):
    """A newer daemon that cannot serve this client (another protocol) refused it: this
    window is served alone, and the daemon is left serving the others."""


def connect(place: DaemonPlace, hello: Hello, stderr_fd: int | None = None) -> socket.socket | None:
    """A connection to a daemon that accepted ``hello``; None when there is no daemon, a dead
    one, or an older one (which retires on being greeted: ``shared/handshake.py``). Raises
    ``Refused`` when a newer daemon will not serve us. ``stderr_fd`` goes with the hello
    (``SCM_RIGHTS``): the session writes its warnings there (``SessionStderr``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(place.socket))
        sock.settimeout(HANDSHAKE_S)
        _send_hello(sock, hello.encode(), stderr_fd)
        welcome = Welcome.decode(_read_line(sock))
    except (OSError, HandshakeError):
        sock.close()
        return None
    if not welcome.accepted:
        sock.close()
        if newer(welcome.version, hello.version):
            raise Refused(f"the shared daemon {welcome.version} is newer and cannot serve it")
        return None
    sock.settimeout(None)
    return sock


def _send_hello(sock: socket.socket, line: bytes, stderr_fd: int | None) -> None:
    """The hello line, with ``stderr_fd`` attached to its first bytes. A daemon that reads
    it without ``recvmsg`` (an older one) loses the descriptor, which the kernel closes."""
    if stderr_fd is None or not hasattr(socket, "send_fds"):
        sock.sendall(line)
        return
    sent = socket.send_fds(sock, [line], [stderr_fd])
    if sent < len(line):
        sock.sendall(line[sent:])


def _read_line(sock: socket.socket) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        data = sock.recv(1)  # one line, then LSP: nothing past it may be taken
        if not data:
            break
        line += data
    return bytes(line)


def connect_or_start(
    place: DaemonPlace, hello: Hello, start: Callable[[], None], stderr_fd: int | None = None
) -> socket.socket | None:
    """Connect; else, holding the start lock, start a daemon and connect to it. Raises
    ``Refused`` (``connect``)."""
    sock = connect(place, hello, stderr_fd)
    if sock is not None:
        return sock
    with _locked(place.lock):
        sock = connect(place, hello, stderr_fd)  # another window may have started one
        if sock is not None:
            return sock
        with contextlib.suppress(FileNotFoundError):
            place.socket.unlink()  # stale, or an older daemon's, which gave it up already
        start()
        deadline = time.monotonic() + DAEMON_START_S
        while time.monotonic() < deadline:
            sock = connect(place, hello, stderr_fd)
            if sock is not None:
                return sock
            time.sleep(POLL_S)
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for ``process`` in a thread, so that it never lingers as a zombie while this
    client lives (the daemon is our child until we exit; then init, or the nearest
    subreaper, inherits and reaps it)."""
    threading.Thread(target=process.wait, name="reap", daemon=True).start()


def start_daemon(place: DaemonPlace, log_file: Path) -> None:
    """Start a detached daemon: its own session, no terminal, stdio to /dev/null and the log."""
    import subprocess  # only on a cold start

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-c", _DAEMON_MAIN, str(place.directory)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    _reap(daemon)


def serve_alone(relay: Relay, config: Path | None, log_level: str, log_file: Path | None) -> int:
    """Serve this window with a plain server of this version, a child joined to the relay
    by a socket pair (the relay has read stdin already, and drops the child's answer to the
    ``initialize`` it answered early). The child ends when the editor does; it is reaped."""
    import subprocess

    ours, theirs = socket.socketpair()
    command = [sys.executable, "-m", "crucible", "--stdio", "--log-level", log_level]
    command += ["--config", str(config)] if config is not None else []
    command += ["--log-file", str(log_file)] if log_file is not None else []
    env = {k: v for k, v in os.environ.items() if k != "CRUCIBLE_SHARED"}
    child = subprocess.Popen(command, stdin=theirs.fileno(), stdout=theirs.fileno(), env=env)
    theirs.close()
    try:
        return relay.run(ours)
    finally:
        ours.close()
        try:
            child.wait(CLOSE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_client(config: Path | None, log_level: str, log_file: Path | None = None) -> int | None:
    """Relay the editor's stdio to the shared daemon; the exit code, or None when the daemon's
    directory cannot be used (then the caller serves on its own, as without ``--shared``)."""
    env = os.environ
    try:
        place = daemon_place(env)
    except (UnsafeDirectory, OSError) as exc:
        _say(f"no shared daemon ({exc}); serving this window alone")
        return None  # before reading anything: the server alone reads stdin from the start
    daemon_log = log_path(env)
    relay = Relay(sys.stdin.fileno(), sys.stdout.buffer, daemon_log)
    relay.start_reading()  # initialize is answered while we connect
    config_file = config.resolve() if config is not None else None
    session_log = log_file.resolve() if log_file is not None else None
    # With a checkout's fingerprint (an edited one retires the daemon): ~1 ms, taken while
    # the editor's initialize is on its way.
    version = code_version()
    relay.wait_initialize(INITIALIZE_WAIT_S)
    files = [user_config_file(env), *([config_file] if config_file else [])]
    hello = Hello(
        version,
        session_env(env, files, relay.key_names),
        os.getcwd(),
        str(config_file) if config_file else None,
        log_level,
        str(session_log) if session_log else None,
        handshake.PROTOCOL,
    )
    warnings = StderrPipe.open()
    try:
        sock = connect_or_start(
            place,
            hello,
            lambda: start_daemon(place, daemon_log),
            warnings.write_fd if warnings else None,
        )
    except Refused as refused:
        _say(f"{refused}; serving this window alone")
        return serve_alone(relay, config_file, log_level, session_log)
    finally:
        if warnings is not None:
            warnings.given()  # the daemon holds its own copy, or none
    if sock is None:
        _say(f"the shared daemon did not start; its log: {daemon_log}")
        return 1
    try:
        return relay.run(sock)
    finally:
        if warnings is not None:
            warnings.finish(STDERR_DRAIN_S)


class StderrPipe:
    """A pipe whose write end goes to the daemon with the hello, and a thread copying what
    arrives on it to this client's stderr. Not the client's stderr itself: the daemon makes
    the end it writes non-blocking (an editor that never reads stderr must not stall the
    daemon), and that flag belongs to the open file, which the editor may share; the pipe is
    ours alone. An editor that stops reading blocks only this thread."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.write_fd: int | None = write_fd
        self._read_fd = read_fd
        self._copier = threading.Thread(target=self._copy, name="stderr", daemon=True)
        self._copier.start()

    @classmethod
    def open(cls) -> StderrPipe | None:
        try:
            read_fd, write_fd = os.pipe()
        except OSError:
            return None  # the session's warnings stay in its editor and --log-file
        return cls(read_fd, write_fd)

    def given(self) -> None:
        """Close our copy of the write end: the copy ends when the daemon closes its own."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def finish(self, timeout: float) -> None:
        """Wait for what the daemon wrote before the session ended to be copied."""
        self.given()
        self._copier.join(timeout)

    def _copy(self) -> None:
        try:
            while data := os.read(self._read_fd, CHUNK):
                while data:  # blocking: only this thread waits for the editor
                    data = data[os.write(2, data) :]
        except OSError:
            pass  # our stderr is gone: nothing left to say anything on
        finally:
            os.close(self._read_fd)
