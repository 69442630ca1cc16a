"""DocumentSnapshot: the immutable view of one document that services work on.

The LSP layer copies pygls's live document into a snapshot at the start of a request, so a
``didChange`` arriving while a completion streams never changes the text it was computed for.
Offsets here are Python string indices (code points); UTF-16 lives only in ``lsp/convert.py``.

A document's text is valid Unicode: ``valid_text`` replaces every surrogate code point with
U+FFFD on the way in (the LSP layer calls it on each text a client sends). JSON lets a client
send a lone surrogate (``"\\ud800"``), which Python decodes into a string no UTF-8 encoder
accepts; one such document, sent as a neighbour, made every provider request of its language
fail to encode. One code point for one keeps every offset and position where it was: a lone
surrogate is one UTF-16 unit, as U+FFFD is.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

_REPLACE_SURROGATES = "crucible.replace_surrogates"


def _replace_surrogates(error: UnicodeError) -> tuple[bytes, int]:
    """Codec error handler: one U+FFFD per code point UTF-8 cannot encode (a surrogate).

    As bytes: CPython's UTF-8 encoder takes only ASCII from a handler's ``str``."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "\ufffd".encode() * (error.end - error.start), error.end


codecs.register_error(_REPLACE_SURROGATES, _replace_surrogates)


def valid_text(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD (one for one).

    The common cases cost one C-speed pass and no copy: ASCII text, and text that encodes.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", _REPLACE_SURROGATES).decode("utf-8")
    return text


@dataclass(frozen=True, slots=True)
class DocumentSnapshot:
    """A document's text at one version: the whole text, or, for a completion in a large
    document, an excerpt of whole lines around the cursor wide enough for everything a
    completion reads (the LSP layer cuts it; ``base_line`` maps its lines back to the
    document's). Offsets index ``text`` either way."""

    uri: str
    path: str  # file-system path or the URI when it has none; shown to models as the file name
    language_id: str
    version: int
    text: str
    base: int = 0  # offset in the document of ``text[0]``, a line start
    base_line: int = 0  # the document line ``text`` starts on

    def line_bounds(self, offset: int) -> tuple[int, int]:
        """Start and end offsets (end excludes the newline) of the line holding ``offset``."""
        start = self.text.rfind("\n", 0, offset) + 1
        end = self.text.find("\n", offset)
        return start, len(self.text) if end == -1 else end


@dataclass(frozen=True, slots=True)
class ContextFile:
    """Another document offered to the model as context (a neighbour open in the editor)."""

    path: str
    text: str
