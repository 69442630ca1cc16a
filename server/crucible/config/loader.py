"""Where configuration comes from, and how the sources combine into one ``Settings``.

Single responsibility: gather the raw tables (TOML files, ``initializationOptions``,
``workspace/didChangeConfiguration``), merge them in order and hand the result to
``validate.build_settings``. Sources, later wins::

    defaults < user file ($XDG_CONFIG_HOME/crucible/config.toml) < workspace crucible.toml
             < --config PATH < initializationOptions < didChangeConfiguration

The workspace file comes with the repository being edited and is not trusted: before it is
merged, ``trust.screen_workspace`` keeps only what it may set (``trust.py`` says what and why),
judged against the settings of the user's own sources alone. ``LoadResult.refused`` lists what
was kept out and ``LoadResult.workspace_notice`` is the one message that names it.

Files are read only when they are regular files of at most ``MAX_FILE_BYTES``: a repository's
``crucible.toml`` may be a symlink to ``/dev/zero`` or a FIFO.

One schema, snake_case keys, identical in TOML and JSON. Untyped dicts stop in this package:
everything past ``load_settings`` / ``build_settings`` sees frozen dataclasses. Nothing here
raises on bad input; every problem is a ``ConfigError`` naming its key (a file's problems name
the file). ``LoadResult.sources`` says which sources were read and what became of each
(``doctor`` lists them).

Outside an editor (``doctor``), the workspace is found the way an editor finds it:
``find_workspace_root`` walks up from a directory to the nearest one holding a root marker,
``crucible.toml`` first, then a version-control directory (``WORKSPACE_MARKERS``).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from crucible.config import trust, validate
from crucible.config.paths import default_cache_dir
from crucible.config.settings import ProviderSettings, Settings
from crucible.config.trust import Refusal, WorkspaceTrust
from crucible.config.validate import looks_like_key, mask_url
from crucible.errors import ConfigError

__all__ = [
    "WORKSPACE_MARKERS",
    "ConfigSource",
    "LoadResult",
    "build_settings",
    "describe",
    "file_layers",
    "find_workspace_root",
    "load_settings",
    "merge_layers",
    "read_toml",
    "unwrap_client_settings",
]

SECTION = "crucible"
WORKSPACE_FILE = "crucible.toml"
WORKSPACE_LABEL = "workspace file"
# A configuration file is a few hundred bytes; past this it is not one.
MAX_FILE_BYTES = 1 << 20

# What makes a directory a workspace root, in order of precedence: each group is searched all
# the way up before the next, as Neovim's ``root_markers = { 'crucible.toml', '.git' }`` does.
# A crucible.toml marks the root its author meant; otherwise the repository root is what
# editors open (VS Code's folder, eglot's project.el, Helix). Project files such as
# pyproject.toml or package.json are left out: they also mark every sub-package of a monorepo.
WORKSPACE_MARKERS: tuple[tuple[str, ...], ...] = (
    (WORKSPACE_FILE,),
    (".git", ".hg", ".jj", ".svn"),
)

SourceState = Literal["loaded", "not found", "error"]


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """One configuration source and what became of it.

    ``label`` is ``user file``, ``workspace file``, ``--config``, ``initializationOptions`` or
    ``didChangeConfiguration``; ``path`` is set for files; ``error`` says why an ``error``
    source was ignored.
    """

    label: str
    path: Path | None
    state: SourceState
    error: str | None = None


@dataclass(frozen=True)
class LoadResult(validate.LoadResult):
    """``validate.LoadResult`` (settings and problems) plus the sources read, in merge order,
    and what the workspace file was refused.

    The sources live here, not in ``validate``, because validation sees one merged table and
    knows nothing of files. ``workspace_trust`` is set when a workspace file was read;
    ``workspace_notice`` is the message naming every refused key (``None`` when none was).
    """

    sources: tuple[ConfigSource, ...] = ()
    refused: tuple[Refusal, ...] = ()
    workspace_trust: WorkspaceTrust | None = None
    workspace_notice: str | None = None


def build_settings(raw: Mapping[str, Any]) -> LoadResult:
    """``validate.build_settings`` as this module's ``LoadResult`` (a table has no sources)."""
    result = validate.build_settings(raw)
    return LoadResult(result.settings, result.errors)


def find_workspace_root(
    start: Path, markers: tuple[tuple[str, ...], ...] = WORKSPACE_MARKERS
) -> Path | None:
    """The workspace an editor would open for ``start``: the nearest directory at or above it
    holding a marker of the first group that any directory holds (``WORKSPACE_MARKERS``);
    ``None`` when no directory up to the file-system root holds one."""
    start = start.resolve()
    chain = [start, *start.parents]
    for group in markers:
        for directory in chain:
            if any(os.path.lexists(directory / marker) for marker in group):
                return directory
    return None


