"""What a workspace ``crucible.toml`` may set: the trust decision, pure but for resolving paths.

A workspace file comes with the repository being edited, written by whoever wrote that
repository. With a user file's power it could send the code being edited, and any environment
variable (named as a provider's ``api_key_env``, then sent as its bearer token), to a host of
its choosing, or make every keystroke cost more. So:

* The user's own configuration is trusted: the user file, ``--config``, and what the editor
  sends (initializationOptions, didChangeConfiguration, workspace/configuration).
* A workspace file is not. Unless the user trusts it, it may set only the keys in
  ``ALLOWED``, each under its ``Rule``, judged against the value the user's own configuration
  gives (the default where it gives none). Every other key of the schema is refused: deny by
  default, so a key added to the schema later stays refused until it is listed here. A value
  that fails validation is ignored, so the user's value stays (validation alone would fall
  back to the default, which may be higher than the user's).
* The user trusts a workspace with ``trust_workspace_config = true`` (every workspace) or by
  listing its root, or a directory above it, in ``trusted_workspaces`` (both sides resolved,
  symlinks included). Both are read from the user's own configuration only: a workspace file
  that sets them is refused, trusted or not (no self-trust).
* Even a trusted workspace cannot place a file outside Crucible's cache directory
  (``PATH_KEYS``); a relative path is taken inside that directory. No workspace, trusted or
  not, says where metrics go or which variable's value goes with them (``NEVER_KEYS``).

Keys the schema does not know pass through untouched: validation reports them as typos and
ignores them, so they reach nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from crucible.config.settings import CompletionItems, Prefetch, Settings
from crucible.config.validate import check_value, section_fields
from crucible.errors import ConfigError

__all__ = [
    "ALLOWED",
    "NEVER_KEYS",
    "PATH_KEYS",
    "PROVIDER_NEVER_KEYS",
    "PROVIDER_PATH_KEYS",
    "TRUST_KEYS",
    "Refusal",
    "Rule",
    "Screened",
    "WorkspaceTrust",
    "decide_trust",
    "refusal_notice",
    "screen_workspace",
    "trust_hint",
]


class Rule(Enum):
    """How a workspace file's value must compare with the user's."""

    ANY = "any valid value"
    LOWER = "at most the user's value"  # more of it costs more, or sends more code
    NOT_BELOW = "at least the user's value"  # less of it (a shorter wait) costs more
    ADD = "added to the user's list"  # a list that only protects: the workspace may extend it


# The keys an untrusted workspace may set. Everything here changes how suggestions look or
# how much is spent, never where anything goes.
ALLOWED: Mapping[tuple[str, str], Rule] = {
    # Turning completions off (or the menu item off) is always the workspace's to ask.
    ("completion", "enabled"): Rule.LOWER,
    ("completion", "completion_items"): Rule.LOWER,
    # The wait after a keystroke: a longer one means fewer provider calls, a shorter one more.
    ("completion", "debounce_mode"): Rule.ANY,
    ("completion", "debounce_ms"): Rule.NOT_BELOW,
    ("completion", "debounce_min_ms"): Rule.NOT_BELOW,
    ("completion", "debounce_max_ms"): Rule.NOT_BELOW,
    # Shape of a suggestion: no cost of its own (max_lines and max_tokens bound the length).
    ("completion", "multiline"): Rule.ANY,
    ("completion", "temperature"): Rule.ANY,
    # Lengths and counts: each more is more tokens billed, or more code sent.
    ("completion", "timeout_ms"): Rule.LOWER,
    ("completion", "max_lines"): Rule.LOWER,
    ("completion", "max_tokens"): Rule.LOWER,
    ("completion", "alternatives"): Rule.LOWER,
    ("completion", "max_prefix_chars"): Rule.LOWER,
    ("completion", "max_suffix_chars"): Rule.LOWER,
    ("completion", "neighbour_files"): Rule.LOWER,
    ("completion", "neighbour_chars"): Rule.LOWER,
    # Prefetch computes suggestions nobody asked for yet: off < auto < on.
    ("cache", "prefetch"): Rule.LOWER,
    # A repository may keep more of its files from providers, never fewer (privacy.redact,
    # which could turn redaction off, stays the user's).
    ("privacy", "exclude"): Rule.ADD,
    # Not here: a provider's team_* limits. A lower one would only spend less, but an
    # untrusted workspace sets no provider key (arrays replace each other when merged).
}

# Never from a workspace file, trusted or not.
TRUST_KEYS: tuple[str, ...] = ("trust_workspace_config", "trusted_workspaces")

# Where the server's metrics go, and the variable whose value is sent with them: never from a
# workspace file, trusted or not (a repository could otherwise watch its users' editors, or
# have any environment variable sent as a header to a host of its choosing).
NEVER_KEYS: frozenset[tuple[str, str]] = frozenset(
    {("telemetry", "otlp_endpoint"), ("telemetry", "otlp_headers_env")}
)

# Files Crucible writes: from a trusted workspace only inside Crucible's cache directory.
PATH_KEYS: frozenset[tuple[str, str]] = frozenset({("cache", "disk_path")})
# Keys of a ``[[providers]]`` table naming a file Crucible runs a process on (the local kind's
# model): from a trusted workspace only inside Crucible's cache directory, as PATH_KEYS.
PROVIDER_PATH_KEYS: frozenset[str] = frozenset({"model_path"})
# Keys of a ``[[providers]]`` table that fetch a file from the network to run: never from a
# workspace file, trusted or not (a model is code the user's machine executes).
PROVIDER_NEVER_KEYS: frozenset[str] = frozenset({"model_url"})

# The order of switches that are not numbers, least costly first.
_ORDERS: tuple[tuple[type[StrEnum], tuple[StrEnum, ...]], ...] = (
    (Prefetch, (Prefetch.OFF, Prefetch.AUTO, Prefetch.ON)),
    (CompletionItems, (CompletionItems.OFF, CompletionItems.AUTO, CompletionItems.ON)),
)

_MINE = "only your own configuration may set it"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A key of the workspace file that was not applied, and why."""

    key: str  # dotted: ``providers``, ``completion.max_tokens``
    reason: str

    def __str__(self) -> str:
        return f"{self.key} ({self.reason})"


