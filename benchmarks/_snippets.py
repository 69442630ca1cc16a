"""What the typing replay types, and what its fake "model" answers.

The benchmark types realistic code: a burst starts at an anchor inside one of :data:`SNIPPETS` and
types the next ``keys`` characters of it, one keystroke each. The fake provider plays a model that
already knows the target program: given a prompt that ends somewhere in a snippet it answers the
rest of that line (:func:`continuation`). So a suggestion computed for an earlier keystroke of the
same line still fits the text the user ends up with, which is what a server that reuses a running
stream, or keeps a suggestion while it is being typed through, depends on.

Every typed document starts with a header comment naming the burst and the repetition
(:func:`header`): each repetition is a different document, so a response cache cannot turn the
second repetition of a burst into a free hit. The snippets carry non-ASCII text (°, →, an emoji
outside the Basic Multilingual Plane) that the bursts type through, so positions must be right in
UTF-16 code units.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

HEADER_MARK = "typing-replay"
FALLBACK = "return None"  # what the "model" says about text it does not know


@dataclass(frozen=True)
class Snippet:
    name: str
    language_id: str
    extension: str
    comment: str  # line-comment marker, for the header
    text: str


PYTHON = Snippet(
    "python",
    "python",
    "py",
    "#",
    '''"""Read sensor readings and report the daily range."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    station: str
    celsius: float


def daily_range(readings: list[Reading]) -> dict[str, tuple[float, float]]:
    by_station: dict[str, list[float]] = {}
    for reading in readings:
        by_station.setdefault(reading.station, []).append(reading.celsius)
    return {name: (min(values), max(values)) for name, values in by_station.items()}


def describe(readings: list[Reading]) -> str:
    temperatures = [reading.celsius for reading in readings]
    mean = statistics.fmean(temperatures)
    return f"{len(readings)} readings, mean {mean:.1f} °C"
''',
)

TYPESCRIPT = Snippet(
    "typescript",
    "typescript",
    "ts",
    "//",
    """export interface Task {
  id: number;
  title: string;
  done: boolean;
  tags: string[];
}

export function summarize(tasks: Task[]): string {
  const open = tasks.filter((task) => !task.done);
  const tagged = new Map<string, number>();
  for (const task of open) {
    for (const tag of task.tags) {
      tagged.set(tag, (tagged.get(tag) ?? 0) + 1);
    }
  }
  const top = [...tagged.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return `${open.length} open → ${top.map(([tag]) => tag).join(", ")}`;
}
""",
)

GO = Snippet(
    "go",
    "go",
    "go",
    "//",
    """package cache

import (
\t"sync"
\t"time"
)

type entry struct {
\tvalue   string
\texpires time.Time
}

// Cache keeps values for a fixed time to live 🚀 and forgets them after.
type Cache struct {
\tmu      sync.Mutex
\tttl     time.Duration
\tentries map[string]entry
}

func New(ttl time.Duration) *Cache {
\treturn &Cache{ttl: ttl, entries: make(map[string]entry)}
}

func (c *Cache) Get(key string, now time.Time) (string, bool) {
\tc.mu.Lock()
\tdefer c.mu.Unlock()
\te, ok := c.entries[key]
\tif !ok || now.After(e.expires) {
\t\tdelete(c.entries, key)
\t\treturn "", false
\t}
\treturn e.value, true
}
""",
)

SNIPPETS = (PYTHON, TYPESCRIPT, GO)


@dataclass(frozen=True)
class Burst:
    """``keys`` keystrokes typing ``snippet`` from ``anchor`` on.

    The gap between keystrokes is ``gap_ms`` exactly when ``jitter_ms`` is 0, else uniform in
    ``gap_ms ± jitter_ms``; after keystroke ``think_after`` (1-based) the user stops for
    ``think_ms`` more, mid-burst.
    """

    name: str
    snippet: Snippet
    anchor: str
    keys: int
    gap_ms: float
    jitter_ms: float = 0.0
    think_after: int | None = None
    think_ms: float = 0.0

    @property
    def start(self) -> int:
        return self.snippet.text.index(self.anchor)

    @property
    def typed(self) -> str:
        """The characters the burst types, one keystroke each."""
        return self.snippet.text[self.start : self.start + self.keys]

    def gaps(self, rng: random.Random) -> list[float]:
        """Seconds between consecutive keystrokes (``keys - 1`` of them)."""
        gaps = []
        for number in range(1, self.keys):
            gap = self.gap_ms + (rng.uniform(-1, 1) * self.jitter_ms if self.jitter_ms else 0.0)
            if number == self.think_after:
                gap += self.think_ms
            gaps.append(gap / 1000)
        return gaps

    def check(self) -> None:
        """The burst must end mid-line, so that a suggestion can fit the final text at all."""
        end = self.start + self.keys
        if end >= len(self.snippet.text) or not rest_of_line(self.snippet.text, end):
            raise ValueError(f"burst {self.name!r} ends where nothing is left to suggest")


# 20-60 ms between keys is a fast typist's rhythm; "40 keys @ 30 ms" is the yardstick.
BURSTS = (
    Burst("word: 8 keys @ 20-60 ms", PYTHON, "statistics.fmean", 8, 40, 20),
    Burst("line: 30 keys @ 20-60 ms", TYPESCRIPT, "return `${open", 30, 40, 20),
    Burst("40 keys @ 30 ms", GO, "func New(ttl", 40, 30),
    Burst("2x20 keys, 500 ms think", PYTHON, "by_station.setdefault", 40, 40, 20, 20, 500),
    Burst("across lines: 50 keys @ 20-60 ms", GO, "a fixed time", 50, 40, 20),
)
QUICK_BURSTS = (BURSTS[0], BURSTS[2])


def header(snippet: Snippet, burst_index: int, repetition: int) -> str:
    """The first line of a typed document: makes every repetition a distinct document."""
    return f"{snippet.comment} {HEADER_MARK} burst {burst_index} repetition {repetition}\n"


def rest_of_line(text: str, offset: int) -> str:
    end = text.find("\n", offset)
    return text[offset : len(text) if end < 0 else end]


def continuation(prompt: str) -> str:
    """The fake model's answer to a FIM prompt (the text before the cursor).

    The rest of the cursor's line in the snippet being typed; at the end of a line, the next
    line (a model continues there too). A prompt that is no snippet's text gets :data:`FALLBACK`.
    """
    for snippet in SNIPPETS:
        cursor = _cursor_in(snippet.text, prompt)
        if cursor is None:
            continue
        rest = rest_of_line(snippet.text, cursor)
        if rest:
            return rest
        return "\n" + rest_of_line(snippet.text, cursor + 1) if cursor < len(snippet.text) else ""
    return FALLBACK


def _cursor_in(text: str, prompt: str) -> int | None:
    """Where in ``text`` a prompt ending at the cursor ends, or None if it is not from ``text``."""
    first, newline, body = prompt.partition("\n")
    if newline and HEADER_MARK in first and text.startswith(body):
        return len(body)
    # The server may have cut the prompt to its context budget, header and all: then the prompt
    # is a piece of the snippet ending at the cursor. Rare with these short snippets.
    if prompt and (found := text.rfind(prompt)) >= 0:
        return found + len(prompt)
    return None


for _burst in BURSTS:
    _burst.check()
