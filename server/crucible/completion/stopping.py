"""Early stop: decide, chunk by chunk, when a streaming suggestion is complete.

The provider streams text; reading stops (and the HTTP stream is closed) as soon as the
suggestion is whole, so a model that rambles on past the block costs neither time nor tokens.
``wants_multiline`` decides whether a suggestion may span lines; ``StopRule`` judges each
finished line as it streams in. The rules read indentation and bracket depth, which together
cover indentation-based languages (Python) and brace-based ones (JS/TS, Go, Rust, C) without a
parser. ``scan_brackets`` and ``suffix_overlap`` are shared with ``postprocess.py``, which must
agree with the stop rule on when a closing line duplicates what already follows the cursor.

The rule also bounds the suggestion's size whatever the provider sends: ``max_lines`` lines
and ``max_chars`` characters (``char_limit(max_tokens)``), so a provider ignoring
``max_tokens``, or sending one gigantic "token", is cut and its stream closed there.
"""

from __future__ import annotations

import copy
from enum import Enum, auto

from crucible.config.settings import Multiline
from crucible.context.window import ContextWindow

_OPEN = "([{"
_CLOSE = ")]}"
_QUOTES = "\"'`"
# What may follow the cursor on a line that still takes a block: auto-closed pairs, punctuation.
_TRAILING = frozenset(")]}'\"`;,:")
_OPENER_ENDS = (":", "{", "(", "[", "=>", "->")
_OPENER_WORDS = ("do", "then", "else", "begin")  # Ruby, Lua, Elixir, shell, Pascal blocks
_TAB_WIDTH = 4
# Characters a suggestion may have per token of ``max_tokens``. Code tokenizers average 3-4
# characters per token; runs of spaces (indentation) are single tokens of up to ~16-80, but
# they do not make up a whole suggestion. 16 per token leaves a wide margin for honest output
# and still bounds a dishonest one to a few pages (160 tokens: 2,560 characters).
CHARS_PER_TOKEN = 16


def char_limit(max_tokens: int) -> int:
    """The most characters a suggestion of ``max_tokens`` tokens may have."""
    return max(max_tokens, 1) * CHARS_PER_TOKEN


def wants_multiline(window: ContextWindow, mode: Multiline) -> bool:
    """Whether the suggestion at this cursor may span several lines.

    In ``auto`` mode it may when the rest of the line holds at most closers and punctuation and
    the line so far is blank or opens a block; after an ordinary token the user wants the line
    finished, not a block.
    """
    if mode is not Multiline.AUTO:
        return mode is Multiline.ALWAYS
    if not all(c in _TRAILING or c.isspace() for c in window.line_suffix):
        return False
    before = window.line_prefix.rstrip()
    return not before or opens_block(before)


def opens_block(line: str) -> bool:
    """Whether ``line`` (right-stripped) ends with something a block follows."""
    if line.endswith(_OPENER_ENDS):
        return True
    for word in _OPENER_WORDS:
        head = line.removesuffix(word)
        if len(head) < len(line) and not (head[-1:].isalnum() or head.endswith("_")):
            return True
    return False


def scan_brackets(line: str, open_: str = "") -> tuple[str, str]:
    """Brackets through one line: (still open, closers matching nothing opened in the text).

    ``open_`` is what earlier lines left open. Strings are skipped roughly: a ``"`` or backtick
    spans to its unescaped partner on the same line; so does ``'`` unless it follows a word
    character, ``&`` or ``<`` (an apostrophe in prose, a Rust lifetime). Strings spanning lines
    and comments are not recognised; their brackets are rarely unbalanced enough to matter.
    """
    stack = list(open_)
    unmatched: list[str] = []
    unpartnered = ""  # quote kinds with no partner further on: no need to search again
    i = 0
    while i < len(line):
        c = line[i]
        if c in _OPEN:
            stack.append(c)
        elif c in _CLOSE:
            # A mismatched pair pops anyway: tolerant of broken code, and the depth stays right.
            if stack:
                stack.pop()
            else:
                unmatched.append(c)
        elif c in _QUOTES and c not in unpartnered and _starts_string(line, i):
            end = _string_end(line, i)
            if end == -1:
                unpartnered += c
            else:
                i = end
        i += 1
    return "".join(stack), "".join(unmatched)