@dataclass(frozen=True, slots=True)
class WorkspaceTrust:
    """Whether the user's own configuration trusts the workspace, and what says so."""

    trusted: bool
    why: str


@dataclass(frozen=True, slots=True)
class Screened:
    """The part of a workspace file that applies, what was refused, and values that failed
    validation (ignored: the user's value stays)."""

    table: dict[str, Any]
    refused: tuple[Refusal, ...]
    errors: tuple[ConfigError, ...]


def _resolved(path: Path) -> Path | None:
    """``path`` absolute, ``~`` expanded and symlinks resolved; ``None`` when it cannot be
    (a symlink loop), which never trusts anything."""
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):
        return None


def decide_trust(settings: Settings, root: Path | None) -> WorkspaceTrust:
    """``settings`` must come from the user's own configuration only."""
    if settings.trust_workspace_config:
        return WorkspaceTrust(True, "trust_workspace_config = true")
    real = _resolved(root) if root is not None else None
    if real is not None:
        for entry in settings.trusted_workspaces:
            listed = _resolved(Path(entry))
            if listed is not None and (real == listed or listed in real.parents):
                return WorkspaceTrust(True, f"{entry} is listed in trusted_workspaces")
    return WorkspaceTrust(False, "not listed in trusted_workspaces")


def screen_workspace(
    table: Mapping[str, Any], reference: Settings, trust: WorkspaceTrust, cache_dir: Path
) -> Screened:
    """What of ``table`` (a workspace file) applies. ``reference``: the settings from the
    user's own configuration alone, which the rules compare with; ``cache_dir``: Crucible's
    cache directory, the only place a workspace may put a file."""
    known = {f.name for f in fields(Settings)}
    kept: dict[str, Any] = {}
    refused: list[Refusal] = []
    errors: list[ConfigError] = []
    for key, value in table.items():
        if key in TRUST_KEYS:
            refused.append(Refusal(key, "only your own configuration may trust a workspace"))
        elif key not in known:
            kept[key] = value  # validation names the typo and ignores it
        elif section_fields(key) and isinstance(value, Mapping):
            section = _screen_section(key, value, reference, trust, cache_dir, refused, errors)
            if section:
                kept[key] = section
        elif key == "providers" and trust.trusted and isinstance(value, list | tuple):
            kept[key] = [_screen_provider(i, p, cache_dir, refused) for i, p in enumerate(value)]
        elif trust.trusted:
            kept[key] = value  # ``providers``, or a bad value validation will name
        elif section_fields(key):
            # Merged over the user's table, it would send the whole section to its defaults.
            refused.append(Refusal(key, "not a table"))
        else:
            refused.append(Refusal(key, _MINE))  # ``providers``
    return Screened(kept, tuple(refused), tuple(errors))


