"""Which ghost text is better on Neovim 0.12: the plugin's own, or vim.lsp.inline_completion?

Not a test (the suite checks the plugin's own); the measurement behind the `renderer` default,
reported in editors/nvim/README.md. For each renderer, the same session a few times over:
a real Neovim 0.12, the real server, the fake provider answering 300 ms late with the length
of the line it was asked about (so a suggestion drawn for any other line is recognisable); a
typist who types a character every 60-200 ms and pauses 250-600 ms now and then (seeded).
Sampled every ~5 ms:

- stale: samples whose ghost text does not fit the line as it is at that moment (``fits``:
  the answer for this line, or the rest of one for an earlier state of it that the user typed
  through); the issue saw ~1 in 10 with the built-in;
- shown: samples with any ghost text;
- latency: from the last keystroke of a word to its correct suggestion on screen;
- calls: provider calls per session.

    CRUCIBLE_NVIM=/path/to/nvim-0.12 python editors/nvim/test/measure_renderers.py [--rounds 3]

(from the repository root, with pynvim installed: `editors/nvim/test/run.sh` installs both.)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).parent)]

from nvim_harness import (  # noqa: E402
    NEOVIMS,
    REPO,
    Editor,
    fits,
    line_length_answer,
    prompt_line,
    settings_for,
)
from tests.fakes.provider import FakeProvider, Fault, RecordedRequest  # noqa: E402

MODEL = "qwen2.5-coder:1.5b-base"
WORDS = ["total", "=", "price(a,", "b)", "+", "tax", "*", "rate"]
RENDERERS = {
    "own": ("crucible", "CrucibleSuggestion"),
    "builtin": ("nvim.lsp.inline_completion", "ComplHint"),
}


def answer(request: RecordedRequest) -> str:
    return line_length_answer(prompt_line(request.body))


def session(binary: str, version: str, renderer: str, seed: int) -> dict[str, float]:
    namespace, highlight = RENDERERS[renderer]
    with tempfile.TemporaryDirectory() as tmp, FakeProvider(model=MODEL, reply=answer) as fake:
        home, workspace = Path(tmp) / "home", Path(tmp) / "ws"
        (workspace / ".git").mkdir(parents=True)
        home.mkdir()
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
            os.environ[name] = str(home / name.lower())
        os.environ["PYTHONPATH"] = str(REPO / "server")
        fake.inject(Fault(latency_ms=300), times=None)
        editor = Editor(binary, version, home, workspace)
        try:
            # A plain server: the comparison is of the renderers, and a shared daemon (the
            # default) would outlive the session in the user's own XDG_RUNTIME_DIR.
            editor.setup(settings=settings_for(fake), renderer=renderer, shared=False)
            editor.edit(workspace / "demo.py", "import os\n\n")
            editor.wait_attached()
            editor.input("Go")
            rng = random.Random(seed)
            samples = stale = shown = 0
            latencies: list[float] = []
            for word in WORDS:
                for char in word + " ":
                    editor.input(char)
                    last_key = time.monotonic()
                    pause = (
                        1.5  # a word done: long enough for its suggestion
                        if char == " "
                        else rng.uniform(0.25, 0.6)
                        if rng.random() < 0.3
                        else rng.uniform(0.06, 0.2)
                    )
                    seen_right = False
                    while time.monotonic() < last_key + pause:
                        s = editor.snapshot(namespace, highlight)
                        samples += 1
                        if s["ghost"]:
                            shown += 1
                            if not fits(s["before"], s["ghost"]):
                                stale += 1
                            elif (
                                not seen_right
                                and char == " "
                                and s["ghost"] == line_length_answer(s["before"])
                            ):
                                seen_right = True
                                latencies.append(time.monotonic() - last_key)
                        time.sleep(0.005)
            return {
                "samples": samples,
                "shown": shown,
                "stale": stale,
                "latency_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
                "calls": len(fake.generation_requests()),
            }
        finally:
            editor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary, version = NEOVIMS[-1]
    print(f"Neovim {version}: {binary}")
    for renderer in RENDERERS:
        runs = [session(binary, version, renderer, seed) for seed in range(args.rounds)]
        samples = sum(r["samples"] for r in runs)
        stale = sum(r["stale"] for r in runs)
        shown = sum(r["shown"] for r in runs)
        print(
            f"{renderer:8} samples {samples:5}  ghost shown {shown:5} ({shown / samples:.0%})"
            f"  stale {stale:4} ({stale / max(shown, 1):.1%} of shown)"
            f"  median latency after a pause {statistics.median(r['latency_ms'] for r in runs):.0f}"
            f" ms  provider calls/session {statistics.mean(r['calls'] for r in runs):.1f}"
        )


if __name__ == "__main__":
    main()
