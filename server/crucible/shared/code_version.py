"""Which code a process runs, as the shared daemon's handshake compares it: ``__version__``,
plus, for a checkout (an editable install: the package is not under ``site-packages``), a
fingerprint of its sources.

Why: a developer's editable install keeps ``__version__`` across a ``git pull`` or an edit,
so a daemon started before it would serve new windows with the old code (it imported it once)
while the windows' thin clients ran the new. With the fingerprint, a changed checkout reads as
a newer version and retires the older daemon as an upgrade does (``shared/handshake.py``).

The fingerprint is ``+dev.<newest mtime_ns>.<count>``, a PEP 440 local version label: the
newest modification time (nanoseconds) of the package's ``.py`` files and of its folders (a
file removed or added changes its folder's), then how many ``.py`` files there are. Ordered
by time first, so the checkout changed last is the newer (``handshake.version_order``).
``git checkout`` and ``git pull`` write the files they change with the current time, so going
back to an older commit also reads as newer, which is what is wanted: the daemon runs the code
that is on disk now.

Cost (the thin client pays it on every window's start): one ``scandir`` per folder and one
``stat`` per file, ~150 files: measured in ``docs/startup.md``. Installed from a wheel there
is nothing to compute: the release number says it all. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

import crucible

_INSTALLED = frozenset({"site-packages", "dist-packages"})


def code_version(package: Path | None = None) -> str:
    """``crucible.__version__`` (read now: tests patch it), with the fingerprint of
    ``package`` (default: crucible's own folder) when that is a checkout."""
    version = crucible.__version__
    folder = package if package is not None else Path(crucible.__file__).parent
    if _INSTALLED.intersection(folder.parts):
        return version
    newest, count = source_fingerprint(folder)
    if count == 0:  # no sources to look at (a zipped or frozen package)
        return version
    return f"{version}{'.' if '+' in version else '+'}dev.{newest}.{count}"


def source_fingerprint(folder: Path) -> tuple[int, int]:
    """(newest mtime_ns of the ``.py`` files under ``folder`` and of its folders, the number
    of ``.py`` files). ``__pycache__`` is left out: importing writes there."""
    newest, count = 0, 0
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            entries = os.scandir(current)
            newest = max(newest, os.stat(current).st_mtime_ns)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name != "__pycache__":
                            pending.append(entry.path)
                    elif entry.name.endswith(".py"):
                        newest = max(newest, entry.stat().st_mtime_ns)
                        count += 1
                except OSError:
                    continue  # removed while we looked: the next window sees the change
    return newest, count
