"""Process memory readings (psutil stays in this module)."""

from __future__ import annotations

import psutil

_process = psutil.Process()


def rss_mb() -> float:
    """Resident set size of this process, in MiB."""
    return round(_process.memory_info().rss / (1 << 20), 1)
