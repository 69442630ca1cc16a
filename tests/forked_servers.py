"""Server processes forked from a preloaded interpreter, so an end-to-end test does not pay
the server's import (~0.6 s of CPU, most of it lsprotocol building its classes) every time.

Why: the default test run starts the real server ~300 times; the import was two thirds of the
run's time. Each test still gets its own, fresh server process running ``crucible.cli.main``
over its own stdin/stdout, exactly as an editor's would; only the interpreter that reaches
``main`` is a fork of one that already imported the server (as ``os.fork`` after an import is
what every pre-fork server does). What differs from a spawned server, and so stays with
spawned ones: the process that pytest-lsp starts is a stand-in (``forked_client.py``), so its
pid, RSS and CPU are not the server's; tests of start-up, of the process itself (memory,
signals, the parent watch) and of the command line spawn ``python -m crucible`` themselves.
``CRUCIBLE_TEST_FORK=0`` spawns every server the ordinary way.

How, in order:

1. ``ForkServer.start()`` runs ``python -m tests.forked_servers SOCKET``: it imports the server
   (``early_start.load_server``, the same import an editor's server does), listens on a Unix
   socket in the test session's temporary directory, and does nothing else: no thread, no
   event loop, nothing to inherit but the imported modules.
2. A test's server command is ``python -S tests/forked_client.py SOCKET ARGS…`` (stdlib only,
   ~15 ms): it sends its stdin, stdout and stderr (SCM_RIGHTS), its environment, working
   directory and ARGS.
3. This process forks; the child takes those descriptors as 0, 1 and 2, that environment and
   directory, and runs ``crucible.cli.main(ARGS)``; its exit status goes back to the stand-in,
   which exits with it. A signal the stand-in gets (pytest-lsp terminating it) is passed on.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLIENT = Path(__file__).with_name("forked_client.py")
_MAX_REQUEST = 1 << 20


def enabled() -> bool:
    return os.environ.get("CRUCIBLE_TEST_FORK", "1") != "0"


class ForkServer:
    """The preloaded interpreter, for one test session."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_servers", str(self.socket_path)],
            cwd=root,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self.socket_path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fork server did not start")
            time.sleep(0.02)

    def command(self, server_args: list[str]) -> list[str]:
        """The command that gives a test a forked server run with ``server_args``."""
        return [sys.executable, "-S", str(CLIENT), str(self.socket_path), *server_args]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)


def _serve(socket_path: str) -> None:
    from crucible.lsp.early_start import load_server

    load_server()  # the import every server process would make; frozen, as there
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    # Children are reaped as they end, from the loop below: SIGCHLD only wakes it.
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    waiting: dict[int, socket.socket] = {}  # child pid -> its stand-in's connection
    while True:
        try:
            ready, _, _ = select.select([listener, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in ready:
            wake_read.recv(4096)
            _reap(waiting)
        if listener in ready:
            connection, _ = listener.accept()
            pid = _fork_one(connection, listener, wake_read, wake_write)
            if pid is None:
                connection.close()
            else:
                waiting[pid] = connection


def _reap(waiting: dict[int, socket.socket]) -> None:
    while waiting:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            code = os.waitstatus_to_exitcode(status)
            try:
                connection.sendall(b"exit %d\n" % code)
            except OSError:
                pass
            connection.close()


def _fork_one(connection: socket.socket, *inherited: socket.socket) -> int | None:
    fds = array.array("i")
    message, ancillary, _, _ = connection.recvmsg(_MAX_REQUEST, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    request = json.loads(message)
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        connection.sendall(b"pid %d\n" % pid)
        return pid
    # The child: become the server the stand-in asked for.
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        for owned in (connection, *inherited):
            owned.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["crucible", *request["args"]]
        from crucible.cli import main

        code = main(request["args"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    _serve(sys.argv[1])
