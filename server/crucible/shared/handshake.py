"""The one line each way between the thin client and the daemon, before LSP starts.

Standard library only (the thin client imports it). Each line is one JSON object and ``\\n``::

    client -> daemon   {"crucible": "<version>", "protocol": 1, "env": {...}, "cwd": "...",
                        "config": path|null, "log_level": "INFO", "log_file": path|null}
    daemon -> client   {"crucible": "<version>", "protocol": 1, "accepted": true|false}

``env`` is the part of the editor's environment a session reads: the XDG and HOME variables
(where the user's configuration and cache are), ``CRUCIBLE_*``, every variable whose name says
it holds a secret (``*_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``), ``OTEL_*`` and
``OLLAMA_HOST``, and every variable an ``api_key_env``, ``shared_password_env`` or
``otlp_headers_env`` in the user's configuration file, ``--config`` or the editor's
``initializationOptions`` names (a variable named only in a later ``didChangeConfiguration``
must be named like a secret to reach the session). The daemon's
own environment is that of whichever window started it, so it is never used for a session.

Versions meet by one rule, the same on both sides (``newer``: release numbers, then a final
release over a pre-release, then a local label's numbers, then the string itself, so any two
versions are ordered and exactly one of them is the newer). The version each side says is
its code's (``shared/code_version.py``): ``__version__``, and for a checkout a fingerprint of
its sources, so an edited or pulled checkout is newer than the daemon it started before:

- the same version: accepted;
- the client newer than the daemon: the daemon answers ``accepted: false`` and retires
  (``shared/daemon.py``), and the client starts a daemon of its own version;
- the client older: the daemon serves it when it speaks the same ``protocol`` (this line and
  the LSP session behind it; a hello without the field is protocol 1, the first); else it
  answers ``accepted: false`` and stays, and the client serves its window alone (a plain
  server of its own, ``shared/client.py``).

So two editors with different installed versions end on the newer daemon, once: the older
client never retires it, and the newer never starts a second.

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
# The handshake and the session behind it. Raise it when an older client could no longer be
# served by a newer daemon (the hello's fields, what the relay expects of the session).
PROTOCOL = 1
_RELEASE = re.compile(r"\d+(?:\.\d+)*")
_NUMBER = re.compile(r"\d+")
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
# OLLAMA_HOST: where the default provider is looked for; OTEL_*: the metrics export's target
# and headers when [telemetry] names none (runtime/otlp_target.py).
_ALWAYS = ("HOME", "USER", "LOGNAME", "OLLAMA_HOST")
_PREFIXES = ("XDG_", "CRUCIBLE_", "OTEL_")
# The settings whose value is the NAME of a variable holding a secret: a provider's key, the
# team Redis' password, the metrics export's headers.
_NAMING_KEYS = ("api_key_env", "shared_password_env", "otlp_headers_env")
# Such a line of a TOML file: read without parsing the file (tomllib would cost the thin
# client a few ms, and a variable named twice is harmless).
_KEY_ENV_LINE = re.compile(
    rf"""^\s*(?:{"|".join(_NAMING_KEYS)})\s*=\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""", re.M
)


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
    log_file: str | None = None  # the window's --log-file: its session's records, at its level
    protocol: int = PROTOCOL

    def encode(self) -> bytes:
        message = {
            "crucible": self.version,
            "protocol": self.protocol,
            "env": self.env,
            "cwd": self.cwd,
            "config": self.config,
            "log_level": self.log_level,
            "log_file": self.log_file,
        }
        return json.dumps(message).encode("utf-8") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Hello:
        message = _object(line)
        env, cwd = message.get("env", {}), message.get("cwd", "")
        config, level = message.get("config"), message.get("log_level", "INFO")
        log_file = message.get("log_file")
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise HandshakeError("env: not an object of strings")
        if not isinstance(cwd, str) or not isinstance(level, str):
            raise HandshakeError("cwd, log_level: not strings")
        if config is not None and not isinstance(config, str):
            raise HandshakeError("config: not a string")
        if log_file is not None and not isinstance(log_file, str):
            raise HandshakeError("log_file: not a string")
        return cls(_version(message), env, cwd, config, level, log_file, _protocol(message))


class Welcome(NamedTuple):
    """The daemon's line."""

    version: str
    accepted: bool
    protocol: int = PROTOCOL

    def encode(self) -> bytes:
        message = {"crucible": self.version, "protocol": self.protocol, "accepted": self.accepted}
        return json.dumps(message).encode("utf-8") + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Welcome:
        message = _object(line)
        return cls(_version(message), message.get("accepted") is True, _protocol(message))


def version_order(version: str) -> tuple[tuple[int, ...], int, tuple[int, ...], str]:
    """A key ordering versions: release numbers, a final release over a pre-release of the
    same numbers (``0.2.0`` over ``0.2.0rc1``), then the numbers of a local label (``+dev.
    <mtime_ns>.<count>``, a checkout's code: ``shared/code_version.py``; the label's time
    first, so the checkout changed last is the newer), then the string, so the order is
    total."""
    public, _, local = version.partition("+")
    found = _RELEASE.match(public)
    release = tuple(int(part) for part in found.group().split(".")) if found else ()
    final = 1 if found is not None and found.end() == len(public) else 0
    return release, final, tuple(int(part) for part in _NUMBER.findall(local)), version


def newer(version: str, than: str) -> bool:
    """Whether ``version`` is the newer of the two (module docstring)."""
    return version_order(version) > version_order(than)


def welcome_for(hello: Hello, version: str, retiring: bool) -> tuple[bool, bool]:
    """What a daemon of ``version`` does with ``hello``: (accept it, retire). A retiring
    daemon accepts no one."""
    if hello.version == version:
        return not retiring, False
    if newer(hello.version, version):
        return False, True
    return hello.protocol == PROTOCOL and not retiring, False


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


def _protocol(message: dict[str, object]) -> int:
    protocol = message.get("protocol", 1)  # the first protocol did not say
    if not isinstance(protocol, int) or isinstance(protocol, bool):
        raise HandshakeError("protocol: not an integer")
    return protocol


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
    """Every variable named anywhere in ``options`` (initializationOptions) by a key that
    names one (``api_key_env``, ``shared_password_env``, ``otlp_headers_env``)."""
    found: set[str] = set()
    stack = [options]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _NAMING_KEYS and isinstance(item, str):
                    found.add(item)
                else:
                    stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return found
