"""How soon a new Neovim shows its first suggestion: with the shared server (the plugin's
default) or a plain server of its own (``shared = false``).

Not a test (the suite checks behaviour); the measurement behind the ``shared`` default,
reported in editors/nvim/README.md. What a user does many times a day: start Neovim on a
file (``nvim demo.py``), and type at once. Each session is a fresh real Neovim, the real
server, the fake provider answering at once; the time is from Neovim's spawn to the ghost text
on screen, for keys typed as soon as the file is open (before the server has started).
Sessions alternate between the two ways, ``--rounds`` of each:

- plain: ``shared = false``, a server of its own (its whole import before a suggestion);
- shared, warm: a thin client of a daemon that is already running (another Neovim started
  it: the case for every Neovim but the day's first);
- shared, cold: a thin client that starts the daemon first (the daemon ended before it).

Everything runs in a temporary XDG_RUNTIME_DIR, and the daemons there are ended at the end.

    CRUCIBLE_NVIM=/path/to/nvim python editors/nvim/test/measure_shared.py [--rounds 7]

(from the repository root, with pynvim installed: `editors/nvim/test/run.sh` installs it.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).parent)]

from nvim_harness import NEOVIMS, REPO, Editor, end_daemons, settings_for  # noqa: E402
from tests.fakes.provider import FakeProvider  # noqa: E402

MODEL = "qwen2.5-coder:1.5b-base"
WAYS = ("plain", "shared, warm", "shared, cold")


def session(binary: str, version: str, way: str, tmp: Path, fake: FakeProvider) -> float:
    """Seconds from Neovim's spawn to the first ghost text."""
    runtime = tmp / "runtime"
    if way == "shared, cold":
        end_daemons(runtime)
    home = Path(tempfile.mkdtemp(dir=tmp))
    workspace = home / "ws"
    (workspace / ".git").mkdir(parents=True)
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        os.environ[name] = str(home / name.lower())
    spawned = time.monotonic()
    editor = Editor(binary, version, home, workspace)
    try:
        editor.setup(settings=settings_for(fake), shared=way != "plain")
        editor.edit(workspace / "demo.py", "import os\n\n")
        editor.input("Godef add(a, b):<CR>")
        editor.wait_ghost(timeout=30)
        return time.monotonic() - spawned
    finally:
        editor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    binary, version = NEOVIMS[-1]
    print(f"Neovim {version}: {binary}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as name, FakeProvider(model=MODEL, reply="a + b") as fake:
        tmp = Path(name)
        (tmp / "runtime").mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(tmp / "runtime")
        os.environ["PYTHONPATH"] = str(REPO / "server")
        os.environ.pop("CRUCIBLE_SHARED", None)
        try:
            for way in WAYS:  # one discarded each: page cache, .pyc files, the daemon
                session(binary, version, way, tmp, fake)
            times: dict[str, list[float]] = {way: [] for way in WAYS}
            for _ in range(args.rounds):
                for way in WAYS:
                    times[way].append(session(binary, version, way, tmp, fake))
        finally:
            end_daemons(tmp)
    plain = statistics.median(times["plain"])
    print(f"spawn -> first ghost text, median of {args.rounds} (min-max):")
    for way in WAYS:
        median = statistics.median(times[way])
        print(
            f"  {way:13} {1000 * median:6.0f} ms ({1000 * min(times[way]):.0f}-"
            f"{1000 * max(times[way]):.0f})  {median / plain:.2f}x plain"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
