"""``SessionStderr``: a window's warnings to its thin client's stderr pipe in the shared
daemon, in a plain server's format, never waiting on a pipe nobody reads."""

from __future__ import annotations

import logging
import os

from crucible.runtime.log import ClientLogHandler, SessionLog, SessionStderr


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("crucible.test", level, __file__, 1, message, None, None)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    return data


def test_warnings_only_in_a_plain_servers_format() -> None:
    read_fd, write_fd = os.pipe()
    log = SessionLog("DEBUG", ClientLogHandler(), stderr=SessionStderr(write_fd))
    log.handle(_record(logging.INFO, "an info"))
    log.handle(_record(logging.WARNING, "a warning"))
    log.close()
    lines = _read_all(read_fd).decode().splitlines()
    os.close(read_fd)
    assert len(lines) == 1
    assert lines[0].endswith(" WARNING crucible.test: a warning")


def test_a_full_pipe_drops_and_counts_and_never_blocks() -> None:
    read_fd, write_fd = os.pipe()
    stderr = SessionStderr(write_fd, capacity=4096)
    for i in range(2000):  # ~2 MB: far more than the pipe and the buffer hold
        stderr.handle(_record(logging.WARNING, f"{i} " + "x" * 1000))
    assert stderr.dropped > 0
    _read_all(read_fd)  # the editor reads again
    stderr.handle(_record(logging.WARNING, "after"))
    text = _read_all(read_fd).decode()
    assert f"{stderr.dropped} warnings were not written here" in text
    assert text.rstrip().endswith("crucible.test: after")
    stderr.close()
    os.close(read_fd)


def test_its_descriptor_is_closed_once_however_often_it_is_closed() -> None:
    """The daemon closes the handler on every path and the session's log closes it too
    (``shared/daemon.py``): the second close must not close a descriptor since reused."""
    read_fd, write_fd = os.pipe()
    stderr = SessionStderr(write_fd)
    stderr.close()
    assert os.read(read_fd, 1) == b""  # its end of file: the write end is closed
    reused_read, reused_write = os.pipe()  # the lowest numbers free: likely the same
    try:
        stderr.close()
        os.fstat(reused_read)
        os.fstat(reused_write)  # still open
    finally:
        for fd in (read_fd, reused_read, reused_write):
            os.close(fd)
