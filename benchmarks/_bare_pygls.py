"""A bare pygls 2 language server: the endurance run's baseline for RSS after initialize.

It registers nothing: what it costs is the interpreter, pygls, lsprotocol and asyncio, the floor
under any Python language server. Run as ``python -m benchmarks._bare_pygls`` (stdio).
"""

from __future__ import annotations

from pygls.lsp.server import LanguageServer


def main() -> None:
    LanguageServer("bare-pygls", "1").start_io()


if __name__ == "__main__":
    main()
