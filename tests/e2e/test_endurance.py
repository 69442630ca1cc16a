"""A short endurance run: nothing the server holds per event may pile up.

The benchmark's own driver (``benchmarks/endurance.py``: the real server, the loopback fake
provider, a day of editing compressed to a few thousand events with provider faults and a 1 MB
file) runs once; then the quiet readings after the warm-up (every request answered, a settle
pause) must show tasks (when the server reports them), threads and open file descriptors no
higher than at the end of the warm-up, within ``benchmarks._endurance_figures.TOLERANCE`` (see
there why each allowance), and every request answered. A leak of one task, thread or file per
document, per request or per provider fault is dozens here, far past the allowances.

RSS is not asserted: a few thousand events on a shared machine are too few to tell allocator
noise from growth (the benchmark prints it; the long run in benchmarks/README.md judges it).
"""

from __future__ import annotations

import pytest
from benchmarks._day_of_editing import Plan
from benchmarks.endurance import Phase, endure

pytestmark = pytest.mark.e2e

# ~5k events: 24 documents (8 open at most, one of 1 MB), a fault every 25 requests so every
# kind of fault (benchmarks._day_of_editing.FAULTS) comes up at least twice.
PLAN = Plan(changes=4000, requests=500, documents=24, max_open=8, large_files=1, fault_every=25)


@pytest.mark.timeout(120)
async def test_a_short_day_of_editing_leaves_no_tasks_threads_or_files_behind() -> None:
    run: Phase = await endure(PLAN, interval_s=1.0, settle_s=1.0)
    answered = run.verdict("every request answered")
    assert answered.passed, answered.figure
    assert run.tally.faults >= 2 * 5  # the faults really were sprinkled in
    assert run.tally.opened == run.tally.closed == PLAN.documents

    # Threads and open files are read from outside (psutil), tasks from crucible/status
    # memory.tasks; each must have been measured, and flat.
    for name in ("tasks", "threads", "open_files"):
        verdict = run.verdict(name)
        assert verdict.passed is not None, f"{name} was not measured"
        kinds = [r.task_kinds for r in run.readings if r.quiet]
        assert verdict.passed, f"{name} grew: {verdict.figure}; tasks by kind: {kinds}"
