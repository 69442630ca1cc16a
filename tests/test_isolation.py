"""The test session's own isolation (tests/conftest.py): every server a test starts with the
test's environment keeps to a private folder of its worker's, never the user's own
configuration, cache, logs or shared daemon; two workers never share an L2 file or a socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from crucible.config.paths import default_cache_dir
from crucible.shared.place import daemon_dir, log_path


def test_servers_started_with_the_tests_environment_stay_out_of_the_users_directories() -> None:
    home = Path.home()
    folders = [
        Path(os.environ[name])
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
    ]
    for folder in folders:
        assert folder.is_dir() and not folder.is_relative_to(home), folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # One private folder holds them all, so the session's end removes them together.
    assert len({folder.parent for folder in folders}) == 1
    assert default_cache_dir(os.environ).is_relative_to(folders[1])
    assert log_path(os.environ).is_relative_to(folders[2])
    assert daemon_dir(os.environ).parent == folders[3]
    # The daemon's socket there fits the ~107 bytes of a Unix socket path.
    assert len(str(daemon_dir(os.environ) / "daemon.sock")) < 100
