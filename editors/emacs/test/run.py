"""Run the Emacs suite: ERT in ``emacs --batch`` with eglot, against the real Crucible server
and the loopback fake provider.

    python editors/emacs/test/run.py [--emacs PATH] [--selector ERT-SELECTOR]

What it sets up, so that crucible-test.el only drives Emacs:

- two fake providers (``tests/fakes``) speaking Ollama's wire format on 127.0.0.1: a fast
  one, named in the user configuration file (``$XDG_CONFIG_HOME/crucible/config.toml``: a
  workspace file may not name providers), and a slow one (300 ms before each answer) that
  the stale-suggestion test names in its initializationOptions. Their answer depends on the
  line before the cursor (``reply``), so a test can tell which text a suggestion was made for;
- a ``crucible-lsp`` on PATH that runs this checkout's server (``server/`` first on
  PYTHONPATH), so the editor starts it the way a user's editor does;
- HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME in a temporary folder: nothing of the user's is
  read or written.

Emacs finds eglot itself (built in from Emacs 29; Debian's ``elpa-eglot`` on Emacs 28, loaded
by ``package-initialize``). The ``rass`` test runs when ``rass`` and ``ruff`` are on PATH (the
folder of this Python is put first, so a venv's are found) and is skipped otherwise, saying so.

Then, when tmux is there, one check in a real terminal (``emacs -nw`` in tmux), set up the way
the README tells a user (its plain init.el snippet, in ``~/.emacs.d/init.el``, with ruff as the
user's own server): the mode line says ``Crucible:ready``, typing shows the suggestion on
screen, TAB accepts it and the saved file has it.

The last line is ``emacs: N passed, N failed``; the exit status is 0 when all passed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from tests.fakes.provider import FakeProvider  # noqa: E402
from tests.fakes.records import Fault, RecordedRequest  # noqa: E402

MODEL = "qwen2.5-coder:1.5b-base"
SLOW_MS = 300
TIMEOUT_S = 150  # the whole suite takes ~15 s; this only stops a hang


def reply(request: RecordedRequest) -> str:
    """The provider's answer, chosen by the line before the cursor (Ollama: ``prompt`` is the
    text before it)."""
    body = request.body if isinstance(request.body, dict) else {}
    prompt = str(body.get("prompt", ""))
    line = prompt.rsplit("\n", 1)[-1]
    options = body.get("options")
    sampled = isinstance(options, dict) and options.get("temperature", 0) > 0.5
    if prompt.rstrip().endswith("def add(a, b):"):
        # An alternative (a sample at temperature 0.8) differs from the first suggestion.
        return "return sum((a, b))" if sampled else "return a + b"
    if prompt.rstrip().endswith("def scale(values, factor):"):
        return "result = [v * factor for v in values]"
    if prompt.rstrip().endswith("def pair(a, b):"):
        return "first = a\n    return first, b"
    if line.endswith("total = add("):
        return "1, 2)"
    if line.startswith("n = "):
        # Names the line it was made for: a suggestion shown on another line is visible.
        return f" + 0  # after {line}"
    return "pass"


def write_config(home: Path, fake: FakeProvider) -> None:
    config = home / "xdg-config" / "crucible" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "[[providers]]\n"
        'name = "fake"\n'
        'kind = "ollama"\n'
        f'base_url = "{fake.base_url}"\n'
        f'model = "{MODEL}"\n'
        "\n[completion]\n"
        'debounce_mode = "fixed"\n'
        "debounce_ms = 0\n"
        "alternatives = 2\n"
        "\n[cache]\n"
        'prefetch = "off"\n'
    )


def write_server_shim(bin_dir: Path) -> None:
    """``crucible-lsp`` running this checkout's server with this Python."""
    bin_dir.mkdir()
    shim = bin_dir / "crucible-lsp"
    server = REPO / "server"
    shim.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{server}${{PYTHONPATH:+:$PYTHONPATH}}"'
        f' exec "{sys.executable}" -m crucible "$@"\n'
    )
    shim.chmod(0o755)


INIT_EL = """\
;; The README's plain set-up, with ruff as the user's own Python server.
(setq native-comp-async-report-warnings-errors 'silent)   ; Debian's packages warn at startup
(with-eval-after-load 'eglot
  (add-to-list 'eglot-server-programs '(python-mode . ("ruff" "server"))))
(add-to-list 'load-path "{emacs_dir}")
(with-eval-after-load 'eglot
  (require 'crucible)
  (crucible-eglot-setup))
(add-hook 'python-mode-hook #'eglot-ensure)
"""