def read_toml(path: Path) -> tuple[dict[str, Any], list[ConfigError]]:
    """The table in ``path``; a missing file is simply empty, a broken one is an error. Only
    a regular file of at most ``MAX_FILE_BYTES`` is read: opening a FIFO would block, and
    ``/dev/zero`` never ends."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return {}, [ConfigError(str(path), "is not a regular file; file ignored")]
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError) as exc:  # no permission, a symlink loop, a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {}, [ConfigError(str(path), f"cannot be read: {reason}")]
    if len(data) > MAX_FILE_BYTES:
        limit = f"{MAX_FILE_BYTES // 1024} KiB"
        return {}, [ConfigError(str(path), f"is larger than {limit}; file ignored")]
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
    layers, errors, _ = read_files(workspace_root=workspace_root, config_path=config_path, env=env)
    return layers, errors


def read_files(
    *,
    workspace_root: Path | None,
    config_path: Path | None,
    env: Mapping[str, str] = os.environ,
) -> tuple[list[tuple[str, dict[str, Any]]], list[ConfigError], list[ConfigSource]]:
    """``file_layers`` plus a ``ConfigSource`` for every file looked for, read or not."""
    layers: list[tuple[str, dict[str, Any]]] = []
    errors: list[ConfigError] = []
    sources: list[ConfigSource] = []
    candidates: list[tuple[str, Path]] = []
    user = user_config_path(env)
    if user is not None:
        candidates.append(("user file", user))
    if workspace_root is not None:
        candidates.append((WORKSPACE_LABEL, workspace_root / WORKSPACE_FILE))
    missing_config: ConfigError | None = None
    if config_path is not None:
        if config_path.exists():
            candidates.append(("--config", config_path))
        else:
            missing_config = ConfigError(
                str(config_path), "--config names a file that does not exist"
            )
            errors.append(missing_config)
    for label, path in candidates:
        table, problems = read_toml(path)
        errors.extend(problems)
        if problems:
            sources.append(ConfigSource(label, path, "error", problems[0].message))
        elif path.is_file():
            layers.append((f"{label} {path}", table))
            sources.append(ConfigSource(label, path, "loaded"))
        else:
            sources.append(ConfigSource(label, path, "not found"))
    if missing_config is not None and config_path is not None:
        sources.append(ConfigSource("--config", config_path, "error", missing_config.message))
    return layers, errors, sources


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
    """Every source in order -> ``Settings``, the workspace file screened first (see the
    module docstring). Call again with the new ``client_settings`` on
    ``workspace/didChangeConfiguration``; the files are re-read, which is cheap and picks up
    edits made since start."""
    layers, errors, sources = read_files(
        workspace_root=workspace_root, config_path=config_path, env=env
    )
    # (table, comes from the workspace file), in merge order.
    ordered: list[tuple[Mapping[str, Any], bool]] = [
        (table, label.startswith(WORKSPACE_LABEL)) for label, table in layers
    ]
    for label, payload in (
        ("initializationOptions", initialization_options),
        ("didChangeConfiguration", client_settings),
    ):
        table = unwrap_client_settings(payload)
        if table is not None:
            ordered.append((table, False))
            sources.append(ConfigSource(label, None, "loaded"))
    refused: tuple[Refusal, ...] = ()
    decision: WorkspaceTrust | None = None
    notice: str | None = None
    if workspace_root is not None and any(from_workspace for _, from_workspace in ordered):
        own = validate.build_settings(merge_layers(t for t, ws in ordered if not ws)).settings
        decision = trust.decide_trust(own, workspace_root)
        workspace_table = next(t for t, ws in ordered if ws)
        screened = trust.screen_workspace(workspace_table, own, decision, default_cache_dir(env))
        ordered = [(screened.table, True) if ws else (t, ws) for t, ws in ordered]
        errors.extend(screened.errors)
        refused = screened.refused
        if refused:
            notice = trust.refusal_notice(
                refused,
                workspace_file=workspace_root / WORKSPACE_FILE,
                trust=decision,
                user_file=user_config_path(env),
            )
    result = build_settings(merge_layers(t for t, _ in ordered))
    return LoadResult(
        result.settings,
        (*errors, *result.errors),
        tuple(sources),
        refused,
        decision,
        notice,
    )


def describe(settings: Settings, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """A JSON-able view of ``settings`` for ``crucible-lsp doctor``, with secrets masked:
    ``base_url`` userinfo and query values become ``***``; ``api_key_env`` shows the variable's
    NAME and whether it is set, never its value."""
    view: dict[str, Any] = _plain(settings)
    view["providers"] = [_describe_provider(p, env) for p in settings.providers]
    view["cache"]["shared_url"] = mask_url(settings.cache.shared_url)
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
