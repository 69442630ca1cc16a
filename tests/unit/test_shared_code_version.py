"""The version a thin client and a daemon compare: a checkout's carries a fingerprint of its
sources, so that an edited or pulled checkout is the newer (``shared/code_version.py``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import crucible
from crucible.shared.code_version import code_version, source_fingerprint
from crucible.shared.handshake import Hello, newer, welcome_for


def _package(root: Path) -> Path:
    package = root / "crucible"
    (package / "shared" / "__pycache__").mkdir(parents=True)
    for name in ("__init__.py", "cli.py", "shared/__init__.py", "shared/client.py"):
        (package / name).write_text("# code\n")
    return package


def _later(path: Path) -> None:
    """Give ``path`` a modification time after every other file's (coarse clocks)."""
    later = time.time_ns() + 10**9
    os.utime(path, ns=(later, later))


def test_an_installed_package_says_its_release_alone(tmp_path: Path) -> None:
    installed = _package(tmp_path / "lib" / "python3.11" / "site-packages")
    assert code_version(installed) == crucible.__version__
    debian = _package(tmp_path / "usr" / "lib" / "python3" / "dist-packages")
    assert code_version(debian) == crucible.__version__


def test_a_checkout_says_its_sources_newest_time_and_count(tmp_path: Path) -> None:
    package = _package(tmp_path / "checkout")
    newest, count = source_fingerprint(package)
    assert count == 4
    assert code_version(package) == f"{crucible.__version__}+dev.{newest}.4"
    # the running package is a checkout here (the tests run from one)
    assert code_version().startswith(f"{crucible.__version__}+dev.")


def test_an_edit_a_new_file_and_a_removed_file_each_make_the_checkout_newer(
    tmp_path: Path,
) -> None:
    package = _package(tmp_path / "checkout")
    before = code_version(package)
    (package / "shared" / "__pycache__" / "client.cpython-311.pyc").write_bytes(b"")
    _later(package / "shared" / "__pycache__")
    assert code_version(package) == before  # importing writes there: not a change of code
    steps = [
        lambda: _later(package / "cli.py"),  # an edit
        lambda: (package / "shared" / "budget.py").write_text("# new\n"),
        lambda: ((package / "cli.py").unlink(), _later(package)),  # git rm
    ]
    for step in steps:
        step()
        after = code_version(package)
        assert newer(after, before), (after, before)
        # the newer client retires the daemon of the older code; the older is served
        assert welcome_for(Hello(after), before, retiring=False) == (False, True)
        assert welcome_for(Hello(before), after, retiring=False) == (True, False)
        before = after


def test_a_release_still_orders_before_a_checkouts_fingerprint() -> None:
    assert newer("0.2.0+dev.1.10", "0.1.0+dev.9.10")  # the release first
    assert newer("0.1.0+dev.2.1", "0.1.0+dev.1.9")  # then the time, then the count
    assert newer("0.1.0+dev.1.10", "0.1.0+dev.1.9")  # numbers, not strings
    assert newer("0.1.0+dev.1.1", "0.1.0") and newer("0.1.0+dev.1.1", "0.1.0rc1+dev.9.9")
