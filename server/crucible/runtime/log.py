"""Where log records go. Never stdout: stdout carries the protocol.

::

    stderr       WARNING and above only. Editors show everything a server writes on stderr as
                 errors (Neovim's LSP log, VS Code's output channel), so INFO there would be
                 read as a failure.
    --log-file   every record at the chosen --log-level, full tracebacks included.
    the client   every record at the chosen level as window/logMessage (ClientLogHandler), once
                 the LSP layer connects it after ``initialize``: one line, no traceback.

``ClientLogHandler`` knows nothing of LSP: the LSP layer hands it a ``send(kind, text)``
callable and its event loop (``connect``). Until then records are buffered, bounded, and
flushed on connect. ``emit`` never blocks and never sends: it appends to a bounded queue and
asks the loop to drain it, so a record logged from any thread, or while a message is being
written, cannot recurse or wait. A full queue drops the record and counts it; the client is
told how many were dropped once the queue drains.

The shared daemon (``shared/daemon.py``) serves many editors in one process, so there is no
one client: each session sets ``SESSION_LOG`` to its own ``SessionLog`` (its editor's
``ClientLogHandler`` and its window's ``--log-file``, at its window's ``--log-level``) in the
task that serves it (tasks it starts inherit the value), and the root logger's
``SessionLogRouter`` hands each record to the log of the session that logged it. The daemon's
own file takes every session's records at INFO, the quiet libraries' kept out
(``NotQuietLibraries``), and a session's WARNING+ records go to its own thin client's stderr
too when the client passed it (``SessionStderr``); ``daemon_levels`` opens the root logger
to the most verbose level a session asks for. A record logged outside any session (the
daemon's own work) reaches only the daemon's log file: nothing of one session is ever sent
to another window, written to another window's file or to another window's stderr.
``client_handler()`` answers the session's handler first.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# LSP MessageType values, kept here as plain ints so this module needs no lsprotocol.
MESSAGE_ERROR, MESSAGE_WARNING, MESSAGE_INFO, MESSAGE_LOG = 1, 2, 3, 4

# Libraries whose records below WARNING never go to the client: pygls logs every message it
# sends ("Sending data: ..."), so forwarding them would echo the client's own traffic back to
# it (document text included) and double every message. They still reach --log-file.
_NOT_FOR_CLIENT = ("pygls", "httpx", "httpcore")

_TRACEBACK = "Traceback (most recent call last)"

# Characters of one record kept for the client: the queue is bounded by count (``capacity``),
# and this bounds each entry, so what waits for the client is at most capacity x this. A
# message quoting a whole document or answer is cut; --log-file keeps it whole.
MAX_RECORD_CHARS = 8000

# Records sent per event-loop turn; the rest wait for a later turn, after other work, so a
# burst of logging never holds the loop.
_BATCH = 64

SendLog = Callable[[int, str], None]
Backlog = Callable[[], bool]


def message_type(levelno: int) -> int:
    """The window/logMessage type for a record's level: DEBUG is ``Log``."""
    if levelno >= logging.ERROR:
        return MESSAGE_ERROR
    if levelno >= logging.WARNING:
        return MESSAGE_WARNING
    if levelno >= logging.INFO:
        return MESSAGE_INFO
    return MESSAGE_LOG


def one_line(record: logging.LogRecord) -> str:
    """``name: message`` plus ``(ExcType: message)`` for an exception; never a traceback."""
    lines = record.getMessage().splitlines()
    # Some libraries (pygls) put a formatted traceback into the message itself: cut from the
    # first line of it ("Traceback …", "  + Exception Group Traceback …").
    cut = next((i for i, line in enumerate(lines) if _TRACEBACK in line), len(lines))
    text = "\n".join(lines[:cut]).rstrip()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        detail = " ".join(str(exc).split())
        text += f" ({type(exc).__name__}: {detail})" if detail else f" ({type(exc).__name__})"
    return f"{record.name}: {text}"


def _bounded(text: str) -> str:
    if len(text) <= MAX_RECORD_CHARS:
        return text
    cut = len(text) - MAX_RECORD_CHARS
    return f"{text[:MAX_RECORD_CHARS]} … ({cut} characters cut; --log-file has them)"