def suffix_overlap(last_line: str, line_suffix: str, unmatched: str) -> int:
    """How many chars of ``line_suffix`` the suggestion's last line already supplies (0: none).

    ``unmatched`` is what the whole suggestion closes of brackets opened before the cursor;
    closers of ``line_suffix`` count as supplied only if the suggestion closes them itself,
    so ``foo()`` typed into ``print(|)`` overlaps nothing. Two ways to overlap:
    the rest of the line is closers and punctuation (``)``, ``});``) that the last line
    reproduces in order around its own text (``x: int) -> int:``), or the last line ends with
    a leading part of the rest of the line (``x,`` before ``, y)``).
    """
    rest = line_suffix.strip()
    tail = last_line.rstrip()
    if not rest or not tail:
        return 0
    if (
        all(c in _TRAILING for c in rest)
        and _closers(rest) == unmatched
        and _is_subsequence(rest, tail)
    ):
        return len(line_suffix)
    for k in range(min(len(rest), len(tail)), 0, -1):
        if tail.endswith(rest[:k]) and unmatched.endswith(_closers(rest[:k])):
            lead = len(line_suffix) - len(line_suffix.lstrip())
            return len(line_suffix) if k == len(rest) else lead + k
    return 0


class _Verdict(Enum):
    CONTINUE = auto()
    KEEP_AND_STOP = auto()  # the line completes the suggestion
    STOP_BEFORE = auto()  # the line is already past the suggestion's end


