"""Which GGUF file a ``local`` provider serves, and where downloaded models live.

A provider names its model one of three ways, first found wins:

1. ``model_path``: a file on disk, used as it is (never downloaded);
2. ``model_url`` (+ ``sha256``): downloaded into the models directory under the URL's file name;
3. ``model``: a catalogue name (``catalogue.py``), downloaded into the models directory.

The models directory is ``$XDG_CACHE_HOME/crucible/models`` (``~/.cache/crucible/models``).
A download in progress is ``NAME.gguf.part`` there (``download.py``); only a complete, verified
file ever has the final name.

Errors: ``UnknownModel`` (a ``CrucibleError``) for a ``model`` that is not in the catalogue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from crucible.config.paths import default_cache_dir
from crucible.config.settings import ProviderSettings
from crucible.errors import CrucibleError
from crucible.local.catalogue import CATALOGUE, find

PARTIAL_SUFFIX = ".part"


class UnknownModel(CrucibleError):
    """A model name the catalogue does not have."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """One model file: where it is (or will be), and where it comes from."""

    name: str
    path: Path
    url: str = ""  # "" for a file the user put there (model_path)
    size: int | None = None  # expected bytes, when known
    sha256: str = ""  # expected digest; "" when unknown

    @property
    def present(self) -> bool:
        return self.path.is_file()

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + PARTIAL_SUFFIX)


def models_dir(env: Mapping[str, str] = os.environ) -> Path:
    return default_cache_dir(env) / "models"


def catalogue_source(name: str, env: Mapping[str, str] = os.environ) -> ModelSource:
    entry = find(name)
    if entry is None:
        known = ", ".join(m.name for m in CATALOGUE)
        raise UnknownModel(f"no model {name!r} in the catalogue (known: {known})")
    path = models_dir(env) / entry.file_name
    return ModelSource(entry.name, path, entry.url, entry.size, entry.sha256)


def url_source(url: str, sha256: str, env: Mapping[str, str] = os.environ) -> ModelSource:
    file_name = Path(urlsplit(url).path).name or "model.gguf"
    return ModelSource(file_name, models_dir(env) / file_name, url, None, sha256)


def model_source(settings: ProviderSettings, env: Mapping[str, str] = os.environ) -> ModelSource:
    """The file ``settings`` (a ``local`` provider) serves."""
    if settings.model_path:
        path = Path(settings.model_path).expanduser()
        return ModelSource(path.name, path)
    if settings.model_url:
        return url_source(settings.model_url, settings.sha256, env)
    return catalogue_source(settings.model, env)


def installed(env: Mapping[str, str] = os.environ) -> list[Path]:
    """Complete model files in the models directory."""
    directory = models_dir(env)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".gguf")
