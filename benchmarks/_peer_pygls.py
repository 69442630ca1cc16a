"""A bare pygls server for the peers benchmark: what the framework alone costs.

Run as a script (``python benchmarks/_peer_pygls.py``): pygls 2 and lsprotocol, the framework
Crucible is built on, with one inline-completion handler that answers nothing and pygls' own
stdio loop. The gap between it and Crucible is Crucible's own start-up; the gap between it and
the stdlib floor is the framework's.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("bare-pygls", "1")


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION)
def inline_completion(params: types.InlineCompletionParams) -> None:
    return None


if __name__ == "__main__":
    server.start_io()
