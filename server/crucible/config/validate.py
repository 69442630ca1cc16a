"""Raw configuration table -> ``Settings``: check every field, collect every problem.

The single responsibility here is validation of an already merged table (see ``loader.py`` for
where tables come from). Nothing raises: each bad value becomes one ``ConfigError`` naming its
dotted key (``completion.debounce_ms``, ``providers[1].kind``) and saying what was given and
what is expected, and that field alone falls back to its default.

Values a user might have pasted a secret into are never echoed: ``api_key_env`` values are not
quoted at all, other strings are hidden when they look like a key, and URLs are shown with their
userinfo and query values masked.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, fields, replace
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from crucible.config.settings import (
    CLIENT_KEYS,
    DEFAULT_LOCAL_MODEL,
    FIM_TEMPLATE_NAMES,
    CacheSettings,
    CodeActionsSettings,
    CompletionItems,
    CompletionSettings,
    CustomActionSettings,
    HoverSettings,
    MemorySettings,
    PrivacySettings,
    ProviderKind,
    ProviderSettings,
    ResilienceSettings,
    ReviewSettings,
    Settings,
    TelemetrySettings,
    default_base_url,
)
from crucible.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """The settings to run with, and every problem met on the way (empty when all is well)."""

    settings: Settings
    errors: tuple[ConfigError, ...]


class _Invalid(Exception):
    """A value cannot be used; the message says what was given and what is expected."""


class _Reported(Exception):
    """A value cannot be used and its errors are already recorded; the default applies."""


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Prefixes of real keys (OpenAI, Anthropic, GitHub, Hugging Face, Groq, xAI, Google, GitLab).
_KEY_PREFIXES = ("sk-", "sk_", "ghp_", "github_pat_", "hf_", "gsk_", "xai-", "AIza", "glpat-")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)?")


def looks_like_key(text: str) -> bool:
    """Whether ``text`` looks like a credential rather than a name (a deliberate over-guess)."""
    text = text.strip()
    if text.startswith(_KEY_PREFIXES):
        return True
    if not _ENV_NAME.fullmatch(text):
        return len(text) >= 20
    # Variable names are words; a long run with upper, lower case and digits is random bytes.
    mixed = any(c.islower() for c in text) and any(c.isupper() for c in text)
    return len(text) >= 32 and mixed and any(c.isdigit() for c in text)


def mask_url(url: str) -> str:
    """``url`` with its userinfo replaced by ``***`` and its query values by ``***``.

    Textual on purpose, so it never raises: everything up to the LAST ``@`` counts as userinfo,
    which over-masks an ``@`` in a path rather than ever leaking a password.
    """
    if "@" in url:
        scheme = _SCHEME.match(url)
        prefix = scheme.group(0) if scheme else ""
        url = prefix + "***@" + url.rpartition("@")[2]
    head, sep, query = url.partition("?")
    if sep:
        url = head + sep + re.sub(r"=[^&#]*", "=***", query)
    return url


def _given(value: Any) -> str:
    """How a user wrote ``value``, in TOML/JSON terms, short, and never a secret."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large number"  # repr() refuses past 4300 digits
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 24 else text[:21] + "..."
    if isinstance(value, str):
        if looks_like_key(value):
            return "a value that looks like a key (not shown)"
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A default value as a user would write it."""
    if isinstance(value, str):  # our own defaults: no secret to hide, and never truncated
        return json.dumps(str(value))
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return _given(value)


def _nearest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(close[0])}?)" if close else ""


# --- one checker per value type; each returns the clean value or raises _Invalid ----------------


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_given(value)}")
    return value


def _number(value: Any, whole: bool, bounds: tuple[float, float] | None) -> float:
    # bool is a subclass of int but `debounce_ms = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_given(value)}")
    # JSON has one number type, so a client may send 150.0 for 150.
    if whole and isinstance(value, float) and not value.is_integer():
        raise _Invalid(f"expected a whole number, got {_given(value)}")
    # Compare before converting: float() of a huge int overflows; NaN and inf never pass.
    lo, hi = bounds if bounds is not None else (float("-inf"), float("inf"))
    if not lo <= value <= hi or (isinstance(value, float) and not math.isfinite(value)):
        raise _Invalid(f"{_given(value)} is out of range: expected {_show(lo)} to {_show(hi)}")
    return int(value) if whole else float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"expected non-empty text, got {_given(value)}")
    return value.strip()


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    listed = ", ".join(choices)
    if not isinstance(value, str):
        raise _Invalid(f"expected one of {listed}, got {_given(value)}")
    if value not in choices:
        raise _Invalid(f"{_given(value)} is not one of {listed}{_nearest(value, choices)}")
    return value


def _enum_tuple(value: Any, enum: type[StrEnum], key: str, errors: list[ConfigError]) -> Any:
    values = tuple(m.value for m in enum)
    if not isinstance(value, list | tuple):
        raise _Invalid(f"expected an array of {', '.join(values)}, got {_given(value)}")
    if not value:
        raise _Invalid(f"is empty: expected at least one of {', '.join(values)}")
    good: list[StrEnum] = []
    bad = False
    for i, item in enumerate(value):
        try:
            member = enum(_choice(item, values))
        except _Invalid as exc:
            errors.append(ConfigError(f"{key}[{i}]", f"{exc}; so {key} falls back to its default"))
            bad = True
            continue
        if member not in good:
            good.append(member)
    # Any bad element sends the whole field back to its default, so that a typo never silently
    # narrows what a provider serves.
    if bad:
        raise _Reported
    return tuple(good)


# Editors write switches their own way: JSON booleans, or strings from a settings UI.
_SWITCH_WORDS = {"true": True, "on": True, "false": False, "off": False}


def _completion_items(value: Any) -> CompletionItems:
    """``auto``, or a switch: ``true``/``false`` (also ``"true"``, ``"on"``, ``"off"`` …)."""
    if isinstance(value, bool):
        return CompletionItems.ON if value else CompletionItems.OFF
    if isinstance(value, str):
        word = value.strip().lower()
        if word == CompletionItems.AUTO:
            return CompletionItems.AUTO
        if word in _SWITCH_WORDS:
            return CompletionItems.ON if _SWITCH_WORDS[word] else CompletionItems.OFF
    raise _Invalid(f'expected "auto", true or false, got {_given(value)}')


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or (text and not _SHA256.fullmatch(text)):
        raise _Invalid(f"expected 64 hexadecimal digits (a SHA-256), got {_given(value)}")
    return text


def _url(value: Any, expected: str, schemes: tuple[str, ...]) -> tuple[str, SplitResult, str]:
    """``value`` stripped, split as a URL with one of ``schemes`` and no stray characters, and
    how to show it in a message (secrets masked: anything not a URL might be a pasted key); else
    :class:`_Invalid` saying ``expected``."""
    if not isinstance(value, str):
        raise _Invalid(f"{expected}, got {_given(value)}")
    url = value.strip()
    shown = json.dumps(mask_url(url)) if "://" in url else _given(url)
    try:
        parts = urlsplit(url)
        _port = parts.port  # checks the port
    except ValueError as exc:  # an unclosed IPv6 bracket, a non-numeric port …
        raise _Invalid(f"{expected}, got {shown}") from exc
    if any(c.isspace() or not c.isprintable() for c in url) or parts.scheme not in schemes:
        raise _Invalid(f"{expected}, got {shown}")
    return url, parts, shown


def _base_url(value: Any) -> str:
    expected = "expected an absolute http:// or https:// URL with a host"
    url, parts, shown = _url(value, expected, ("http", "https"))
    if not parts.hostname:
        raise _Invalid(f"{expected}, got {shown}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        # Credentials in a URL end up in logs and error messages, and httpx would send a
        # user:password as Basic auth; a query string would swallow the API paths httpx
        # appends (base/v1?x=1 + completions -> base/v1?x=1/completions).
        raise _Invalid(
            "must not carry credentials or a query string (keys go in the environment"
            f" variable api_key_env names), got {shown}"
        )
    return url.rstrip("/")


def _redis_url(value: Any) -> str:
    """The team's Redis: ``redis://``, ``rediss://`` (TLS) or ``unix://``; empty is none."""
    if value == "":
        return ""
    expected = "expected a redis://, rediss:// or unix:// URL (or empty: no shared cache)"
    url, parts, shown = _url(value, expected, ("redis", "rediss", "unix"))
    if parts.scheme == "unix" and not parts.path.startswith("/"):
        raise _Invalid(f"a unix:// URL needs an absolute socket path, got {shown}")
    if parts.scheme != "unix" and not parts.hostname:
        raise _Invalid(f"{expected}, got {shown}")
    if parts.password is not None or parts.fragment:
        raise _Invalid(
            "must not carry a password (name the variable holding it in"
            f" cache.shared_password_env), got {shown}"
        )
    return url


