"""Where configuration comes from, and how the sources combine into one ``Settings``.

Single responsibility: gather the raw tables (TOML files, ``initializationOptions``,
``workspace/didChangeConfiguration``), merge them in order and hand the result to
``validate.build_settings``. Sources, later wins::

    defaults < user file ($XDG_CONFIG_HOME/crucible/config.toml) < workspace crucible.toml
             < --config PATH < initializationOptions < didChangeConfiguration

One schema, snake_case keys, identical in TOML and JSON. Untyped dicts stop in this package:
everything past ``load_settings`` / ``build_settings`` sees frozen dataclasses. Nothing here
raises on bad input; every problem is a ``ConfigError`` naming its key (a file's problems name
the file).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from crucible.config.settings import ProviderSettings, Settings
from crucible.config.validate import LoadResult, build_settings, looks_like_key, mask_url
from crucible.errors import ConfigError

__all__ = [
    "LoadResult",
    "build_settings",
    "describe",
    "file_layers",
    "load_settings",
    "merge_layers",
    "read_toml",
    "unwrap_client_settings",
]

SECTION = "crucible"
WORKSPACE_FILE = "crucible.toml"


def read_toml(path: Path) -> tuple[dict[str, Any], list[ConfigError]]:
    """The table in ``path``; a missing file is simply empty, a broken one is an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, []
    except OSError as exc:  # a directory, no permission, …
        return {}, [ConfigError(str(path), f"cannot be read: {exc.strerror or exc}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return {}, [ConfigError(str(path), f"is not UTF-8 text (line {line}); file ignored")]
    try:
        # tomllib's message already ends with "(at line N, column M)".
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return {}, [ConfigError(str(path), f"is not valid TOML: {exc}; file ignored")]


def user_config_path(env: Mapping[str, str] = os.environ) -> Path | None:
    """``$XDG_CONFIG_HOME/crucible/config.toml``, or under ``~/.config`` as XDG specifies."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / SECTION / "config.toml"
    home = env.get("HOME")
    if home:
        return Path(home) / ".config" / SECTION / "config.toml"
    try:
        return Path.home() / ".config" / SECTION / "config.toml"
    except RuntimeError:  # no home directory to be found: there is simply no user file
        return None


def file_layers(
    *,
    workspace_root: Path | None,
    config_path: Path | None,
    env: Mapping[str, str] = os.environ,
) -> tuple[list[tuple[str, dict[str, Any]]], list[ConfigError]]:
    """``(source, table)`` for each file that was read, in merge order, and the errors met.

    The user and workspace files are optional; a ``--config`` file the user named but that
    does not exist is an error. ``source`` is a label with the path, for logs and ``doctor``.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    errors: list[ConfigError] = []
    candidates: list[tuple[str, Path]] = []
    user = user_config_path(env)
    if user is not None:
        candidates.append(("user file", user))
    if workspace_root is not None:
        candidates.append(("workspace file", workspace_root / WORKSPACE_FILE))
    if config_path is not None:
        if config_path.exists():
            candidates.append(("--config", config_path))
        else:
            errors.append(
                ConfigError(str(config_path), "--config names a file that does not exist")
            )
    for label, path in candidates:
        table, problems = read_toml(path)
        errors.extend(problems)
        if not problems and path.is_file():
            layers.append((f"{label} {path}", table))
    return layers, errors


def unwrap_client_settings(value: Any) -> dict[str, Any] | None:
    """The raw table in an ``initializationOptions`` or ``didChangeConfiguration`` payload.

    Clients send either the bare schema object or ``{"crucible": {...}}`` (VS Code's section
    form); both are accepted. ``None`` when there is nothing usable (absent, not an object).
    """
    if not isinstance(value, Mapping):
        return None
    if SECTION in value:
        inner = value[SECTION]
        return dict(inner) if isinstance(inner, Mapping) else None
    return dict(value)


def merge_layers(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Deep-merge tables, later wins. Tables merge key by key; arrays (``providers``,
    ``roles``) are replaced wholesale, since concatenating provider lists would make a
    workspace unable to override the user's providers. ``None`` (JSON null, "unset in the
    editor") never overrides. The inputs are not modified."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if isinstance(layer, Mapping):
            _merge_into(merged, layer)
    return merged


def _merge_into(target: dict[str, Any], layer: Mapping[Any, Any]) -> None:
    for key, value in layer.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            below = target.get(key)
            if not isinstance(below, dict):
                below = target[key] = {}
            _merge_into(below, value)
        elif isinstance(value, list | tuple):
            target[key] = [_copy(v) for v in value]
        else:
            target[key] = value


def _copy(value: Any) -> Any:
    """A copy of nested tables and arrays, so later edits never reach a caller's layer."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def load_settings(
    *,
    workspace_root: Path | None = None,
    config_path: Path | None = None,
    initialization_options: Any = None,
    client_settings: Any = None,
    env: Mapping[str, str] = os.environ,
) -> LoadResult:
    """Every source in order -> ``Settings``. Call again with the new ``client_settings`` on
    ``workspace/didChangeConfiguration``; the files are re-read, which is cheap and picks up
    edits made since start."""
    layers, errors = file_layers(workspace_root=workspace_root, config_path=config_path, env=env)
    tables: list[Mapping[str, Any]] = [table for _, table in layers]
    for payload in (initialization_options, client_settings):
        table = unwrap_client_settings(payload)
        if table is not None:
            tables.append(table)
    result = build_settings(merge_layers(tables))
    return LoadResult(result.settings, (*errors, *result.errors))


def describe(settings: Settings, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """A JSON-able view of ``settings`` for ``crucible-lsp doctor``, with secrets masked:
    ``base_url`` userinfo and query values become ``***``; ``api_key_env`` shows the variable's
    NAME and whether it is set, never its value."""
    view: dict[str, Any] = _plain(settings)
    view["providers"] = [_describe_provider(p, env) for p in settings.providers]
    return view


def _describe_provider(provider: ProviderSettings, env: Mapping[str, str]) -> dict[str, Any]:
    view: dict[str, Any] = _plain(provider)
    view["base_url"] = mask_url(provider.base_url)
    name = provider.api_key_env
    if name is None:
        view["api_key_env"] = None
    elif looks_like_key(name):  # only reachable when Settings were built by hand, not loaded
        view["api_key_env"] = {"name": "*** (looks like a key, not a name)", "set": False}
    else:
        view["api_key_env"] = {"name": name, "set": bool(env.get(name))}
    return view


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, enums to their values, tuples to lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
