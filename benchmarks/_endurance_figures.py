"""The endurance run's figures: the vitals table, the verdicts after the warm-up, the plot.

Verdicts (judged and printed, never asserted by the benchmark; the CI test asserts the
resource ones):

- **RSS growth < 10 %**, held for the whole run: every reading after the warm-up against the
  RSS at the end of the warm-up (a quiet reading: nothing in flight);
- the same beside the open documents' text (RSS less ``memory.components.documents``): the
  editor's files are the user's, and a 1 MB file open costs what it costs;
- **tasks, threads, open files flat**: the quiet readings (checkpoints, each taken with every
  request answered and a settle pause) after the warm-up never exceed the warm-up's by more
  than :data:`TOLERANCE` (see there why each allowance);
- **every request answered**, none with an error.

The plot is a PNG when matplotlib is importable (the ``bench`` extra), else ASCII sparklines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks._day_of_editing import Tally
from benchmarks._vitals import Vitals

RSS_GROWTH = 0.10
# How much a quiet reading may exceed the warm-up's before a resource counts as growing:
# - threads: asyncio's default executor starts its threads one per submitted job while none is
#   idle, up to min(32, cpus + 4) (6 on 2 cores); a burst after the warm-up may start the last
#   ones. Once, bounded: a leak per document or per request is hundreds.
# - open files: the provider connection pool keeps up to its keep-alive limit of sockets, and a
#   fault closes one that the next request reopens; 4 covers that churn, not a leak per event.
# - tasks: a quiet reading may still catch a prefetch or a deadline timer finishing; 2.
TOLERANCE = {"tasks": 2, "threads": 6, "open_files": 4}
_SPARKS = " ▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool | None  # None: not measured (the server does not report it)
    figure: str


def warm(readings: Sequence[Vitals], warm_events: int) -> Vitals | None:
    """The first quiet reading at or after the warm-up (the baseline of every verdict)."""
    return next((r for r in readings if r.quiet and r.events >= warm_events), None)


def verdicts(readings: Sequence[Vitals], warm_events: int, tally: Tally) -> list[Verdict]:
    base = warm(readings, warm_events)
    found = [
        Verdict(
            "every request answered, no errors",
            tally.unanswered == 0 and tally.errors == 0,
            f"{tally.answered}/{tally.requests} answered, {tally.errors} errors",
        )
    ]
    if base is None:
        return [*found, Verdict("warm-up reached", False, "no quiet reading after the warm-up")]
    after = [r for r in readings if r.at_s >= base.at_s]
    quiet = [r for r in after if r.quiet]
    peak = max(after, key=lambda r: r.rss_mb)
    growth = peak.rss_mb / base.rss_mb - 1
    found.append(
        Verdict(
            f"RSS growth < {RSS_GROWTH:.0%} after warm-up, whole run",
            growth < RSS_GROWTH,
            f"warm {base.rss_mb:.1f} MB, peak {peak.rss_mb:.1f} MB at {peak.at_s:.0f} s "
            f"({growth:+.1%}), end {after[-1].rss_mb:.1f} MB",
        )
    )
    found.append(_growth_beside_documents(base, after))
    for name in ("tasks", "threads", "open_files"):
        found.append(_flat(name, base, quiet))
    return found


def _growth_beside_documents(base: Vitals, after: Sequence[Vitals]) -> Verdict:
    """RSS less the open documents' text (the editor's files, which no budget may drop; their
    size is the server's own estimate, ``memory.components.documents``): what the server holds
    besides them."""
    label = f"RSS beside open documents' text grows < {RSS_GROWTH:.0%}"
    readings = [base, *after]
    if any(r.documents_bytes is None for r in readings):
        return Verdict(label, None, "documents not reported by the server")

    def beside(r: Vitals) -> float:
        return r.rss_mb - (r.documents_bytes or 0) / (1 << 20)

    peak = max(after, key=beside)
    growth = beside(peak) / beside(base) - 1
    return Verdict(
        label,
        growth < RSS_GROWTH,
        f"warm {beside(base):.1f} MB, peak {beside(peak):.1f} MB at {peak.at_s:.0f} s"
        f" ({growth:+.1%}), end {beside(after[-1]):.1f} MB",
    )


def _flat(name: str, base: Vitals, quiet: Sequence[Vitals]) -> Verdict:
    start = getattr(base, name)
    values = [getattr(r, name) for r in quiet]
    tolerance = TOLERANCE[name]
    label = f"{name} flat (quiet readings <= warm + {tolerance})"
    if start is None or any(v is None for v in values):
        return Verdict(label, None, "not reported by the server")
    worst = max(values)
    trail = " ".join(str(v) for v in values)
    return Verdict(label, worst <= start + tolerance, f"warm {start}, checkpoints {trail}")


def verdict_lines(found: Sequence[Verdict]) -> list[str]:
    marks = {True: "PASS", False: "FAIL", None: "n/a "}
    return [f"  [{marks[v.passed]}] {v.name}: {v.figure}" for v in found]


def _cell(value: object, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def table(readings: Sequence[Vitals]) -> str:
    head = (
        "    t s    events   RSS MB   USS MB  tasks threads  fds  pressure  L1 KB  docs KB"
        "  status ms"
    )
    lines = [head, "-" * len(head)]
    for r in readings:
        l1 = None if r.l1_bytes is None else r.l1_bytes // 1024
        documents = None if r.documents_bytes is None else r.documents_bytes // 1024
        lines.append(
            f"{r.at_s:7.1f} {r.events:9d} {r.rss_mb:8.1f} {_cell(r.uss_mb, 8)} "
            f"{_cell(r.tasks, 6)} {r.threads:7d} {r.open_files:4d} {_cell(r.pressure, 9)} "
            f"{_cell(l1, 6)} {_cell(documents, 8)} {_cell(r.status_ms, 10)}"
            f"{'  quiet' if r.quiet else ''}"
        )
    return "\n".join(lines)


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """``values`` as one line of block characters, at most ``width`` of them (bucket means)."""
    if not values:
        return ""
    width = min(width, len(values))
    buckets = [
        values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)
    ]
    means = [sum(b) / len(b) for b in buckets if b]
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(_SPARKS[round((m - low) / span * (len(_SPARKS) - 1))] for m in means)


_SERIES = (
    ("RSS MB", "rss_mb"),
    ("tasks", "tasks"),
    ("threads", "threads"),
    ("open files", "open_files"),
)


def ascii_plot(readings: Sequence[Vitals]) -> str:
    lines = []
    for label, name in _SERIES:
        values = [getattr(r, name) for r in readings]
        if any(v is None for v in values) or not values:
            lines.append(f"  {label:>10}  (not reported)")
            continue
        lines.append(f"  {label:>10}  {sparkline(values)}  {min(values)}..{max(values)}")
    return "\n".join(lines)


def png_plot(readings: Sequence[Vitals], warm_at: float | None, path: Path, title: str) -> bool:
    """Write the series to ``path`` with matplotlib; False when matplotlib is not installed."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # the bench extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    figure, axes = plt.subplots(len(_SERIES), 1, sharex=True, figsize=(9, 8))
    times = [r.at_s for r in readings]
    for axis, (label, name) in zip(axes, _SERIES, strict=True):
        values = [getattr(r, name) for r in readings]
        if all(v is not None for v in values):
            axis.plot(times, values, marker=".")
        axis.set_ylabel(label)
        if warm_at is not None:
            axis.axvline(warm_at, color="grey", linestyle="--")
    axes[-1].set_xlabel("seconds (dashed: end of the warm-up)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