def _optional_env_name(value: Any) -> str:
    return "" if value == "" else _api_key_env(value)


_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _namespace(value: Any) -> str:
    if isinstance(value, str) and _NAMESPACE.fullmatch(value.strip()):
        return value.strip()
    raise _Invalid(f"expected 1-64 letters, digits, '.', '_' or '-', got {_given(value)}")


def _patterns(value: Any) -> tuple[str, ...]:
    """Gitignore-style patterns: an array of non-empty strings (a lone string is one)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(item, str) and item.strip() and "\n" not in item for item in items
    ):
        raise _Invalid(f"expected an array of glob patterns (strings), got {_given(value)}")
    return tuple(item.strip() for item in items)


def _api_key_env(value: Any) -> str:
    # Never quote the value: what is in this field is, by mistake, sometimes the key itself.
    if isinstance(value, str) and _ENV_NAME.fullmatch(value.strip()) and not looks_like_key(value):
        return value.strip()
    if isinstance(value, str) and looks_like_key(value):
        raise _Invalid(
            "looks like a key, not a variable name; keys never live in files. Put the key in"
            " an environment variable and give that variable's NAME here"
        )
    raise _Invalid(
        "expected the NAME of an environment variable (letters, digits and _, not starting"
        " with a digit)"
    )


def _absolute_paths(value: Any, key: str, errors: list[ConfigError]) -> tuple[str, ...]:
    """An array of absolute paths (``~`` expands); a bad element is reported and left out,
    the others still count (a typo in one entry must not untrust the rest, nor trust more)."""
    if not isinstance(value, list | tuple):
        raise _Invalid(f"expected an array of absolute paths, got {_given(value)}")
    good: list[str] = []
    for i, item in enumerate(value):
        path = os.path.expanduser(item.strip()) if isinstance(item, str) else ""
        if not os.path.isabs(path):
            message = f"expected an absolute path, got {_given(item)}; this entry is ignored"
            errors.append(ConfigError(f"{key}[{i}]", message))
        elif path not in good:
            good.append(path)
    return tuple(good)


Checker = Callable[[Any], Any]
# The kinds a custom code action may have: LSP's base kinds the server advertises, or one of
# them followed by a sub-kind (``refactor.rewrite.tests``).
_ACTION_KIND = re.compile(
    r"(quickfix|refactor|refactor\.rewrite|refactor\.extract|refactor\.inline|source)"
    r"(\.[A-Za-z0-9_-]+)*"
)
MAX_CUSTOM_ACTIONS = 32  # each is a menu entry on every request that offers it


def _action_kind(value: Any) -> str:
    text = _text(value).strip()
    if not _ACTION_KIND.fullmatch(text):
        raise _Invalid(
            f"expected a code action kind (quickfix, refactor, refactor.rewrite,"
            f" refactor.extract, refactor.inline, source, or one of them followed by"
            f" .name), got {_given(value)}"
        )
    return text


def _custom_actions(
    value: Any, key: str, errors: list[ConfigError]
) -> tuple[CustomActionSettings, ...]:
    """``[[code_actions.custom]]``: each table checked; one without a title or a prompt is
    dropped with its own message, the others kept."""
    if not isinstance(value, list | tuple):
        raise _Invalid(f"expected an array of tables, got {_given(value)}")
    if len(value) > MAX_CUSTOM_ACTIONS:
        errors.append(
            ConfigError(key, f"{len(value)} actions, the first {MAX_CUSTOM_ACTIONS} are used")
        )
    built: list[CustomActionSettings] = []
    for i, entry in enumerate(value[:MAX_CUSTOM_ACTIONS]):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append(ConfigError(where, f"expected a table, got {_given(entry)}; dropped"))
            continue
        kwargs = _table(CustomActionSettings, entry, f"{where}.", errors, {})
        missing = [name for name in ("title", "prompt") if not str(kwargs.get(name, "")).strip()]
        if missing:
            errors.append(ConfigError(where, f"no {' and no '.join(missing)}; dropped"))
            continue
        built.append(CustomActionSettings(**kwargs))
    return tuple(built)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """``cls``'s field types, resolved once (the annotations are strings under
    ``from __future__ import annotations``)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_SPECIAL: dict[tuple[type[Any], str], Checker] = {
    (ProviderSettings, "base_url"): _base_url,
    (ProviderSettings, "api_key_env"): _api_key_env,
    (ProviderSettings, "fim_template"): lambda v: _choice(v, ("auto", *FIM_TEMPLATE_NAMES)),
    (ProviderSettings, "model_url"): lambda v: "" if v == "" else _base_url(v),
    (ProviderSettings, "sha256"): _sha256,
    (CompletionSettings, "completion_items"): _completion_items,
    (PrivacySettings, "exclude"): _patterns,
    (CacheSettings, "shared_url"): _redis_url,
    (CacheSettings, "shared_password_env"): _optional_env_name,
    (CacheSettings, "shared_namespace"): _namespace,
    (CustomActionSettings, "kind"): _action_kind,
    # [telemetry]: "" leaves the endpoint to OTEL_EXPORTER_OTLP_ENDPOINT (or off).
    (TelemetrySettings, "otlp_endpoint"): lambda v: "" if v == "" else _base_url(v),
    (TelemetrySettings, "otlp_headers_env"): lambda v: "" if v == "" else _api_key_env(v),
}


