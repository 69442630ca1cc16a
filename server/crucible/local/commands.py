"""``crucible-lsp models list | pull NAME | rm NAME``: the local kind's models, by hand.

``pull`` takes a catalogue name (``list`` shows them) or an http(s) URL of a GGUF file (with
``--sha256``); ``--no-verify`` accepts a file whose digest nobody gave. Progress goes to stderr,
one line per 5 % (a terminal gets it on one line, redrawn). Exit 0 on success, 1 on failure,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from crucible.errors import CrucibleError
from crucible.local.catalogue import CATALOGUE, DEFAULT
from crucible.local.download import download
from crucible.local.models import (
    ModelSource,
    catalogue_source,
    installed,
    models_dir,
    url_source,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crucible-lsp models",
        description="The models of the local provider kind (in $XDG_CACHE_HOME/crucible/models).",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="the catalogue, and what is downloaded")
    pull = verbs.add_parser("pull", help="download a model (resumes an interrupted download)")
    pull.add_argument("name", help="a catalogue name, or the http(s) URL of a GGUF file")
    pull.add_argument("--sha256", default="", help="the file's SHA-256 (for a URL)")
    pull.add_argument(
        "--no-verify", action="store_true", help="accept a file without a SHA-256 to check"
    )
    remove = verbs.add_parser("rm", help="delete a downloaded model (and any partial download)")
    remove.add_argument("name", help="a catalogue name, or a file name in the models directory")
    return parser


def run_models(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.verb == "list":
            return _list(env)
        if args.verb == "pull":
            return _pull(args.name, args.sha256.strip().lower(), not args.no_verify, env)
        return _remove(args.name, env)
    except CrucibleError as exc:
        print(f"crucible-lsp models: {exc}", file=sys.stderr)
        return 1


def _list(env: Mapping[str, str]) -> int:
    print(f"Models directory: {models_dir(env)}")
    listed = set()
    for entry in CATALOGUE:
        source = catalogue_source(entry.name, env)
        listed.add(source.path)
        state = "downloaded" if source.present else "not downloaded"
        if not source.present and source.partial.exists():
            state = f"partial ({source.partial.stat().st_size * 100 // entry.size} %)"
        default = " (default)" if entry.name == DEFAULT else ""
        print(f"  {entry.name:22} {entry.size / 1e6:7.0f} MB  {state:16} {entry.summary}{default}")
    for path in installed(env):
        if path not in listed:
            print(f"  {path.name:22} {path.stat().st_size / 1e6:7.0f} MB  downloaded (by URL)")
    return 0


def _pull(name: str, sha256: str, verify: bool, env: Mapping[str, str]) -> int:
    if name.startswith(("http://", "https://")):
        source = url_source(name, sha256, env)
    else:
        source = catalogue_source(name, env)
    if source.present:
        print(f"{source.name}: already downloaded ({source.path})")
        return 0
    path = download(source, verify=verify, progress=_Bar(source))
    print(f"{source.name}: downloaded to {path}")
    return 0


def _remove(name: str, env: Mapping[str, str]) -> int:
    source: ModelSource
    try:
        source = catalogue_source(name, env)
    except CrucibleError:
        path = models_dir(env) / os.path.basename(name)
        source = ModelSource(name, path)
    removed = [p for p in (source.path, source.partial) if p.is_file()]
    for path in removed:
        path.unlink()
    if not removed:
        print(f"{name}: nothing to remove in {models_dir(env)}", file=sys.stderr)
        return 1
    print(f"{name}: removed {', '.join(str(p) for p in removed)}")
    return 0


class _Bar:
    """Progress on stderr: redrawn in place on a terminal, a line per 5 % otherwise."""

    def __init__(self, source: ModelSource) -> None:
        self._name = source.name
        self._shown = -1
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        if not total:
            return
        percent = done * 100 // total
        step = percent if self._tty else percent // 5 * 5
        if step == self._shown:
            return
        self._shown = step
        text = f"{self._name}: {percent:3d} % of {total / 1e6:.0f} MB"
        if self._tty:
            print(f"\r{text}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)