class ClientLogHandler(logging.Handler):
    """Log records to the editor as window/logMessage; see the module docstring."""

    def __init__(self, *, capacity: int = 512) -> None:
        super().__init__()
        self.capacity = capacity  # records waiting for the client, at most
        self.dropped = 0  # records never sent (queue full, client congested, send failed)
        self._queue: deque[tuple[int, str]] = deque()
        self._send: SendLog | None = None
        self._congested: Backlog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_scheduled = False
        self._reported_drops = 0
        self._guard = threading.local()  # .sending: this thread is inside send()

    # -- wiring (the LSP layer) -------------------------------------------------------------

    def connect(
        self,
        send: SendLog,
        loop: asyncio.AbstractEventLoop,
        congested: Backlog | None = None,
    ) -> None:
        """Start sending through ``send`` on ``loop``; records buffered so far go first.

        ``congested`` says whether the transport already holds too much unsent data; while it
        does, records are dropped (and counted) instead of piling up behind a slow client.
        """
        with self._queue_lock():
            self._send, self._loop, self._congested = send, loop, congested
            self._schedule()

    def disconnect(self) -> None:
        """Stop sending (the connection is closing); later records are buffered, bounded."""
        with self._queue_lock():
            self._send = self._loop = self._congested = None
            self._drain_scheduled = False

    # -- logging.Handler ---------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._guard, "sending", False):
            return  # logged by the send itself (pygls, the writer): never through ourselves
        if record.levelno < logging.WARNING and record.name.startswith(_NOT_FOR_CLIENT):
            return
        try:
            entry = (message_type(record.levelno), _bounded(one_line(record)))
        except Exception:
            self.handleError(record)
            return
        with self._queue_lock():
            if len(self._queue) >= self.capacity:
                self.dropped += 1
                return
            self._queue.append(entry)
            self._schedule()

    # -- draining (on the event loop) ----------------------------------------------------------

    def _queue_lock(self) -> threading.RLock:
        # logging.Handler's own lock: emit() already holds it when called through handle().
        assert self.lock is not None
        return self.lock

    def _schedule(self) -> None:
        """Ask the loop for a drain, once; the caller holds the lock."""
        if self._drain_scheduled or self._loop is None or not self._queue:
            return
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop has closed (a record from another thread at exit)
            self._send = self._loop = self._congested = None
            return
        self._drain_scheduled = True

    def _drain(self) -> None:
        with self._queue_lock():
            self._drain_scheduled = False
            send, congested = self._send, self._congested
            if send is None:
                return
            taken = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
        self._guard.sending = True
        try:
            for kind, text in taken:
                if congested is not None and congested():
                    with self._queue_lock():
                        self.dropped += 1
                    continue
                send(kind, text)
            self._report_drops(send)
        except Exception:
            # The transport is broken: stop, rather than fail again for every record. The
            # log file and stderr still get everything.
            self.disconnect()
            return
        finally:
            self._guard.sending = False
        with self._queue_lock():
            self._schedule()  # the rest on a later turn, after other work

    def _report_drops(self, send: SendLog) -> None:
        with self._queue_lock():
            new = self.dropped - self._reported_drops
            if new <= 0 or self._queue:
                return
            self._reported_drops = self.dropped
        send(
            MESSAGE_WARNING,
            f"crucible: {new} log messages were dropped (too many, or the client was"
            " reading slowly); --log-file keeps every one",
        )


def configure_logging(
    level: str = "INFO",
    log_file: Path | None = None,
    *,
    client: ClientLogHandler | None = None,
) -> None:
    """Route records as the module docstring says; ``client`` for the language server only
    (``doctor`` prints for people and has no client)."""
    chosen = level_number(level)
    formatter = logging.Formatter(_FORMAT)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(max(logging.WARNING, chosen))
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if client is not None:
        handlers.append(client)
    for handler in handlers:
        if handler is not client:
            handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(chosen)
    _quiet_libraries(chosen)


def _quiet_libraries(lowest: int) -> None:
    """pygls logs every message it sends at INFO, document text and suggestions included, and
    httpx logs every request line: both stay quiet unless ``lowest`` (the most verbose level
    asked for) is DEBUG."""
    quiet = logging.DEBUG if lowest <= logging.DEBUG else logging.WARNING
    for noisy in _NOT_FOR_CLIENT:
        logging.getLogger(noisy).setLevel(quiet)