def _checker(cls: type[Any], f: Field[Any], key: str, errors: list[ConfigError]) -> Checker:
    """The checker for field ``f`` of ``cls``, derived from its annotation and metadata."""
    if (cls, f.name) in _SPECIAL:
        return _SPECIAL[(cls, f.name)]
    if (cls, f.name) == (Settings, "trusted_workspaces"):
        return lambda v: _absolute_paths(v, key, errors)
    if (cls, f.name) == (CodeActionsSettings, "custom"):
        return lambda v: _custom_actions(v, key, errors)
    hint = _hints(cls)[f.name]
    bounds = f.metadata.get("bounds")
    if hint is bool:
        return _bool
    if hint is int or hint is float:
        return lambda v: _number(v, hint is int, bounds)
    if hint is str:
        return _text
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        enum = hint
        return lambda v: enum(_choice(v, tuple(m.value for m in enum)))
    item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
    if isinstance(item, type) and issubclass(item, StrEnum):
        return lambda v: _enum_tuple(v, item, key, errors)
    raise TypeError(f"no checker for {cls.__name__}.{f.name}: {hint}")  # a schema bug, not input


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _table(
    cls: type[Any],
    raw: Mapping[Any, Any],
    path: str,
    errors: list[ConfigError],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """Checked keyword arguments for ``cls`` from ``raw``; absent, null and bad fields are left
    out (so the dataclass default applies) unless ``defaults`` names a replacement."""
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            errors.append(_unknown(f"{path}{key}", str(key), known))
    out: dict[str, Any] = dict(defaults)
    for name, f in known.items():
        value = raw.get(name)
        if value is None:
            continue
        key = f"{path}{name}"
        try:
            out[name] = _checker(cls, f, key, errors)(value)
        except _Reported:
            continue
        except _Invalid as exc:
            fallback = defaults[name] if name in defaults else _default(f)
            tail = "ignoring it" if fallback is None else f"using the default {_show(fallback)}"
            errors.append(ConfigError(key, f"{exc}; {tail}"))
    return out


def _unknown(key: str, word: str, known: Mapping[str, Any]) -> ConfigError:
    hint = _nearest(word, known)
    if not hint and any(s in word.lower() for s in ("key", "token", "secret", "password")):
        hint = " (keys never live in files: set api_key_env to the NAME of a variable holding it)"
    return ConfigError(key, f"unknown key, probably a typo{hint}; it is ignored")


def _provider_kind(raw: Mapping[Any, Any]) -> ProviderKind:
    """The kind a provider table asks for, or the default; its errors are reported by _table."""
    kind = raw.get("kind")
    values = {m.value for m in ProviderKind}
    return ProviderKind(kind) if isinstance(kind, str) and kind in values else ProviderKind.OLLAMA


# Each provider is a connection pool, a breaker, a limiter and a probe task, and a request
# may fail over through all of them: far more than any setup needs (a local server, a hosted
# fallback or two), and few enough that a configuration cannot make a request try hundreds.
MAX_PROVIDERS = 16


def _providers(value: Any, errors: list[ConfigError]) -> tuple[ProviderSettings, ...]:
    default: tuple[ProviderSettings, ...] = (ProviderSettings(),)
    fallback = f"using the default provider (ollama at {default[0].base_url})"
    if not isinstance(value, list | tuple):
        errors.append(
            ConfigError(
                "providers", f"expected an array of tables, got {_given(value)}; {fallback}"
            )
        )
        return default
    if len(value) > MAX_PROVIDERS:
        errors.append(
            ConfigError(
                "providers",
                f"{len(value)} providers, at most {MAX_PROVIDERS} are used; the ones after"
                f" providers[{MAX_PROVIDERS - 1}] are dropped",
            )
        )
        value = value[:MAX_PROVIDERS]
    tables: list[tuple[int, Mapping[Any, Any]]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, Mapping):
            tables.append((i, entry))
        else:
            errors.append(
                ConfigError(
                    f"providers[{i}]", f"expected a table, got {_given(entry)}; it is dropped"
                )
            )
    # Generated names must not take a name some later table gives explicitly.
    taken = {t.get("name", "").strip() for _, t in tables if isinstance(t.get("name"), str)}
    seen: dict[str, int] = {}
    built: list[ProviderSettings] = []
    for i, table in tables:
        name = table.get("name")
        if isinstance(name, str) and name.strip() in seen:
            first = seen[name.strip()]
            message = f"duplicate name {_given(name.strip())}, already used by providers[{first}]"
            errors.append(ConfigError(f"providers[{i}].name", f"{message}; this one is dropped"))
            continue
        generated, n = f"provider{i}", 1
        while generated in taken:
            generated, n = f"provider{i}_{n}", n + 1
        kind = _provider_kind(table)
        defaults = {"base_url": default_base_url(kind)}
        if kind is ProviderKind.LOCAL:
            defaults["model"] = DEFAULT_LOCAL_MODEL
        if not (isinstance(name, str) and name.strip()):
            defaults["name"] = generated
            taken.add(generated)
        kwargs = _table(ProviderSettings, table, f"providers[{i}].", errors, defaults)
        seen[kwargs["name"]] = i
        built.append(ProviderSettings(**kwargs))
    if not built:
        errors.append(ConfigError("providers", f"no usable provider is configured; {fallback}"))
        return default
    return tuple(built)


_SECTIONS: dict[str, type[Any]] = {
    "completion": CompletionSettings,
    "cache": CacheSettings,
    "resilience": ResilienceSettings,
    "privacy": PrivacySettings,
    "hover": HoverSettings,
    "review": ReviewSettings,
    "code_actions": CodeActionsSettings,
    "memory": MemorySettings,
    "telemetry": TelemetrySettings,
}
# Top-level plain keys (the rest of the top level is ``providers`` and the sections).
_TRUST_KEYS = ("trust_workspace_config", "trusted_workspaces")


def check_value(section: str, name: str, value: Any) -> tuple[Any, ConfigError | None]:
    """``value`` checked as ``[section] name`` would be: ``(clean value, None)``, or
    ``(None, the problem)`` with no fallback named (the caller decides what applies instead).
    ``config/trust.py`` uses it to compare a workspace's value with the user's."""
    cls = _SECTIONS[section]
    f = next(f for f in fields(cls) if f.name == name)
    key = f"{section}.{name}"
    errors: list[ConfigError] = []
    try:
        return _checker(cls, f, key, errors)(value), None
    except (_Invalid, _Reported) as exc:
        return None, errors[0] if errors else ConfigError(key, str(exc))


def section_fields(section: str) -> tuple[str, ...]:
    """The keys ``[section]`` knows (empty for a name that is no section)."""
    cls = _SECTIONS.get(section)
    return tuple(f.name for f in fields(cls)) if cls is not None else ()


def build_settings(raw: Mapping[str, Any]) -> LoadResult:
    """Check every field of a merged raw table; never raises, whatever ``raw`` holds."""
    errors: list[ConfigError] = []
    if not isinstance(raw, Mapping):
        error = ConfigError("crucible", f"expected a table, got {_given(raw)}; using defaults")
        return LoadResult(Settings(), (error,))
    known = {f.name: f for f in fields(Settings)}
    for key in raw:
        if key in CLIENT_KEYS:
            # The editor client's own settings (trace.server, …), sent along with ours.
            logger.debug("configuration: ignoring the client's key %r", key)
        elif key not in known:
            errors.append(_unknown(str(key), str(key), known))
    kwargs: dict[str, Any] = {}
    trust = {name: raw[name] for name in _TRUST_KEYS if name in raw}
    kwargs.update(_table(Settings, trust, "", errors, {}))
    if raw.get("providers") is not None:
        kwargs["providers"] = _providers(raw["providers"], errors)
    for name, cls in _SECTIONS.items():
        section = raw.get(name)
        if isinstance(section, Mapping):
            kwargs[name] = cls(**_table(cls, section, f"{name}.", errors, {}))
        elif section is not None:
            message = f"expected a table, got {_given(section)}; using its defaults"
            errors.append(ConfigError(name, message))
    if "memory" in kwargs:
        kwargs["memory"] = _memory_limits(kwargs["memory"], errors)
    return LoadResult(Settings(**kwargs), tuple(errors))


def _memory_limits(memory: MemorySettings, errors: list[ConfigError]) -> MemorySettings:
    """The hard limit must be above the soft one: otherwise it is the default, or twice the
    soft limit where the default is not above it either."""
    if memory.hard_limit_mb > memory.soft_limit_mb:
        return memory
    default = MemorySettings().hard_limit_mb
    hard = default if default > memory.soft_limit_mb else memory.soft_limit_mb * 2
    message = (
        f"{memory.hard_limit_mb:g} is not above soft_limit_mb ({memory.soft_limit_mb:g});"
        f" using {hard:g}"
    )
    errors.append(ConfigError("memory.hard_limit_mb", message))
    return replace(memory, hard_limit_mb=hard)
