"""Open documents as the LSP layer hands them to ``context/``, built from a snapshot.

The server builds an ``OpenFile`` over pygls's document (``lsp/handlers/documents.py``
``open_file``); tests have a ``DocumentSnapshot`` in hand and need the same candidate.
"""

from __future__ import annotations

from crucible.context.neighbours import OpenFile
from crucible.context.snapshot import DocumentSnapshot


def open_file(snapshot: DocumentSnapshot) -> OpenFile:
    """``snapshot`` as a neighbour candidate (its text is already in hand)."""
    text = snapshot.text
    size = len(text)
    return OpenFile(snapshot.uri, snapshot.path, snapshot.language_id, size, lambda n: text[:n])
