"""The one line each way between the thin client and the daemon, before LSP starts.

Standard library only (the thin client imports it). Each line is one JSON object and ``\\n``::

    client -> daemon   {"crucible": "<version>", "env": {...}, "cwd": "...", "config": path|null,
                        "log_level": "INFO"}
    daemon -> client   {"crucible": "<version>", "accepted": true|false}

``env`` is the part of the editor's environment a session reads: the XDG and HOME variables
(where the user's configuration and cache are), ``CRUCIBLE_*``, every variable whose name says
it holds a secret (``*_KEY``, ``*_TOKEN``, ``*_SECRET``), and every variable an
``api_key_env = "..."`` in the user's configuration file, ``--config`` or the editor's
``initializationOptions`` names (a variable named only in a later ``didChangeConfiguration``
must be named like a secret to reach the session). The daemon's
own environment is that of whichever window started it, so it is never used for a session.

A daemon of another version answers ``accepted: false`` and retires (``shared/daemon.py``):
the client then starts one of its own version.

Errors: ``HandshakeError`` for a line that is not such an object (too long, not JSON, a
field of the wrong type).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

MAX_LINE_BYTES = 1 << 20
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET)$", re.IGNORECASE)
_ALWAYS = ("HOME", "USER", "LOGNAME")
_PREFIXES = ("XDG_", "CRUCIBLE_")
# An ``api_key_env = "NAME"`` line of a TOML file: read without parsing the file (tomllib
# would cost the thin client a few ms, and a variable named twice is harmless).
_KEY_ENV_LINE = re.compile(r"""^\s*api_key_env\s*=\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""", re.M)


class HandshakeError(Exception):
    """A handshake line that is not what this module writes."""


class Hello(NamedTuple):
    """The client's line. (Named tuples, not dataclasses: importing ``dataclasses`` costs the
    thin client ~5 ms.)"""

    version: str
    env: dict[str, str] = {}  # noqa: RUF012 (a NamedTuple default; never mutated)
    cwd: str = ""
    config: str | None = None
    log_level: str = "INFO"

    def encode(self) -> bytes:
        message = {
            "crucible": self.version,
            "env": self.env,
            "cwd": self.cwd,
            "config": self.config,
            "log_level": self.log_level,
        }
        return json.dumps(message).encode("utf-8") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Hello:
        message = _object(line)
        env, cwd = message.get("env", {}), message.get("cwd", "")
        config, level = message.get("config"), message.get("log_level", "INFO")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise HandshakeError("env: not an object of strings")
        if not isinstance(cwd, str) or not isinstance(level, str):
            raise HandshakeError("cwd, log_level: not strings")
        if config is not None and not isinstance(config, str):
            raise HandshakeError("config: not a string")
        return cls(_version(message), env, cwd, config, level)


class Welcome(NamedTuple):
    """The daemon's line."""

    version: str
    accepted: bool

    def encode(self) -> bytes:
        message = {"crucible": self.version, "accepted": self.accepted}
        return json.dumps(message).encode("utf-8") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Welcome:
        message = _object(line)
        return cls(_version(message), message.get("accepted") is True)


def _object(line: bytes) -> dict[str, object]:
    if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
        raise HandshakeError("no complete handshake line")
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise HandshakeError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise HandshakeError("not a JSON object")
    return message


def _version(message: dict[str, object]) -> str:
    version = message.get("crucible")
    if not isinstance(version, str):
        raise HandshakeError("no version")
    return version


def session_env(
    environ: Mapping[str, str], config_files: Iterable[Path], names: Iterable[str] = ()
) -> dict[str, str]:
    """The variables of ``environ`` a session reads (module docstring); ``names`` are those
    the editor's ``initializationOptions`` name in ``api_key_env``."""
    named = {*_ALWAYS, *names}
    for path in config_files:
        try:
            named.update(_KEY_ENV_LINE.findall(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue  # the session reports an unreadable file when it loads it
    return {
        name: value
        for name, value in environ.items()
        if name in named or name.startswith(_PREFIXES) or _SECRET_NAME.search(name)
    }


def user_config_file(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/crucible/config.toml`` (else ``~/.config``), as
    ``config/loader.py`` ``user_config_path`` finds it."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(environ.get("HOME") or "~") / ".config"
    return base.expanduser() / "crucible" / "config.toml"


def key_names(options: object) -> set[str]:
    """Every ``api_key_env`` string value anywhere in ``options`` (initializationOptions)."""
    found: set[str] = set()
    stack = [options]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "api_key_env" and isinstance(item, str):
                    found.add(item)
                else:
                    stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return found
