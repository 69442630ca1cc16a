"""Fixtures shared by the unit tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crucible.shared.place import DaemonPlace, private_dir


@pytest.fixture
def place() -> Iterator[DaemonPlace]:
    """A shared daemon's private directory, for a daemon driven in this process."""
    root = Path(tempfile.mkdtemp(prefix="crp", dir="/tmp"))  # a socket path is short
    try:
        yield DaemonPlace(private_dir(root / "crucible"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