class StopRule:
    """Judges a streaming suggestion line by line; one instance per request.

    Only finished lines (followed by a newline) are judged while streaming; ``text`` judges the
    trailing partial line as if the stream had ended there. ``max_lines`` counts the rest of
    the cursor line as the first line, blank lines included. Past ``max_chars`` characters
    (None: no limit) the stream is taken as ended there, as a provider's own token limit
    would end it: the text is cut at that character and judged like any other.
    """

    def __init__(
        self,
        window: ContextWindow,
        *,
        multiline: bool,
        max_lines: int,
        max_chars: int | None = None,
    ) -> None:
        self._multiline = multiline
        self._max_lines = max(max_lines, 1)
        self._room = max_chars  # characters still accepted (None: no limit)
        self._line_suffix = window.line_suffix
        self._cursor_indent = _indent_width(window.line_prefix)
        before = window.line_prefix.rstrip()
        # After an opener the block sits one level deeper, at the first body line's indentation.
        self._block_indent: int | None = (
            None if before and opens_block(before) else self._cursor_indent
        )
        self._top_level = not window.line_prefix and not window.line_suffix.strip()
        self._lines: list[str] = []  # finished lines accepted; line 0 continues the cursor line
        self._partial: list[str] = []  # chunks of the line still streaming
        self._open = ""  # brackets the suggestion opened and has not closed
        self._unmatched = ""  # closers of brackets opened before the cursor
        self._blank_run = 0  # blank lines just accepted after some code (top level only)
        self._has_code = False
        self._done = False
        self._text = ""

    @property
    def text(self) -> str:
        """The accepted suggestion: cut at the stop point, or everything so far if not done."""
        if self._done:
            return self._text
        ended = copy.copy(self)
        ended._lines = list(self._lines)
        ended._partial = list(self._partial)
        ended._end()
        return ended._text

    def _end(self) -> None:
        """Judge the trailing partial line as if the stream ended now, and complete."""
        if not self._take("\n"):
            self._complete(self._lines)

    def feed(self, chunk: str) -> bool:
        """Take the next chunk; True once the suggestion is complete (stop reading)."""
        if self._done:
            return True
        if self._room is not None:
            if len(chunk) >= self._room:
                # The size limit: what came so far is the whole stream (one dishonest token
                # may be megabytes: only the part that fits is ever split or copied).
                self._take(chunk[: self._room])
                if not self._done:
                    self._end()
                return True
            self._room -= len(chunk)
        return self._take(chunk)

    def _take(self, chunk: str) -> bool:
        *finished, rest = chunk.split("\n")
        for piece in finished:
            line = ("".join(self._partial) + piece).removesuffix("\r")
            self._partial = []  # rebound, not cleared: ``text`` works on a shallow copy
            self._finish_line(line)
            if self._done:
                return True
        if rest:
            self._partial.append(rest)
        return False

    def _finish_line(self, line: str) -> None:
        if not self._multiline:
            # A line break before any text means "nothing to add to this line".
            self._complete([line] if line.strip() else [])
            return
        verdict = self._judge(line)
        if verdict is _Verdict.STOP_BEFORE:
            self._complete(self._lines)
        elif verdict is _Verdict.KEEP_AND_STOP:
            self._complete([*self._lines, line])
        else:
            self._lines.append(line)
            if len(self._lines) >= self._max_lines:
                self._complete(self._lines)

    def _judge(self, line: str) -> _Verdict:
        index = len(self._lines)
        if not line.strip():
            if self._top_level and self._has_code:
                self._blank_run += 1
                if self._blank_run == 2:  # two blank lines end a top-level definition
                    return _Verdict.STOP_BEFORE
            return _Verdict.CONTINUE
        indent = self._cursor_indent if index == 0 else _indent_width(line)
        if self._blank_run and indent == 0:  # top level: a blank line, then the next definition
            return _Verdict.STOP_BEFORE
        self._blank_run = 0
        self._open, closed = scan_brackets(line, self._open)
        self._unmatched += closed
        if len(self._open) < len(self._unmatched) and indent <= self._cursor_indent:
            # The suggestion closes a construct opened before the cursor: its end.
            return _Verdict.KEEP_AND_STOP if self._keeps(line) else _Verdict.STOP_BEFORE
        if self._block_indent is None and index > 0:
            self._block_indent = indent
        if self._block_indent is not None and indent < self._block_indent:
            return _Verdict.STOP_BEFORE  # dedented out of the block
        self._has_code = True
        return _Verdict.CONTINUE

    def _keeps(self, line: str) -> bool:
        """Whether a line closing an enclosing construct belongs in the suggestion.

        It does unless it is a bare closer that the rest of the cursor line already holds and
        that postprocess could not turn into a replacement of that rest.
        """
        if _closers(self._line_suffix)[:1] != self._unmatched[:1]:
            return True  # the document lacks this closer
        if not all(c in _TRAILING for c in line.strip()):
            return True  # code before the closer must not be lost
        return suffix_overlap(line, self._line_suffix, self._unmatched) > 0

    def _complete(self, lines: list[str]) -> None:
        end = len(lines)
        while end and not lines[end - 1].strip():
            end -= 1
        self._text = "\n".join(lines[:end])
        self._done = True


def _starts_string(line: str, i: int) -> bool:
    if line[i] != "'" or i == 0:
        return True
    before = line[i - 1]
    return not (before.isalnum() or before in "_&<")


def _string_end(line: str, start: int) -> int:
    """Index of the unescaped quote closing the string opened at ``start``, or -1."""
    quote = line[start]
    end = line.find(quote, start + 1)
    while end != -1:
        first = end
        while first > start + 1 and line[first - 1] == "\\":
            first -= 1
        if (end - first) % 2 == 0:  # an even run of backslashes escapes only itself
            return end
        end = line.find(quote, end + 1)
    return -1


def _closers(text: str) -> str:
    return "".join(c for c in text if c in _CLOSE)


def _is_subsequence(needle: str, haystack: str) -> bool:
    chars = iter(haystack)
    return all(c in chars for c in needle)


def _indent_width(line: str) -> int:
    """Columns of leading whitespace, tabs to the next multiple of ``_TAB_WIDTH``."""
    width = 0
    for c in line:
        if c == " ":
            width += 1
        elif c == "\t":
            width += _TAB_WIDTH - width % _TAB_WIDTH
        else:
            break
    return width
