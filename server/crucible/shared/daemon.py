"""The per-user daemon behind ``crucible-lsp --stdio --shared``: one process serving every
window's session over a Unix socket, with one cache, one provider pool per provider and one
memory budget (``shared/resources.py``).

``python -m crucible.shared.daemon DIR`` is started by a thin client (``shared/client.py``),
detached: its own session, stdin/stdout on /dev/null, stderr on the log file. It:

1. binds ``DIR/daemon.sock`` (0600, in the 0700 directory ``shared/place.py`` checked) before
   anything else, so the starting client's connect succeeds within milliseconds, and writes
   ``DIR/daemon.pid``;
2. imports the server in a thread, started before anything else (``lsp/early_start.
   load_server``: the same half second a plain start spends) while its loop already accepts
   and greets clients; sessions wait for the import, not for each other;
3. for each connection: checks the peer's uid (``SO_PEERCRED`` on Linux; where the platform
   cannot tell, only the directory's ownership and mode keep others out, and it is checked
   again on every connection) and closes another user's connection unanswered; reads the
   client's hello (``shared/handshake.py``); answers it; and serves the session.

A session is an ``App`` of its own (its documents, configuration, workspace trust, status and
editor channel; the environment the client sent is the one it reads keys and XDG paths from)
and a ``CrucibleLanguageServer`` of its own, served on the connection's streams like a TCP
client (``serve_connection``). Its log records go to its own editor and, when its window was
started with ``--log-file``, to that file, both at its window's ``--log-level``
(``runtime/log.py`` ``SessionLog``), its WARNING+ records to its thin client's stderr (a
pipe the client passed with the hello: ``read_hello``, owned by its ``SessionStderr`` from
then on: ``client_stderr``), and at INFO to the daemon's log file. Its end (``exit``, end of
input, a client killed, a broken frame, its editor's process gone) ends only it; an
exception in it is logged and goes no further.

A hello of a newer version makes the daemon retire: it answers ``accepted: false``, stops
accepting, removes its socket file (the new daemon binds a new one), and exits once its last
session ends; no session is cut. An older client is served when it speaks this protocol, else
refused without retiring (``shared/handshake.py``, ``welcome_for``). With no session for
``CRUCIBLE_DAEMON_IDLE_S`` seconds (default 600) it exits, removing its socket and pid files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from crucible.runtime.log import (
    SESSION_LOG,
    ClientLogHandler,
    NotQuietLibraries,
    SessionLog,
    SessionLogRouter,
    SessionStderr,
    configure_logging,
    daemon_levels,
)
from crucible.shared.code_version import code_version
from crucible.shared.handshake import MAX_LINE_BYTES, HandshakeError, Hello, Welcome, welcome_for
from crucible.shared.place import DaemonPlace, log_path, private_dir

if TYPE_CHECKING:
    from crucible.shared.resources import SharedResources

logger = logging.getLogger(__name__)

IDLE_S = 600.0  # default of CRUCIBLE_DAEMON_IDLE_S
HELLO_S = 10.0  # for a client's hello line, once connected
LOAD_S = 60.0  # for the server import, before a waiting session gives up
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end, or None where the platform cannot say."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    data = sock.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size)
    return int(_PEERCRED.unpack(data)[1])


def peer_allowed(sock: socket.socket | None, directory: Path) -> bool:
    """Whether the peer is this user: by its credentials, else by the directory being still
    ours and closed to everyone else (then only this user can have reached the socket)."""
    if sock is None:
        return False
    uid = peer_uid(sock)
    if uid is not None:
        return uid == os.getuid()
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return info.st_uid == os.getuid() and stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o077


def bind(place: DaemonPlace) -> tuple[socket.socket, int]:
    """The listening socket at ``place.socket`` (0600) and the inode it got."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(place.socket))
    finally:
        os.umask(old_mask)
    os.chmod(place.socket, 0o600)
    listener.listen(64)
    return listener, os.stat(place.socket).st_ino


