"""The VS Code extension's contributed settings stay in step with the server's schema.

Every ``crucible.*`` setting in editors/vscode/package.json (but the extension's own
``server.*``, ``trace.*`` and ``client.*``, which the server ignores: CLIENT_KEYS) must be a key
of config/settings.py, with the same default, enum and bounds; and every user-facing key of the
schema must be contributed, so a key added to the schema fails here until
``python editors/vscode/scripts/sync_settings.py`` is run. Keys that say where code goes are
user-or-remote only (``scope: machine``), and every key an untrusted crucible.toml may not set is
ignored by VS Code in an untrusted workspace (``restrictedConfigurations``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crucible import __version__
from crucible.config import settings as schema
from crucible.config.trust import ALLOWED, NEVER_KEYS, PATH_KEYS, TRUST_KEYS

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
PACKAGE = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
PROPERTIES: dict[str, dict[str, Any]] = PACKAGE["contributes"]["configuration"]["properties"]
CLIENT = tuple(f"crucible.{key}." for key in schema.CLIENT_KEYS)
# Every table of the schema ([completion], [hover], ...): a field of Settings whose type is a
# dataclass. Derived, so a section added to the schema is checked (and synced) at once.
SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in typing.get_type_hints(schema.Settings).items()
    if isinstance(hint, type) and is_dataclass(hint)
}


def schema_keys() -> dict[str, tuple[type[Any], Any]]:
    """Every user-facing key: ``crucible.<section>.<name>`` or ``crucible.<name>``."""
    keys: dict[str, tuple[type[Any], Any]] = {}
    for top in fields(schema.Settings):
        section = SECTIONS.get(top.name)
        if section is None:
            keys[f"crucible.{top.name}"] = (schema.Settings, top)
        else:
            keys.update({f"crucible.{top.name}.{f.name}": (section, f) for f in fields(section)})
    return keys


def json_default(value: Any) -> Any:
    if isinstance(value, schema.CompletionItems):
        return {"auto": "auto", "on": True, "off": False}[value.value]
    if isinstance(value, schema.StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [json_default(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_default(getattr(value, f.name)) for f in fields(value)}
    return value


def default(f: Any) -> Any:
    return json_default(f.default if f.default is not MISSING else f.default_factory())


def contributed() -> set[str]:
    return {key for key in PROPERTIES if not key.startswith(CLIENT)}


def test_every_contributed_setting_is_a_key_of_the_server_schema() -> None:
    unknown = contributed() - set(schema_keys())
    assert not unknown, f"package.json contributes keys the server does not know: {unknown}"


def test_every_user_facing_key_of_the_schema_is_contributed() -> None:
    missing = set(schema_keys()) - contributed()
    assert not missing, (
        f"the server schema has keys the VS Code extension lacks: {sorted(missing)}; run"
        " python editors/vscode/scripts/sync_settings.py"
    )


def test_the_check_fails_when_the_schema_gains_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard above is real: a new field of a section makes it fail."""
    from dataclasses import field, make_dataclass

    grown = make_dataclass(
        "CompletionSettings",
        [("brand_new_knob", int, field(default=1, metadata={"doc": "new"}))],
        bases=(schema.CompletionSettings,),
        frozen=True,
        kw_only=True,
    )
    monkeypatch.setitem(SECTIONS, "completion", grown)
    with pytest.raises(AssertionError, match="brand_new_knob"):
        test_every_user_facing_key_of_the_schema_is_contributed()


@pytest.mark.parametrize("key", sorted(schema_keys()))
def test_default_enum_bounds_and_description_match(key: str) -> None:
    owner, f = schema_keys()[key]
    prop = PROPERTIES[key]
    assert prop["default"] == default(f)
    assert prop["description"].startswith(f.metadata["doc"])
    bounds = f.metadata.get("bounds")
    if bounds is None:
        assert "minimum" not in prop and "maximum" not in prop
    else:
        assert (prop["minimum"], prop["maximum"]) == bounds
    hint = owner.__annotations__[f.name]
    enum = getattr(schema, str(hint), None)
    if isinstance(enum, type) and issubclass(enum, schema.StrEnum):
        expected = (
            ["auto", True, False]
            if enum is schema.CompletionItems
            else [member.value for member in enum]
        )
        assert prop["enum"] == expected


def test_provider_entries_match_provider_settings() -> None:
    items = PROPERTIES["crucible.providers"]["items"]
    assert set(items["properties"]) == {f.name for f in fields(schema.ProviderSettings)}
    for f in fields(schema.ProviderSettings):
        prop = items["properties"][f.name]
        assert prop["default"] == default(f), f.name
        assert prop["description"] == f.metadata["doc"]
        if "bounds" in f.metadata:
            assert (prop["minimum"], prop["maximum"]) == f.metadata["bounds"]
    kinds = items["properties"]["kind"]["enum"]
    assert kinds == [kind.value for kind in schema.ProviderKind]
    templates = items["properties"]["fim_template"]["enum"]
    assert templates == ["auto", *schema.FIM_TEMPLATE_NAMES]


def test_keys_that_say_where_code_goes_are_user_or_remote_settings_only() -> None:
    machine = {key for key in contributed() if PROPERTIES[key].get("scope") == "machine"}
    where = {"crucible.providers"}
    where |= {f"crucible.{key}" for key in TRUST_KEYS}
    where |= {f"crucible.{section}.{name}" for section, name in PATH_KEYS | NEVER_KEYS}
    assert machine == where
    assert PROPERTIES["crucible.server.path"]["scope"] == "machine"


def test_an_untrusted_workspace_cannot_set_what_an_untrusted_crucible_toml_cannot() -> None:
    restricted = set(PACKAGE["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"])
    allowed = {f"crucible.{section}.{name}" for section, name in ALLOWED}
    assert restricted >= contributed() - allowed
    assert not restricted & allowed
    assert {"crucible.server.path", "crucible.server.args"} <= restricted


def test_the_sync_script_has_nothing_left_to_change() -> None:
    spec = importlib.util.spec_from_file_location(
        "sync_settings", EXTENSION / "scripts" / "sync_settings.py"
    )
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["sync_settings"] = module
    spec.loader.exec_module(module)
    assert module.synced(json.loads(json.dumps(PACKAGE))) == PACKAGE


def test_the_extension_version_is_the_server_version() -> None:
    """The managed environment installs crucible-lsp==<__version__> (scripts/build.mjs reads
    it from server/crucible/__init__.py); the .vsix carries the same number."""
    assert PACKAGE["version"] == __version__
    build = (EXTENSION / "scripts" / "build.mjs").read_text(encoding="utf-8")
    assert re.search(r"server.+crucible.+__init__\.py", build)
