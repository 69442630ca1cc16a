"""Where the shared daemon lives: its private directory, socket, start lock, pid and log.

Standard library only: the thin client (``shared/client.py``) imports it on every editor
start. ::

    $XDG_RUNTIME_DIR/crucible/      0700, the user's own (else <tempdir>/crucible-<uid>/)
        daemon.sock                 0600, the daemon's Unix socket
        start.lock                  fcntl.flock'ed by whoever starts a daemon (one at a time)
        daemon.pid                  the serving daemon's pid (for people and tests)
    $XDG_STATE_HOME/crucible/daemon.log   the daemon's log (else ~/.local/state/crucible/)

The directory is what keeps other users out on every platform: it must belong to this user
and grant nothing to group or others, or ``private_dir`` refuses it (``UnsafeDirectory``)
rather than use it; a directory of ours with a looser mode is tightened. The fallback under
the shared temporary directory is named for the uid, so another user can at most pre-create
it, and then it is refused, never used.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

SOCKET_NAME = "daemon.sock"
LOCK_NAME = "start.lock"
PID_NAME = "daemon.pid"
LOG_NAME = "daemon.log"


class UnsafeDirectory(Exception):
    """The daemon's directory belongs to someone else, or is not a directory."""


class DaemonPlace(NamedTuple):
    """The files of one user's daemon."""

    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def pid(self) -> Path:
        return self.directory / PID_NAME


def daemon_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_RUNTIME_DIR/crucible``, else a directory named for the uid in the temp dir."""
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):
        return Path(runtime) / "crucible"
    import tempfile  # ~5 ms, for the fallback only

    return Path(tempfile.gettempdir()) / f"crucible-{os.getuid()}"


def private_dir(path: Path) -> Path:
    """``path``, created 0700 if absent; raises ``UnsafeDirectory`` unless it is ours."""
    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except FileNotFoundError:  # $XDG_RUNTIME_DIR itself is missing: make it, ours too
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def daemon_place(env: Mapping[str, str]) -> DaemonPlace:
    return DaemonPlace(private_dir(daemon_dir(env)))


def log_path(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/crucible/daemon.log`` (else ``~/.local/state/crucible/``)."""
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else Path(env.get("HOME") or Path.home())
    if not os.path.isabs(state):
        base = base / ".local" / "state"
    return base / "crucible" / LOG_NAME