class SessionStderr(logging.Handler):
    """WARNING and above, in ``configure_logging``'s stderr format, to one window's stderr in
    the shared daemon: ``fd`` is the pipe its thin client passed with the hello
    (``shared/client.py`` ``StderrPipe``). The daemon's event loop writes here, so a write
    never waits: the fd is made non-blocking, and what the pipe cannot take waits in a
    bounded buffer, tried again with the next record and at close. A record that does not fit
    is dropped and counted, and the count said once the pipe takes writes again (an editor
    that never reads its server's stderr costs its own warnings, nothing else)."""

    def __init__(self, fd: int, *, capacity: int = 1 << 16) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter(_FORMAT))
        # Owned from here, whatever follows: ``close`` closes it, once (a second close, or
        # a handler that never wrote, closes nothing more).
        self.fd: int | None = fd
        self.capacity = capacity  # bytes waiting for the pipe, at most
        self.dropped = 0
        self._reported_drops = 0
        self._pending = bytearray()
        try:
            os.set_blocking(fd, False)
        except OSError:  # not a descriptor that can be made non-blocking: never written to
            self.fd = None
            with contextlib.suppress(OSError):
                os.close(fd)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:
            self.handleError(record)
            return
        self._flush()
        if self.dropped > self._reported_drops and not self._pending:
            note = (
                f"crucible: {self.dropped - self._reported_drops} warnings were not written"
                " here (stderr was not being read); --log-file keeps every one\n"
            ).encode()
            self._reported_drops = self.dropped
            self._pending += note
        if len(self._pending) + len(line) > self.capacity:
            self.dropped += 1
            return
        self._pending += line
        self._flush()

    def _flush(self) -> None:
        while self._pending and self.fd is not None:
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                return  # full: the rest waits for the next record
            except OSError:  # the client is gone
                self._pending.clear()
                return
            del self._pending[:written]

    def close(self) -> None:
        with self._queue_lock():
            self._flush()  # once more, without waiting
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
        super().close()

    def _queue_lock(self) -> threading.RLock:
        assert self.lock is not None
        return self.lock


class SessionLog:
    """One session's log in the shared daemon: its editor (a ``ClientLogHandler``) and, when
    its window was started with ``--log-file``, that file, both at the window's
    ``--log-level``; and its WARNING+ records to its thin client's stderr (``SessionStderr``)
    when the client passed it. The quiet libraries (pygls, httpx) reach them below WARNING
    only at DEBUG, as ``configure_logging`` has it for a server of its own."""

    def __init__(
        self,
        level: str,
        client: ClientLogHandler,
        log_file: Path | None = None,
        stderr: SessionStderr | None = None,
    ) -> None:
        self.level = level_number(level)
        self.client = client
        client.setLevel(self.level)
        self.stderr = stderr
        if stderr is not None:
            stderr.setLevel(max(logging.WARNING, self.level))
        self.file: logging.Handler | None = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            self.file = logging.FileHandler(log_file, encoding="utf-8")
            self.file.setFormatter(logging.Formatter(_FORMAT))
            self.file.setLevel(self.level)

    def handle(self, record: logging.LogRecord) -> None:
        if record.levelno < self.level:
            return
        if (
            record.levelno < logging.WARNING
            and self.level > logging.DEBUG
            and record.name.startswith(_NOT_FOR_CLIENT)
        ):
            return
        self.client.handle(record)
        if self.file is not None:
            self.file.handle(record)
        if self.stderr is not None and record.levelno >= self.stderr.level:
            self.stderr.handle(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.stderr is not None:
            self.stderr.close()


def level_number(level: str) -> int:
    """``logging``'s number for a level name; INFO for a name it does not know."""
    chosen = logging.getLevelName(level.upper())
    return chosen if isinstance(chosen, int) else logging.INFO


def daemon_levels(session_levels: list[int], own: int = logging.INFO) -> None:
    """Let records through at the most verbose level any session (or the daemon, ``own``)
    asks for: the root logger's level gates every record before any handler sees it. The
    quiet libraries log below WARNING only while some session is at DEBUG. Each handler
    keeps its own level (the daemon's file stays at ``own``)."""
    lowest = min([own, *session_levels])
    logging.getLogger().setLevel(lowest)
    _quiet_libraries(lowest)


class NotQuietLibraries(logging.Filter):
    """For the daemon's own log file, at INFO: the quiet libraries' records below WARNING
    (pygls logs every message it sends at INFO, document text included) stay out of it even
    while a session at DEBUG lets them through to that session's own log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(_NOT_FOR_CLIENT)


# The log of the session this code runs for, in the shared daemon; unset elsewhere.
SESSION_LOG: contextvars.ContextVar[SessionLog | None] = contextvars.ContextVar(
    "crucible_session_log", default=None
)


class SessionLogRouter(logging.Handler):
    """The daemon's root handler: a record goes to the log of the session it was logged for
    (``SESSION_LOG``), and nowhere when it was logged outside any session."""

    def emit(self, record: logging.LogRecord) -> None:
        session = SESSION_LOG.get()
        if session is not None:
            session.handle(record)


def client_handler() -> ClientLogHandler | None:
    """The ClientLogHandler the LSP layer connects: the session's in the shared daemon, else
    the one installed on the root logger, if any."""
    session = SESSION_LOG.get()
    if session is not None:
        return session.client
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ClientLogHandler):
            return handler
    return None
