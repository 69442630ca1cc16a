"""Configuration: the schema (``settings``), its validation (``validate``), its sources
(``loader``), what a workspace file may set (``trust``) and Crucible's own directories
(``paths``). Import from here."""

from __future__ import annotations

from crucible.config.loader import (
    ConfigSource,
    LoadResult,
    build_settings,
    describe,
    file_layers,
    find_workspace_root,
    load_settings,
    merge_layers,
    read_toml,
    unwrap_client_settings,
)
from crucible.config.settings import (
    CompletionSettings,
    Multiline,
    ProviderKind,
    ProviderSettings,
    Role,
    Settings,
    default_base_url,
)

__all__ = [
    "CompletionSettings",
    "ConfigSource",
    "LoadResult",
    "Multiline",
    "ProviderKind",
    "ProviderSettings",
    "Role",
    "Settings",
    "build_settings",
    "default_base_url",
    "describe",
    "file_layers",
    "find_workspace_root",
    "load_settings",
    "merge_layers",
    "read_toml",
    "unwrap_client_settings",
]
