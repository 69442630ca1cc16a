"""Writes the server's settings schema into the extension's package.json.

``contributes.configuration.properties`` holds one VS Code setting per key of the server's
schema (``server/crucible/config/settings.py``), with the same snake_case name under
``crucible.`` (``crucible.completion.debounce_ms``), so a TOML snippet from the docs reads the
same in settings.json. Descriptions, defaults, enums and bounds come from the dataclasses; the
extension's own settings (``crucible.server.*``, ``crucible.trace.server``,
``crucible.client.*``: the server ignores those keys) are kept as they are.

Trust, as the server draws it (``config/trust.py``): a workspace's ``.vscode/settings.json``
comes with the repository, like its ``crucible.toml``. Keys that say where code and keys go
(providers, the trust keys, file paths) get ``"scope": "machine"`` (user or remote settings
only); every key an untrusted ``crucible.toml`` may not set is listed in
``restrictedConfigurations``, which VS Code ignores in a workspace the user has not trusted.

Run it after changing the schema: ``python editors/vscode/scripts/sync_settings.py``
(tests/unit/test_vscode_settings.py fails until you do).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import MISSING, Field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "server"))

from crucible.config import settings as schema  # noqa: E402
from crucible.config.trust import ALLOWED, NEVER_KEYS, PATH_KEYS, TRUST_KEYS  # noqa: E402

PACKAGE_JSON = ROOT / "editors" / "vscode" / "package.json"
CLIENT_PREFIXES = tuple(f"crucible.{key}." for key in schema.CLIENT_KEYS)
# Every table of the schema ([completion], [hover], ...): a field of Settings whose type is a
# dataclass. Derived, so a section added to the schema is checked (and synced) at once.
SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in typing.get_type_hints(schema.Settings).items()
    if isinstance(hint, type) and is_dataclass(hint)
}


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:  # pragma: no cover - every field of the schema has a default
        raise ValueError(f"{f.name} has no default")
    return plain(value)


def plain(value: Any) -> Any:
    """A default as JSON would carry it (enums by value, tuples as lists)."""
    if isinstance(value, schema.CompletionItems):
        return {"auto": "auto", "on": True, "off": False}[value.value]
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return value


def value_schema(owner: type[Any], f: Field[Any]) -> dict[str, Any]:
    """The JSON schema of one field's values (type, enum, bounds)."""
    hint = typing.get_type_hints(owner)[f.name]
    out: dict[str, Any] = {}
    if hint is schema.CompletionItems:
        out["type"] = ["string", "boolean"]
        out["enum"] = ["auto", True, False]
    elif isinstance(hint, type) and issubclass(hint, StrEnum):
        out["type"] = "string"
        out["enum"] = [member.value for member in hint]
    elif owner is schema.ProviderSettings and f.name == "fim_template":
        out["type"] = "string"
        out["enum"] = ["auto", *schema.FIM_TEMPLATE_NAMES]
    elif hint is bool:
        out["type"] = "boolean"
    elif hint is int:
        out["type"] = "integer"
    elif hint is float:
        out["type"] = "number"
    elif hint is str:
        out["type"] = "string"
    elif isinstance(hint, types.UnionType) and set(typing.get_args(hint)) == {str, type(None)}:
        out["type"] = ["string", "null"]
    elif typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if is_dataclass(item) and isinstance(item, type):
            out["items"] = object_items(item)
        elif isinstance(item, type) and issubclass(item, StrEnum):
            out["items"] = {"type": "string", "enum": [member.value for member in item]}
        else:
            out["items"] = {"type": "string"}
        out["type"] = "array"
    else:  # pragma: no cover - a new kind of field: teach this script about it
        raise TypeError(f"{owner.__name__}.{f.name}: no JSON schema for {hint!r}")
    bounds = f.metadata.get("bounds")
    if bounds is not None:
        low, high = bounds
        out["minimum"] = int(low) if hint is int else low
        out["maximum"] = int(high) if hint is int else high
    return out


def object_items(owner: type[Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON schema of one table of an array of tables (``[[providers]]``, ...)."""
    properties = {}
    for f in fields(owner):
        properties[f.name] = {
            **value_schema(owner, f),
            "default": default_of(f),
            "description": f.metadata["doc"],
        }
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    out["additionalProperties"] = False
    return out


def provider_items() -> dict[str, Any]:
    return object_items(schema.ProviderSettings, ("name", "kind"))


def schema_properties() -> dict[str, dict[str, Any]]:
    """Every user-facing key of the server's schema, as VS Code settings."""
    out: dict[str, dict[str, Any]] = {}
    order = 0
    for top in fields(schema.Settings):
        section = SECTIONS.get(top.name)
        if top.name == "providers":
            out["crucible.providers"] = {
                "type": "array",
                "items": provider_items(),
                "default": default_of(top),
                "description": top.metadata["doc"]
                + " Each entry is one [[providers]] table (snake_case keys, as in TOML).",
                "scope": "machine",
                "order": order,
            }
        elif section is None:
            out[f"crucible.{top.name}"] = {
                **value_schema(schema.Settings, top),
                "default": default_of(top),
                "description": top.metadata["doc"],
                "scope": "machine" if top.name in TRUST_KEYS else "resource",
                "order": order,
            }
        else:
            for f in fields(section):
                key = f"crucible.{top.name}.{f.name}"
                out[key] = {
                    **value_schema(section, f),
                    "default": default_of(f),
                    "description": f.metadata["doc"],
                    "scope": (
                        "machine" if (top.name, f.name) in PATH_KEYS | NEVER_KEYS else "resource"
                    ),
                    "order": order,
                }
                order += 1
        order += 1
    return out


def restricted(properties: dict[str, dict[str, Any]]) -> list[str]:
    """Keys an untrusted workspace may not set (all but config/trust.py's ALLOWED)."""
    allowed = {f"crucible.{section}.{name}" for section, name in ALLOWED}
    return sorted(key for key in properties if key not in allowed)


def synced(package: dict[str, Any]) -> dict[str, Any]:
    configuration = package["contributes"]["configuration"]
    own = {
        key: value
        for key, value in configuration["properties"].items()
        if key.startswith(CLIENT_PREFIXES)
    }
    generated = schema_properties()
    configuration["properties"] = {**generated, **own}
    capabilities = package.setdefault("capabilities", {})
    capabilities["untrustedWorkspaces"] = {
        "supported": "limited",
        "description": "In an untrusted workspace, Crucible ignores the workspace's settings"
        " that could send code elsewhere or cost more; the server applies the same rule to"
        " its crucible.toml.",
        "restrictedConfigurations": sorted(
            [*restricted(generated), *(k for k in own if k.startswith("crucible.server."))]
        ),
    }
    return package


def main() -> int:
    package = json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))
    PACKAGE_JSON.write_text(json.dumps(synced(package), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