class Daemon:
    """Accepts, greets and serves sessions until idle or retired (module docstring)."""

    def __init__(
        self,
        place: DaemonPlace,
        listener: socket.socket,
        inode: int,
        idle_s: float,
        loading: concurrent.futures.Future[None] | None = None,
    ) -> None:
        self._place = place
        self._listener = listener
        self._inode = inode
        self._idle_s = idle_s
        self._retiring = False
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._done: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._loading = loading or start_loading()
        self._loaded: asyncio.Future[None] | None = None
        self._shared: SharedResources | None = None
        # The sessions being served, each by its log: from the welcome to the connection's
        # end, through the wait for the server's import. Their count (``sessions_served``)
        # is what keeps the daemon from exiting; ``SharedResources.sessions`` (status
        # ``shared.sessions``) counts a session's ``App`` only, from its building to its close,
        # and cannot stand for this one: it is made after the import the first session waits
        # for (the daemon does not import the server to greet), and a session outlives its
        # ``App`` until its connection has ended.
        self._serving: list[SessionLog] = []
        # The code this process imports, fingerprinted now, before a checkout can change
        # under it: a client whose code is newer retires this daemon (shared/code_version.py).
        self.version = code_version()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._loaded = asyncio.wrap_future(self._loading)
        self._accepting = loop.create_task(self._accept())
        logger.info(
            "daemon %s serving on %s (pid %d)",
            self.version,
            self._place.socket,
            os.getpid(),
        )
        self._arm_idle()
        try:
            await self._done
        finally:
            self._stop_accepting()
            self._remove_files()
            if self._shared is not None:
                await self._shared.aclose()
        logger.info("daemon exiting")
        return 0

    # -- connections -------------------------------------------------------------------------

    async def _accept(self) -> None:
        """Accept connections ourselves, not through ``asyncio.start_unix_server``: its
        transport reads at once with ``recv``, which would lose the descriptor that comes
        with the hello (``read_hello``)."""
        loop = asyncio.get_running_loop()
        self._listener.setblocking(False)
        while True:
            try:
                conn, _ = await loop.sock_accept(self._listener)
            except OSError as exc:  # out of descriptors, say: the next one may do
                logger.warning("accepting a connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._connection(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    def _stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        # Closed once the cancelled accept has removed its reader (its callbacks run first).
        asyncio.get_running_loop().call_soon(self._listener.close)

    async def _connection(self, conn: socket.socket) -> None:
        if not peer_allowed(conn, self._place.directory):
            # The daemon's own record (outside any session): its log file only.
            logger.warning("refused a connection from another user")
            conn.close()
            return
        try:
            line, fds = await asyncio.wait_for(read_hello(conn), HELLO_S)
        except (TimeoutError, OSError) as exc:
            logger.warning("a client's hello was not understood: %s", exc)
            conn.close()
            return
        # The client's stderr pipe has one owner from here: its handler (``client_stderr``),
        # which the session's log closes when it ends, and this on every path (a hello not
        # understood, refused, a session failed or ended). Closing it is idempotent: the
        # descriptor is closed exactly once, whichever path gets there first.
        stderr = client_stderr(fds)
        try:
            await self._greet(conn, line, stderr)
        finally:
            if stderr is not None:
                stderr.close()

    async def _greet(self, conn: socket.socket, line: bytes, stderr: SessionStderr | None) -> None:
        """Answer the hello ``line``, and serve the session it opens, if accepted."""
        try:
            hello = Hello.decode(line)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
        except (HandshakeError, OSError, ValueError) as exc:
            logger.warning("a client's hello was not understood: %s", exc)
            conn.close()
            return
        accepted, retire = welcome_for(hello, self.version, self._retiring)
        if not accepted:
            if retire:
                logger.info("a client of the newer version %s: retiring", hello.version)
                self.retire()
            elif not self._retiring:
                logger.info(
                    "a client of the older version %s, protocol %d: it serves itself",
                    hello.version,
                    hello.protocol,
                )
            writer.write(Welcome(self.version, accepted=False).encode())
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        writer.write(Welcome(self.version, accepted=True).encode())
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            await self._session(hello, reader, writer, stderr)
        except Exception:  # one session's failure is logged, and reaches no other
            logger.exception("a session failed")
            writer.close()
        finally:
            self._session_ended()

    async def _session(
        self,
        hello: Hello,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stderr: SessionStderr | None,
    ) -> None:
        # This task's records (and those of the tasks it starts) go to this session's editor
        # and its window's --log-file, at its window's --log-level, and its warnings to its
        # thin client's stderr.
        log = self._session_log(hello, stderr)
        SESSION_LOG.set(log)
        self._serving.append(log)  # counted from here, before any wait (``sessions_served``)
        daemon_levels([s.level for s in self._serving])
        try:
            assert self._loaded is not None
            await asyncio.wait_for(asyncio.shield(self._loaded), LOAD_S)
            from crucible.app import App, build_server
            from crucible.shared.resources import SharedResources
            from crucible.shared.session_frames import SessionFrames

            if self._shared is None:
                self._shared = SharedResources()
            config = Path(hello.config) if hello.config else None
            app = App(config_path=config, env=hello.env, shared=self._shared)
            server = build_server(app)
            logger.info("session started (%d open)", self.sessions_served)
            requests = server.protocol._request_futures
            code = await server.serve_connection(
                reader, writer, lambda read: SessionFrames(read, requests)
            )
            logger.info("session ended (exit code %d)", code)
        finally:
            self._serving.remove(log)
            daemon_levels([s.level for s in self._serving])
            log.close()

    @staticmethod
    def _session_log(hello: Hello, stderr: SessionStderr | None) -> SessionLog:
        client = ClientLogHandler()
        path = Path(hello.cwd, hello.log_file) if hello.log_file else None
        try:
            return SessionLog(hello.log_level, client, path, stderr)
        except OSError as exc:  # the window's file cannot be written: said in its editor
            log = SessionLog(hello.log_level, client, stderr=stderr)
            token = SESSION_LOG.set(log)
            logger.warning("--log-file %s cannot be written (%s): not logging there", path, exc)
            SESSION_LOG.reset(token)
            return log

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def sessions_served(self) -> int:
        """Sessions welcomed whose connection has not ended (``_serving``)."""
        return len(self._serving)

    def _session_ended(self) -> None:
        if self._serving:
            return
        if self._retiring:
            self._finish()
        else:
            self._arm_idle()

    def _arm_idle(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._idle_s, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        if not self._serving:
            logger.info("no session for %g s: exiting", self._idle_s)
            self._finish()

    def retire(self) -> None:
        """Stop accepting and give the socket's name up; exit after the last session."""
        if self._retiring:
            return
        self._retiring = True
        self._stop_accepting()
        self._remove_files()
        if not self._serving:
            self._finish()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _remove_files(self) -> None:
        """The socket and pid files, when they are still ours (a newer daemon may own them)."""
        with contextlib.suppress(OSError):
            if os.stat(self._place.socket).st_ino == self._inode:
                self._place.socket.unlink()
        with contextlib.suppress(OSError, ValueError):
            if int(self._place.pid.read_text()) == os.getpid():
                self._place.pid.unlink()


def client_stderr(fds: list[int]) -> SessionStderr | None:
    """The handler that owns the client's stderr pipe, the first descriptor sent with its
    hello (``read_hello``), from now; any other descriptor sent is closed at once."""
    for fd in fds[1:]:
        os.close(fd)
    return SessionStderr(fds[0]) if fds else None


async def read_hello(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The hello line and the descriptors that came with it (``SCM_RIGHTS``: the client's
    stderr pipe). The client sends nothing more before the welcome, so reading whatever has
    arrived never takes LSP bytes."""
    loop = asyncio.get_running_loop()
    conn.setblocking(False)
    line, fds = bytearray(), list[int]()
    try:
        while not line.endswith(b"\n") and len(line) <= MAX_LINE_BYTES:
            readable = loop.create_future()
            loop.add_reader(conn.fileno(), readable.set_result, None)
            try:
                await readable
            finally:
                loop.remove_reader(conn.fileno())
            try:
                data, received, _, _ = socket.recv_fds(conn, 1 << 16, 4)
            except BlockingIOError:
                continue
            fds += received
            if not data:
                break
            line += data
    except BaseException:  # timed out, cancelled: the descriptors received are ours to close
        for fd in fds:
            os.close(fd)
        raise
    return bytes(line), fds


def start_loading() -> concurrent.futures.Future[None]:
    """Import the server in a thread (``lsp/early_start.load_server``: it also freezes what
    the import built); the future says when it is done, or why it failed."""
    loading: concurrent.futures.Future[None] = concurrent.futures.Future()

    def load() -> None:
        started = time.perf_counter()
        try:
            from crucible.lsp.early_start import load_server

            load_server()
        except BaseException as exc:
            loading.set_exception(exc)
            return
        logger.info("server loaded in %.0f ms", (time.perf_counter() - started) * 1000)
        loading.set_result(None)
        # Sessions build their servers themselves (not through load_server's factory): the
        # bytecode cache is saved from here, after the load, when something missed.
        from crucible.runtime import bytecode_cache

        bytecode_cache.save_in_background()

    threading.Thread(target=load, name="crucible-load", daemon=True).start()
    return loading


def idle_seconds(env: dict[str, str] | os._Environ[str]) -> float:
    try:
        value = float(env.get("CRUCIBLE_DAEMON_IDLE_S", IDLE_S))
    except ValueError:
        return IDLE_S
    return value if value > 0 else IDLE_S


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m crucible.shared.daemon DIR\n")
        return 2
    loading = start_loading()  # first: the import is most of a cold start's wait
    place = DaemonPlace(private_dir(Path(argv[0])))
    listener, inode = bind(place)
    place.pid.write_text(f"{os.getpid()}\n")
    configure_logging("INFO", log_path(os.environ))
    root = logging.getLogger()
    # stderr is the log file already (the client started us so): records go there once.
    root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler]
    for own in root.handlers:  # the daemon's file: INFO, whatever a session asks for
        own.setLevel(logging.INFO)
        own.addFilter(NotQuietLibraries())
    root.addHandler(SessionLogRouter())
    try:
        daemon = Daemon(place, listener, inode, idle_seconds(os.environ), loading)
        return asyncio.run(daemon.serve())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
