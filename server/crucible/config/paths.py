"""Crucible's own directories on this machine, from the XDG base directory variables.

Config sits below every other package, so the directory the disk cache lives in is named
here: ``cache/disk.py`` puts its file there, and ``trust.py`` accepts a workspace's cache path
only inside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/crucible``, else ``~/.cache/crucible`` (a relative XDG value is ignored,
    as the XDG spec says)."""
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "crucible"