def screen(session: str, *, colours: bool = False) -> str:
    flags = ["-e"] if colours else []
    return subprocess.run(
        ["tmux", "capture-pane", "-p", *flags, "-t", session],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def wait_for_screen(session: str, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in screen(session):
            return True
        time.sleep(0.1)
    return False


def terminal_check(emacs: str, root: Path, env: dict[str, str]) -> list[str]:
    """The README's set-up in ``emacs -nw`` under tmux; returns the failures."""
    home = Path(env["HOME"])
    (home / ".emacs.d").mkdir(parents=True, exist_ok=True)
    (home / ".emacs.d" / "init.el").write_text(INIT_EL.format(emacs_dir=HERE.parent))
    project = root / "terminal-project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    source = project / "main.py"
    source.write_text("import os\n\ndef add(a, b):\n")
    session = f"crucible-emacs-{os.getpid()}"
    tmux_env = [f"{key}={value}" for key, value in env.items() if key != "TMUX"]
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "24",
         "env", *tmux_env, "TERM=xterm-256color", emacs, "-nw", str(source)],
        check=True,
    )  # fmt: skip
    failures: list[str] = []
    try:
        if not wait_for_screen(session, "Crucible:ready", 30):
            return [f"no Crucible:ready in the mode line:\n{screen(session)}"]
        for keys in (["M->"], ["    "]):
            subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)
            time.sleep(0.2)
        if not wait_for_screen(session, "    return a + b", 10):
            failures.append(f"no suggestion on screen:\n{screen(session)}")
        elif "return a + b" in source.read_text():
            failures.append("the suggestion is in the file before it was accepted")
        # shadow-grey ghost text: the suggestion's line carries a colour escape before it
        shown = screen(session, colours=True).splitlines()
        line = next((row for row in shown if "return a" in row), "")
        if "\x1b[" not in line.split("return")[0]:
            failures.append(f"the suggestion is not drawn in a colour of its own: {line!r}")
        for keys in (["Tab"], ["C-x", "C-s"]):
            subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while "    return a + b" not in source.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        if "    return a + b" not in source.read_text():
            failures.append(f"TAB + save did not write the suggestion:\n{screen(session)}")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    return failures


def stop_daemon(runtime: Path) -> None:
    """End the shared daemon this run started, if any: it runs in a session of its own and
    would otherwise wait ``CRUCIBLE_DAEMON_IDLE_S`` (10 minutes) for another window. Says so,
    so that a run with ``CRUCIBLE_SHARED=1`` shows it went through the daemon."""
    try:
        pid = int((runtime / "crucible" / "daemon.pid").read_text())
    except (OSError, ValueError):
        return
    print(f"a shared daemon served this run (pid {pid}); stopping it")
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)


def summary(output: str) -> tuple[int, int]:
    """(passed, failed) from ERT's closing "Ran N tests, M results as expected, K unexpected"."""
    found = re.search(r"Ran (\d+) tests?, (\d+) results? as expected, (\d+) unexpected", output)
    if not found:
        return 0, 1
    return int(found.group(2)), int(found.group(3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emacs", default=os.environ.get("EMACS", "emacs"))
    parser.add_argument("--selector", default="t", help="ERT selector, e.g. a test-name regexp")
    args = parser.parse_args(argv)
    emacs = shutil.which(args.emacs)
    if emacs is None:
        print(f"{args.emacs} not found", file=sys.stderr)
        print("emacs: 0 passed, 1 failed")
        return 1

    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="crucible-emacs-") as tmp,
        FakeProvider(model=MODEL, reply=reply) as fast,
        FakeProvider(model=MODEL, reply=reply) as slow,
    ):
        slow.inject(Fault(latency_ms=SLOW_MS))
        root = Path(tmp)
        write_config(root, fast)
        write_server_shim(root / "bin")
        (root / "home").mkdir()
        env = {
            **os.environ,
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "xdg-config"),
            "XDG_CACHE_HOME": str(root / "xdg-cache"),
            "XDG_STATE_HOME": str(root / "xdg-state"),
            # The shared daemon's folder (CRUCIBLE_SHARED=1, --shared): this run's own, so
            # the suite never joins a daemon outside it.
            "XDG_RUNTIME_DIR": str(root / "xdg-runtime"),
            "PATH": os.pathsep.join(
                [str(root / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]]
            ),
            "CRUCIBLE_TEST_DIR": str(root),
            "CRUCIBLE_TEST_SLOW_URL": slow.base_url,
            "CRUCIBLE_TEST_MODEL": MODEL,
        }
        env.pop("PYTHONPATH", None)  # the shim sets it; rass and ruff must not see ours
        command = [
            emacs,
            "--batch",
            "--eval",
            "(package-initialize)",
            "-l",
            str(HERE / "crucible-test.el"),
            "--eval",
            f"(ert-run-tests-batch-and-exit {args.selector})",
        ]
        try:
            run = subprocess.run(
                command,
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT_S,
            )
            output, status = run.stdout, run.returncode
        except subprocess.TimeoutExpired as expired:
            output = expired.stdout if isinstance(expired.stdout, str) else ""
            output += f"\nemacs did not finish within {TIMEOUT_S} s\n"
            status = 1
        print(output, end="")
        passed, failed = summary(output)
        if status != 0 and failed == 0:
            failed = 1
        tools = [shutil.which(tool, path=env["PATH"]) for tool in ("tmux", "rass", "ruff")]
        if args.selector != "t":
            print("terminal check skipped: an ERT selector was given")
        elif all(tools):
            failures = terminal_check(emacs, root, env)
            print("terminal check (emacs -nw in tmux, the README's set-up):", end=" ")
            print("passed" if not failures else "FAILED\n" + "\n".join(failures))
            passed, failed = passed + (not failures), failed + bool(failures)
        else:
            print("terminal check skipped: needs tmux, rass and ruff on PATH")
        stop_daemon(root / "xdg-runtime")
    print(f"(wall time {time.monotonic() - started:.1f} s)")
    print(f"emacs: {passed} passed, {failed} failed")
    return 0 if status == 0 and failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
