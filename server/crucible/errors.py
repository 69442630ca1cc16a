"""Root exception types.

::

    CrucibleError
    ├── ConfigError            config/: a value that could not be used (the field falls back)
    └── ProviderError          providers/errors.py draws the rest of this tree
"""

from __future__ import annotations


class CrucibleError(Exception):
    """Root of every error Crucible raises on purpose."""


class ConfigError(CrucibleError):
    """A configuration value could not be used; ``key`` names it (dotted path)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