def _screen_section(
    section: str,
    table: Mapping[str, Any],
    reference: Settings,
    trust: WorkspaceTrust,
    cache_dir: Path,
    refused: list[Refusal],
    errors: list[ConfigError],
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    names = section_fields(section)
    for name, value in table.items():
        key = f"{section}.{name}"
        if name not in names or value is None:
            kept[name] = value  # a typo (validation names it) or "unset" (never overrides)
        elif (section, name) in NEVER_KEYS:
            refused.append(Refusal(key, _MINE))
        elif (section, name) in PATH_KEYS:
            if not trust.trusted:
                refused.append(Refusal(key, "it names a file"))
            elif (inside := _inside(value, cache_dir)) is None:
                refused.append(Refusal(key, f"outside Crucible's cache directory {cache_dir}"))
            else:
                kept[name] = inside
        elif trust.trusted:
            kept[name] = value
        elif (rule := ALLOWED.get((section, name))) is None:
            refused.append(Refusal(key, _MINE))
        else:
            clean, error = check_value(section, name, value)
            if error is not None:
                message = f"{error.message}; the workspace file's value is ignored"
                errors.append(ConfigError(key, message))
                continue
            theirs = getattr(getattr(reference, section), name)
            if rule is Rule.ADD:  # lists replace each other when merged: add to the user's
                kept[name] = list(dict.fromkeys([*theirs, *clean]))
                continue
            problem = _breaks(rule, clean, theirs)
            if problem is None:
                kept[name] = value
            else:
                refused.append(Refusal(key, problem))
    return kept


def _breaks(rule: Rule, value: Any, theirs: Any) -> str | None:
    """Why ``value`` may not replace the user's ``theirs`` under ``rule``; None if it may."""
    if rule is Rule.LOWER and _rank(value) > _rank(theirs):
        return f"{_shown(value)} is above your {_shown(theirs)}: a workspace may only lower it"
    if rule is Rule.NOT_BELOW and _rank(value) < _rank(theirs):
        return f"{_shown(value)} is below your {_shown(theirs)}: a workspace may only raise it"
    return None


def _rank(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    for enum, order in _ORDERS:
        if isinstance(value, enum):
            return float(order.index(value))
    return float(value)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return json.dumps(str(value))
    return str(value)


def _screen_provider(index: int, entry: Any, cache_dir: Path, refused: list[Refusal]) -> Any:
    """A trusted workspace's provider table, its file paths kept only inside ``cache_dir``."""
    if not isinstance(entry, Mapping):
        return entry  # validation names it
    kept = dict(entry)
    for name in sorted(PROVIDER_NEVER_KEYS & set(entry)):
        del kept[name]
        refused.append(Refusal(f"providers[{index}].{name}", _MINE))
    for name in sorted(PROVIDER_PATH_KEYS & set(entry)):
        inside = _inside(entry[name], cache_dir)
        if inside is None:
            del kept[name]
            where = f"outside Crucible's cache directory {cache_dir}"
            refused.append(Refusal(f"providers[{index}].{name}", where))
        else:
            kept[name] = inside
    return kept


def _inside(value: Any, cache_dir: Path) -> Any:
    """A trusted workspace's path as the absolute path it names, when that lies inside
    ``cache_dir`` (relative paths are taken from there); ``None`` when it lies outside.
    Anything but non-empty text is left for validation (its fallback is the default path)."""
    if not isinstance(value, str) or not value.strip():
        return value
    path = Path(value.strip()).expanduser()
    real = _resolved(path if path.is_absolute() else cache_dir / path)
    base = _resolved(cache_dir)
    if real is None or base is None or base not in real.parents:
        return None
    return str(real)


def refusal_notice(
    refused: tuple[Refusal, ...],
    *,
    workspace_file: Path,
    trust: WorkspaceTrust,
    user_file: Path | None,
) -> str:
    """The one message naming every refused key, and how to trust the workspace."""
    # The sentence already says who may set them: repeat only other reasons.
    listed = "; ".join(r.key if r.reason == _MINE else str(r) for r in refused)
    if trust.trusted:  # only what no workspace may set was refused
        return (
            f"Crucible ignored settings in {workspace_file} that no workspace file may set:"
            f" {listed}."
        )
    return (
        f"Crucible ignored settings in {workspace_file} that only your own configuration may"
        f" set: {listed}. {trust_hint(workspace_file, user_file)}"
    )


def trust_hint(workspace_file: Path, user_file: Path | None) -> str:
    """How the user trusts the workspace whose file is ``workspace_file``."""
    root = _resolved(workspace_file.parent) or workspace_file.parent
    where = str(user_file) if user_file is not None else "your user configuration file"
    return (
        "The file comes with the repository. If you trust it, add"
        f" trusted_workspaces = [{json.dumps(str(root))}] to {where} (or set"
        " trust_workspace_config = true there to trust every workspace)."
    )
