"""Peers: Crucible against the servers a user would pick instead, on the same machine and run.

Five language servers are started the same way, by the same stdlib client
(:mod:`benchmarks._peer_lsp`), runs interleaved so that the machine's noise falls on all of them
alike (see :mod:`benchmarks._peer_servers` for how each is installed, launched and isolated):

- **Crucible**; **tabby-agent** (npm, pinned), pointed at the loopback fake provider, which
  speaks the Tabby API; the **Copilot language server** (npm, pinned; signed out, start-up and
  memory only); a **bare pygls** server (the framework Crucible is built on); a **stdlib floor**
  (an LSP server with nothing but ``json``).

Measured:

- spawn -> ``initialize`` answered, median over ``--runs`` (after ``--warmup`` runs discarded);
- resident memory of the process tree ``--idle-s`` seconds after ``initialized``, median;
- the cold first suggestion (Crucible and tabby-agent; :mod:`benchmarks._peer_cold`): spawn ->
  the first suggestion that fits, asked as soon as ``initialize`` is answered (after
  ``initialized`` and the document's ``didOpen``), against the fake with ``--latency-ms``,
  ``--runs`` times in their own interleaved runs after the start-up runs; an answer with nothing
  fitting is followed by the next request 50 ms later (one in flight), until a fit or 10 s from
  the spawn (a miss); median (min-max), requests sent, and where the time went (initialize, the
  fake's first request, its first generation request). Under the table, the same for the warm
  route, not a peer: Crucible ``--shared`` as the second window of a daemon a first window of
  the same run started (its own ``XDG_RUNTIME_DIR``, the daemon killed after each run);
- typing (Crucible, tabby-agent, and a naive client as the reference): the typing replay's bursts
  (:mod:`benchmarks._snippets`, 20-60 ms between keys) with a request on every keystroke,
  against the fake with ``--latency-ms`` before its first byte; the time from the last keystroke
  to the first suggestion that fits the final text (p50, misses as infinitely slow), and the
  provider calls per burst. tabby-agent 1.5 is asked with ``textDocument/completion`` (the only
  completion request its language server handles). The naive client sends one streaming Ollama
  ``/api/generate`` per keystroke straight to the provider (``_typists.NaiveTypist``).
- ``--speeds``: instead of those bursts, the same anchors typed at three speeds (30-60, 60-90
  and 90-120 ms between keys), and a table per speed: latency p50/p90, provider calls per burst
  (mean, median), of which *ahead* (a prompt past the text the user typed: a prefetch); and
  where the calls went: *start* (last keystroke -> the first call received after it, median),
  *mid* (calls received before the last keystroke) and *closed* (calls the server closed before
  their answer ended), per burst.
- ``--logs PATH``: each Crucible's server log of the typing, at DEBUG, kept in ``PATH``.
- ``--mispredict F``: the fake answers a fraction ``F`` of prompts wrongly (by a hash of the
  prompt's last line), as a real model does: a request fired mid-burst whose answer the next
  key does not fit then costs a call, which a fake that always knows the code hides.
- ``--baseline PATH``: another checkout of Crucible (its ``server/`` and root on ``PYTHONPATH``)
  typed into as the system ``crucible-before``, in the same run, interleaved: before/after
  (and measured in the cold first suggestion's runs too).
- after typing, each Crucible's prefetches from its ``crucible/status``: started, used (served
  to a later request), wasted, skipped as unprofitable, explored, hit rate (a build without
  those counts gives ``requests.prefetched`` only). The typist never accepts a suggestion (each
  burst is typed into a document of its own, closed after it): the case where prefetch should
  stop.

Every ratio is the system's figure divided by Crucible's (below 1: smaller or faster than
Crucible). Run from the repository root::

    python -m benchmarks.peers [--quick] [--runs 10] [--repeat 5] [--latency-ms 150]
                               [--speeds] [--baseline PATH] [--no-install] [--json PATH]

``--runs 0 --warmup 0`` skips the start-up runs and the cold first suggestion (typing only).

The npm packages are installed on first use into a cache folder (setup, not the benchmark);
``--no-install`` uses them only if already there. A peer that cannot be installed or started is
skipped with a line saying why. The exit status is non-zero only when Crucible itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.fakes.provider import FakeProvider, RecordedRequest

from benchmarks import _figures, _peer_cold, _peer_servers
from benchmarks._figures import Figures, Sample
from benchmarks._peer_cold import WARM, ColdSample
from benchmarks._peer_lsp import PeerExited, RawLsp, tree_rss
from benchmarks._peer_servers import COPILOT, TABBY_AGENT, Launch
from benchmarks._peer_typists import COMPLETION, INLINE, LspTypist
from benchmarks._snippets import (
    BURSTS,
    GO,
    PYTHON,
    QUICK_BURSTS,
    TYPESCRIPT,
    Burst,
    _cursor_in,
    continuation,
)
from benchmarks._typists import NaiveTypist, Typist
from benchmarks.typing_replay import replay

MODEL = "qwen2.5-coder:1.5b-base"
MAX_TOKENS = 160  # the naive client's num_predict: Crucible's default completion.max_tokens
_INITIALIZE_TIMEOUT_S = 60.0

# (key, column title); the order of the table's columns.
SYSTEMS = (
    ("crucible", "Crucible"),
    ("crucible-before", "Crucible before"),  # --baseline only
    ("tabby-agent", f"tabby-agent {TABBY_AGENT.version}"),
    ("copilot", f"Copilot LS {COPILOT.version}"),
    ("pygls", "bare pygls"),
    ("floor", "stdlib floor"),
    ("naive", "naive client"),
)
TYPING_SYSTEMS = ("crucible", "crucible-before", "tabby-agent", "naive")

# --speeds: (label, mean gap, jitter) in ms, and the anchors typed at each speed (20-30 keys,
# each ending mid-line so that a suggestion can fit).
SPEEDS = (("30-60 ms", 45.0, 15.0), ("60-90 ms", 75.0, 15.0), ("90-120 ms", 105.0, 15.0))
_SPEED_ANCHORS = (
    (TYPESCRIPT, "return `${open", 30),
    (GO, "func New(ttl", 30),
    (PYTHON, "by_station.setdefault", 24),
)


def speed_bursts(quick: bool) -> tuple[Burst, ...]:
    """Every anchor at every speed (one anchor with ``quick``); named "<speed>: <anchor>"."""
    anchors = _SPEED_ANCHORS[:1] if quick else _SPEED_ANCHORS
    return tuple(
        Burst(f"{label}: {anchor}", snippet, anchor, keys, gap, jitter)
        for label, gap, jitter in SPEEDS
        for snippet, anchor, keys in anchors
    )


def _bursts(settings: argparse.Namespace) -> tuple[Burst, ...]:
    if settings.speeds:
        return speed_bursts(settings.quick)
    return QUICK_BURSTS if settings.quick else BURSTS


def ahead_calls(calls: Sequence[RecordedRequest], burst: Burst) -> int:
    """Calls whose prompt ends past the text the burst typed: asked for text the user has not
    typed (a prefetch of what follows the suggestion), not for a keystroke."""
    typed_end = burst.start + burst.keys
    ahead = 0
    for record in calls:
        body = record.body if isinstance(record.body, dict) else {}
        segments = body.get("segments")
        prompt = segments.get("prefix") if isinstance(segments, dict) else body.get("prompt")
        cursor = _cursor_in(burst.snippet.text, prompt) if isinstance(prompt, str) else None
        ahead += cursor is not None and cursor > typed_end
    return ahead


def _reply(record: RecordedRequest) -> str:
    """The fake model: the rest of the line being typed, for Ollama's prompt or Tabby's prefix."""
    return continuation(_prompt(record))


def _prompt(record: RecordedRequest) -> str:
    body = record.body if isinstance(record.body, dict) else {}
    segments = body.get("segments")
    prompt = segments.get("prefix") if isinstance(segments, dict) else body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def _fallible(mispredict: float) -> Callable[[RecordedRequest], str]:
    """A fake model that answers wrongly (something the user will not type) for ``mispredict``
    of the prompts, chosen by a hash of the prompt's last line (the same line gets the same
    verdict in every system and run): a request fired mid-burst then costs a call."""

    def reply(record: RecordedRequest) -> str:
        prompt = _prompt(record)
        line = prompt[prompt.rfind("\n") + 1 :]
        if zlib.crc32(line.encode()) % 1000 < mispredict * 1000:
            return " + 1  # mispredicted"
        return continuation(prompt)

    return reply


def _capabilities() -> dict[str, Any]:
    return {
        "general": {"positionEncodings": ["utf-16"]},
        "textDocument": {
            "synchronization": {"dynamicRegistration": False},
            "completion": {"completionItem": {"snippetSupport": False}},
            "inlineCompletion": {"dynamicRegistration": False},
        },
        "window": {"workDoneProgress": False},
    }


def _initialize_params(launch: Launch) -> dict[str, Any]:
    workspace = launch.cwd.as_uri()
    return {
        "processId": None,
        "clientInfo": {"name": "crucible-peers", "version": "1"},
        "rootUri": workspace,
        "workspaceFolders": [{"uri": workspace, "name": "bench"}],
        "capabilities": _capabilities(),
        "initializationOptions": launch.initialization_options,
    }


async def _initialize(launch: Launch) -> tuple[RawLsp, float]:
    """Spawn and initialize; (the session, ms from spawn to the initialize answer)."""
    lsp = await RawLsp.spawn(launch.argv, launch.env, launch.cwd)
    try:
        answer = lsp.request("initialize", _initialize_params(launch))
        arrived, message = await asyncio.wait_for(answer, _INITIALIZE_TIMEOUT_S)
        if "error" in message:
            raise PeerExited(f"initialize failed: {message['error']}")
        lsp.notify("initialized", {})
    except BaseException:
        await lsp.stop()
        raise
    return lsp, (arrived - lsp.started) * 1000


# -- start-up and memory -------------------------------------------------------------------------


@dataclass
class Startup:
    init_ms: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    skipped: str | None = None


async def _start_once(launch: Launch, idle_s: float) -> tuple[float, int, int]:
    lsp, init_ms = await _initialize(launch)
    try:
        await asyncio.sleep(idle_s)
        lsp.check_alive()
        rss, processes = tree_rss(lsp.pid)
    finally:
        await lsp.stop()
    return init_ms, rss, processes


async def measure_startups(
    launches: Sequence[Launch], settings: argparse.Namespace
) -> dict[str, Startup]:
    """Every system ``warmup + runs`` times, interleaved and in a rotating order."""
    found = {launch.name: Startup() for launch in launches}
    for run in range(settings.warmup + settings.runs):
        shift = run % len(launches)
        for launch in [*launches[shift:], *launches[:shift]]:
            startup = found[launch.name]
            if startup.skipped:
                continue
            try:
                init_ms, rss, processes = await _start_once(launch, settings.idle_s)
            except (PeerExited, TimeoutError, OSError) as exc:
                if launch.name == "crucible":
                    raise
                startup.skipped = f"failed to start: {str(exc).splitlines()[0][:200]}"
                continue
            if run >= settings.warmup:
                startup.init_ms.append(init_ms)
                startup.rss_kib.append(rss)
                startup.processes.append(processes)
    return found


# -- the cold first suggestion -------------------------------------------------------------------


async def measure_cold(
    fake: FakeProvider, root: Path, launches: Sequence[Launch], settings: argparse.Namespace
) -> tuple[dict[str, list[ColdSample]], dict[str, str]]:
    """Spawn -> first fitting suggestion (:mod:`benchmarks._peer_cold`), ``--runs`` times for
    Crucible, tabby-agent, ``crucible-before`` with ``--baseline``, and the warm route (this
    checkout's Crucible ``--shared``, second window), interleaved in a rotating order, each
    run in fresh folders but for each Crucible's ``XDG_CACHE_HOME``, which it keeps across the
    runs as a user's machine keeps it (each run's document is its own, so no answer is found
    in it; what is, from the second run on, is the bytecode cache of the server's import,
    ``runtime/bytecode_cache.py``: the first run is a first start ever). The start-up runs
    before it warm the machine's file cache for it: no warm-up runs of its own."""
    names = {launch.name for launch in launches}
    systems = [name for name in ("crucible", "tabby-agent") if name in names]
    if settings.baseline is not None:
        systems.append("crucible-before")
    systems.append(WARM)
    found: dict[str, list[ColdSample]] = {name: [] for name in systems}
    skipped: dict[str, str] = {}
    cache = _peer_servers.cache_root()
    for run in range(settings.runs):
        folder = root / f"run{run}"
        shift = run % len(systems)
        for name in [*systems[shift:], *systems[:shift]]:
            if name in skipped:
                continue
            tag = f"{run}-{name.replace(' ', '')}"
            try:
                if name == WARM:
                    launch = _peer_servers.crucible(
                        folder, fake.base_url, MODEL, name="crucible-shared"
                    )
                    _keep_cache(launch, root, name)
                    sample = await _peer_cold.warm_start(
                        launch, fake, tag, _initialize, settings.latency_ms
                    )
                else:
                    if name.startswith("crucible"):
                        checkout = settings.baseline if name == "crucible-before" else None
                        launch = _peer_servers.crucible(
                            folder, fake.base_url, MODEL, name=name, checkout=checkout
                        )
                        _keep_cache(launch, root, name)
                        method = INLINE
                    else:
                        launch = _peer_servers.tabby_agent(folder, cache, fake.base_url)
                        method = COMPLETION
                    lsp, sample = await _peer_cold.cold_start(
                        launch, method, fake, tag, _initialize, settings.latency_ms
                    )
                    await lsp.stop()
            except (PeerExited, TimeoutError, OSError) as exc:
                if name in ("crucible", WARM):  # this checkout's server, plain or shared
                    raise
                skipped[name] = f"cold start failed: {str(exc).splitlines()[0][:200]}"
                continue
            found[name].append(sample)
    return {name: samples for name, samples in found.items() if samples}, skipped


def _keep_cache(launch: Launch, root: Path, name: str) -> None:
    """``launch`` keeps its ``XDG_CACHE_HOME`` in ``root``, one per system, across the runs."""
    launch.env["XDG_CACHE_HOME"] = str(root / "cache" / name.replace(" ", ""))


# -- typing --------------------------------------------------------------------------------------


async def _warm_up(typist: Typist) -> None:
    """One request before measuring: process start-up and connection set-up are not typing."""
    uri, text = f"file:///bench/{typist.name}/warm-up.py", "def warm_up():\n    "
    typist.open(uri, "python", text)
    await asyncio.wait_for(typist.type(uri, 2, text, "r").answered, 30)
    typist.close(uri)


async def measure_typing(
    fake: FakeProvider,
    launches: dict[str, Launch],
    settings: argparse.Namespace,
    statuses: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[tuple[str, str], list[Sample]], dict[tuple[str, str], list[int]], dict[str, str]]:
    """The bursts typed into each system, interleaved; samples and calls ahead of the typed
    text (``ahead_calls``) by (burst, system), skips; each Crucible's ``crucible/status``
    after the last burst into ``statuses``."""
    bursts = _bursts(settings)
    samples: dict[tuple[str, str], list[Sample]] = {}
    ahead: dict[tuple[str, str], list[int]] = {}
    skipped: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        typists: list[Typist] = []
        servers = (("crucible", INLINE), ("crucible-before", INLINE), ("tabby-agent", COMPLETION))
        for name, method in servers:
            launch = launches.get(name)
            if launch is None:
                continue
            try:
                lsp, _ = await _initialize(launch)
            except (PeerExited, TimeoutError, OSError) as exc:
                if name == "crucible":
                    raise
                skipped[name] = f"failed to start: {str(exc).splitlines()[0][:200]}"
                continue
            stack.push_async_callback(lsp.stop)
            typists.append(LspTypist(name, lsp, method))
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=fake.base_url, limits=limits, timeout=None, trust_env=False)
        )
        typists.append(NaiveTypist(http, MODEL, MAX_TOKENS))
        for typist in list(typists):
            try:
                await _warm_up(typist)
            except (PeerExited, TimeoutError) as exc:
                if typist.name == "crucible":
                    raise
                skipped[typist.name] = f"no answer to a first request: {exc}"
                typists.remove(typist)
        for repetition in range(settings.repeat):
            for index, burst in enumerate(bursts):
                gaps = burst.gaps(random.Random(f"{settings.seed}/{index}/{repetition}"))
                shift = (repetition + index) % len(typists)
                for typist in typists[shift:] + typists[:shift]:
                    try:
                        sample = await replay(
                            typist, fake, burst, (index, repetition), gaps, settings
                        )
                    except PeerExited as exc:
                        if typist.name == "crucible":
                            raise
                        skipped[typist.name] = f"exited mid-run: {str(exc).splitlines()[0]}"
                        typists.remove(typist)
                        break
                    samples.setdefault((burst.name, typist.name), []).append(sample)
                    calls_ahead = ahead_calls(fake.generation_requests(), burst)
                    ahead.setdefault((burst.name, typist.name), []).append(calls_ahead)
        for typist in typists:
            if statuses is not None and isinstance(typist, LspTypist):
                found = await typist.status() if typist.name.startswith("crucible") else None
                if found is not None:
                    statuses[typist.name] = found
    return samples, ahead, skipped


# -- the report ----------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(value: float | None, crucible: float | None) -> str:
    if value is None or crucible is None or crucible == 0 or math.isinf(crucible):
        return ""
    if math.isinf(value):
        return ""
    ratio = value / crucible
    return f" ({ratio:.2f}x)" if ratio < 10 else f" ({ratio:.0f}x)"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "miss" if math.isinf(value) else f"{value:.0f} ms"


@dataclass(frozen=True)
class Row:
    title: str
    values: dict[str, float | None]  # by system; None: not measured (or skipped)
    cells: dict[str, str]


def cold_fits(samples: Sequence[ColdSample]) -> list[float]:
    """Spawn -> first fitting suggestion of each run, a miss as infinitely slow."""
    return [math.inf if x.fit_ms is None else x.fit_ms for x in samples]


def _spread(values: Sequence[float]) -> str:
    """A median with its range over the runs: "812 ms (790-1040)"."""
    low, high = (_ms(x).removesuffix(" ms") for x in (min(values), max(values)))
    return f"{_ms(statistics.median(values))} ({low}-{high})"


def rows(
    startups: dict[str, Startup],
    totals: dict[str, Figures],
    calls: dict[str, list[int]],
    cold: dict[str, list[ColdSample]] | None = None,
) -> list[Row]:
    """The table's rows, each cell with its ratio to Crucible."""
    cold = cold or {}
    fits = {name: cold_fits(cold[name]) for name in cold if name != WARM}
    first_fit = {name: statistics.median(values) for name, values in fits.items()}
    init = {name: _median(s.init_ms) for name, s in startups.items()}
    rss = {name: _median([k / 1024 for k in s.rss_kib]) for name, s in startups.items()}
    latency = {name: totals[name].p50_ms for name in totals}
    per_burst = {name: totals[name].calls_mean for name in totals}
    found = []
    for title, values, show in (
        ("spawn -> initialize answered, median", init, _ms),
        ("RSS after initialize (process tree), median", rss, _mib),
        ("spawn -> first fitting suggestion, median (min-max)", first_fit, _ms),
        (
            "last keystroke -> fitting suggestion, p50",
            latency,
            _ms,
        ),
        ("provider calls per burst, median / mean (min-max)", per_burst, None),
    ):
        cells = {}
        for name, _ in SYSTEMS:
            value = values.get(name)
            if value is None:
                cells[name] = "-"
            elif show is None:
                # The yardstick is tabby-agent's median; the mean (the ratio's basis)
                # shows what the median hides: a burst that costs a second call.
                low, high = min(calls[name]), max(calls[name])
                median = statistics.median(calls[name])
                cells[name] = f"{median:g} / {value:.1f} ({low}-{high})" + _ratio(
                    value, values["crucible"]
                )
            elif values is first_fit:
                cells[name] = _spread(fits[name]) + _ratio(value, values.get("crucible"))
            else:
                extra = ""
                if show is _mib:
                    processes = max(startups[name].processes, default=1)
                    extra = f", {processes} proc" if processes > 1 else ""
                cells[name] = show(value) + extra + _ratio(value, values.get("crucible"))
        found.append(Row(title, dict(values), cells))
    return found


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MiB"


def table(found: Sequence[Row]) -> str:
    # A system measured in no row (crucible-before without --baseline) gets no column.
    systems = [(n, t) for n, t in SYSTEMS if any(row.cells[n] != "-" for row in found)]
    width = max(len(row.title) for row in found)
    columns = [max(len(title), *(len(row.cells[name]) for row in found)) for name, title in systems]
    head = f"{'':{width}}  " + "  ".join(
        f"{title:>{w}}" for (_, title), w in zip(systems, columns, strict=True)
    )
    lines = [head, "-" * len(head)]
    for row in found:
        cells = "  ".join(
            f"{row.cells[name]:>{w}}" for (name, _), w in zip(systems, columns, strict=True)
        )
        lines.append(f"{row.title:{width}}  {cells}")
    return "\n".join(lines)


def cold_table(cold: dict[str, list[ColdSample]], latency_ms: int) -> str:
    """The cold first suggestion per system, and where its time went: medians over the runs
    of spawn -> initialize answered, -> the fake's first request of any kind (a health check),
    -> its first generation request, -> the first answer (fitting or not), -> the first fitting
    suggestion (min-max, ratio to Crucible's); completion requests sent (median, max) and
    misses. The warm route is Crucible again, started otherwise: it is no peer."""
    titles = {
        "crucible": "Crucible",
        "crucible-before": "Crucible before (--baseline)",
        "tabby-agent": f"tabby-agent {TABBY_AGENT.version}",
        WARM: "Crucible --shared, 2nd window of a warm daemon",
    }
    width = max(len(title) for title in titles.values())
    head = (
        f"{'spawn -> (ms, median)':{width}}  runs   init  contact  call  answer"
        f"  {'fitting (min-max), ratio':31} requests  miss"
    )
    lines = [
        "",
        f"Cold first suggestion: spawn -> initialize -> didOpen -> a request at once, again"
        f" {_peer_cold.RETRY_MS} ms after an answer with nothing fitting (one in flight), until"
        f" a suggestion fits or {_peer_cold.DEADLINE_S:g} s pass; provider first byte"
        f" {latency_ms} ms.",
        head,
        "-" * len(head),
    ]
    reference = cold_fits(cold["crucible"]) if cold.get("crucible") else None
    for name, title in titles.items():
        samples = cold.get(name)
        if not samples:
            continue
        fits = cold_fits(samples)

        def median(values: list[float | None]) -> str:
            known = [v for v in values if v is not None]
            return f"{statistics.median(known):.0f}" if known else "-"

        requests = [x.requests for x in samples]
        ratio = _ratio(statistics.median(fits), _median(reference) if reference else None)
        lines.append(
            f"{title:{width}}  {len(samples):4d} {median([x.init_ms for x in samples]):>6}"
            f" {median([x.first_contact_ms for x in samples]):>8}"
            f" {median([x.first_call_ms for x in samples]):>5}"
            f" {median([x.first_answer_ms for x in samples]):>7}"
            f"  {_spread(fits) + ratio:31} {statistics.median(requests):4g} ({max(requests)})"
            f" {sum(x.fit_ms is None for x in samples):5d}"
        )
    return "\n".join(lines)


def burst_table(
    bursts: Sequence[str], samples: dict[tuple[str, str], list[Sample]], systems: Sequence[str]
) -> str:
    """Per burst and typing system: calls (mean, max), p50, p95, misses, own answer, stale."""
    width = max(len(name) for name in bursts)
    lines = [
        f"{'burst':{width}}  {'system':15}  calls  max     p50     p95  miss    last  stale",
    ]
    lines.append("-" * len(lines[0]))
    for burst in bursts:
        for index, system in enumerate(systems):
            got = samples.get((burst, system))
            if not got:
                continue
            f = _figures.summarize(got)
            label = burst if index == 0 else ""
            lines.append(
                f"{label:{width}}  {system:15}  {f.calls_mean:5.1f} {f.calls_max:4d} "
                f"{_ms(f.p50_ms):>7} {_ms(f.p95_ms):>7} {f.misses:5d} {_ms(f.own_p50_ms):>7} "
                f"{f.stale:6d}"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class SpeedFigures:
    """One typing speed, one system: every burst typed at that speed."""

    bursts: int
    p50_ms: float  # math.inf when it falls on a miss
    p90_ms: float
    misses: int
    calls_mean: float
    calls_median: float
    ahead_mean: float  # calls past the typed text (prefetch), included in calls
    # Where the calls went (the per-request timeline): last keystroke -> the first call after
    # it, median over the bursts with one; calls received before the last keystroke (mid-burst)
    # and calls the server closed before their answer ended (superseded, cancelled), per burst.
    start_p50_ms: float | None = None
    before_last_mean: float = 0.0
    abandoned_mean: float = 0.0


def speed_figures(
    samples: dict[tuple[str, str], list[Sample]],
    ahead: dict[tuple[str, str], list[int]],
) -> dict[tuple[str, str], SpeedFigures]:
    """By (speed label, system), from the bursts named "<speed>: <anchor>" (``speed_bursts``)."""
    grouped: dict[tuple[str, str], tuple[list[Sample], list[int]]] = {}
    for (burst, system), got in samples.items():
        speed = burst.split(":", 1)[0]
        found, extra = grouped.setdefault((speed, system), ([], []))
        found += got
        extra += ahead.get((burst, system), [])
    by_speed = {}
    for key, (found, extra) in grouped.items():
        latencies = [math.inf if x.latency_ms is None else x.latency_ms for x in found]
        calls = [x.calls for x in found]
        by_speed[key] = SpeedFigures(
            bursts=len(found),
            p50_ms=_figures.percentile(latencies, 50),
            p90_ms=_figures.percentile(latencies, 90),
            misses=sum(x.latency_ms is None for x in found),
            calls_mean=statistics.fmean(calls),
            calls_median=statistics.median(calls),
            ahead_mean=statistics.fmean(extra) if extra else 0.0,
            start_p50_ms=_median([x.start_ms for x in found if x.start_ms is not None]),
            before_last_mean=statistics.fmean(x.before_last for x in found),
            abandoned_mean=statistics.fmean(x.abandoned for x in found),
        )
    return by_speed


def speed_table(by_speed: dict[tuple[str, str], SpeedFigures], systems: Sequence[str]) -> str:
    """Per typing speed and system: latency p50/p90 (ratio to tabby-agent's), calls per burst
    (mean, median) and of them ahead of the typed text, and the issue's target judged."""
    head = (
        f"{'speed':9}  {'system':15}     p50     p90  miss  calls  median  ahead  start  mid"
        "  closed  vs tabby-agent"
    )
    lines = [head, "-" * len(head)]
    for label, _, _ in SPEEDS:
        tabby = by_speed.get((label, "tabby-agent"))
        for index, system in enumerate(systems):
            f = by_speed.get((label, system))
            if f is None:
                continue
            verdict = ""
            if tabby is not None and system.startswith("crucible"):
                faster = f.p50_ms <= tabby.p50_ms
                fewer = f.calls_median <= tabby.calls_median
                ratio = _ratio(f.p50_ms, tabby.p50_ms).strip() or "n/a"
                verdict = (
                    f"p50 {ratio} {'ok' if faster else 'SLOWER'}, calls {'ok' if fewer else 'MORE'}"
                )
            lines.append(
                f"{label if index == 0 else '':9}  {system:15} {_ms(f.p50_ms):>7} "
                f"{_ms(f.p90_ms):>7} {f.misses:5d} {f.calls_mean:6.2f} {f.calls_median:7.1f} "
                f"{f.ahead_mean:6.2f} {_ms(f.start_p50_ms):>6} {f.before_last_mean:4.1f}"
                f" {f.abandoned_mean:7.2f}  {verdict}"
            )
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------


def _launches(
    root: Path, fake: FakeProvider, settings: argparse.Namespace
) -> tuple[list[Launch], dict[str, str]]:
    """What can run on this machine; and, for each peer that cannot, why."""
    skipped: dict[str, str] = {}
    cache = _peer_servers.cache_root()
    launches = [_peer_servers.crucible(root, fake.base_url, MODEL)]
    node = _peer_servers.node_version()
    for name, package in (("tabby-agent", TABBY_AGENT), ("copilot", COPILOT)):
        if name not in settings.peers:
            skipped[name] = "not asked for (--peers)"
            continue
        if node is None:
            skipped[name] = "node is not on PATH"
            continue
        started = time.perf_counter()
        problem = _peer_servers.install(package, cache, allowed=settings.install)
        if problem:
            skipped[name] = problem
            continue
        took = time.perf_counter() - started
        if took > 1:
            print(f"installed {package.spec} into {package.folder(cache)} in {took:.0f} s")
        if name == "tabby-agent":
            launches.append(_peer_servers.tabby_agent(root, cache, fake.base_url))
        else:
            launches.append(_peer_servers.copilot(root, cache))
    launches += [_peer_servers.bare_pygls(root), _peer_servers.stdlib_floor(root)]
    print(f"node {node or 'missing'}; npm cache {cache}")
    return launches, skipped


async def run(settings: argparse.Namespace) -> dict[str, Any]:
    bursts = _bursts(settings)
    reply = _fallible(settings.mispredict) if settings.mispredict else _reply
    fake = FakeProvider(model=MODEL, reply=reply, chunk_size=8, slots=settings.slots)
    with fake, tempfile.TemporaryDirectory(prefix="crucible-peers-") as scratch:
        root = Path(scratch)
        launches, skipped = _launches(root / "startup", fake, settings)
        started = time.perf_counter()
        startups = await measure_startups(launches, settings)
        for name, startup in startups.items():
            if startup.skipped:
                skipped[name] = startup.skipped
        startup_s = time.perf_counter() - started
        started = time.perf_counter()
        cold, cold_skipped = await measure_cold(
            fake, root / "cold", [x for x in launches if x.name not in skipped], settings
        )
        skipped.update({name: why for name, why in cold_skipped.items() if name not in skipped})
        cold_s = time.perf_counter() - started
        typing_launches = {
            launch.name: launch
            for launch in _launches_for_typing(root / "typing", fake, launches, settings)
            if launch.name not in startups or not startups[launch.name].skipped
        }
        started = time.perf_counter()
        statuses: dict[str, dict[str, Any]] = {}
        samples, ahead, typing_skipped = await measure_typing(
            fake, typing_launches, settings, statuses
        )
        typing_s = time.perf_counter() - started
        if settings.logs:
            _keep_logs(root / "typing", settings.logs)
    skipped.update({name: why for name, why in typing_skipped.items() if name not in skipped})
    report = _report(
        settings, bursts, (startups, cold), (samples, ahead), skipped, (startup_s, cold_s, typing_s)
    )
    print(prefetch_table(statuses))
    report["prefetch"] = {name: status.get("prefetch") for name, status in statuses.items()}
    return report


def _keep_logs(root: Path, into: Path) -> None:
    """Each Crucible's server log of the typing sessions (DEBUG), copied out of the scratch
    folder: when each request went upstream, speculatively or not, and what became of it."""
    into.mkdir(parents=True, exist_ok=True)
    for log in root.glob("*/server.log"):
        shutil.copyfile(log, into / f"{log.parent.name}.log")


def prefetch_table(statuses: dict[str, dict[str, Any]]) -> str:
    """Per Crucible, from its ``crucible/status`` after the run: prefetches started, used
    (served to a later request), wasted, skipped as unlikely to be used, the hit rate
    (used / resolved). A build without the policy (before issue 16's) reports only
    ``requests.prefetched``."""
    head = f"{'prefetch':15} started  used  wasted  skipped  explored  hit rate"
    lines = ["", head, "-" * len(head)]
    for name, status in sorted(statuses.items()):
        counted = status.get("prefetch")
        if not isinstance(counted, dict):
            started = status.get("requests", {}).get("prefetched", 0)
            lines.append(f"{name:15} {started:7d}  (no use counts in this build)")
            continue
        rate = counted.get("hit_rate")
        lines.append(
            f"{name:15} {counted['started']:7d} {counted['used']:5d} {counted['wasted']:7d}"
            f" {counted['skipped']:8d} {counted['explored']:9d}"
            f"  {'-' if rate is None else f'{rate:.0%}'}"
        )
    return "\n".join(lines)


def _launches_for_typing(
    root: Path, fake: FakeProvider, started: Sequence[Launch], settings: argparse.Namespace
) -> list[Launch]:
    """Fresh scratch folders for the typing sessions (no state from the start-up runs)."""
    cache = _peer_servers.cache_root()
    names = {launch.name for launch in started}
    level = "DEBUG" if settings.logs else "INFO"
    found = [_peer_servers.crucible(root, fake.base_url, MODEL, level)]
    if settings.baseline is not None:
        found.append(
            _peer_servers.crucible(
                root,
                fake.base_url,
                MODEL,
                level,
                name="crucible-before",
                checkout=settings.baseline,
            )
        )
    if "tabby-agent" in names:
        found.append(_peer_servers.tabby_agent(root, cache, fake.base_url))
    return found


def _report(
    settings: argparse.Namespace,
    bursts: Sequence[Any],
    started: tuple[dict[str, Startup], dict[str, list[ColdSample]]],
    typed: tuple[dict[tuple[str, str], list[Sample]], dict[tuple[str, str], list[int]]],
    skipped: dict[str, str],
    took: tuple[float, float, float],
) -> dict[str, Any]:
    startups, cold = started
    samples, ahead = typed
    typing = [s for s in TYPING_SYSTEMS if any(k[1] == s for k in samples)]
    totals = {
        s: _figures.summarize([x for (_, n), xs in samples.items() if n == s for x in xs])
        for s in typing
    }
    calls = {s: [x.calls for (_, n), xs in samples.items() if n == s for x in xs] for s in typing}
    found = rows(startups, totals, calls, cold)
    print(
        f"\nPeers: {settings.runs} start-up run(s) per server after {settings.warmup} warm-up,"
        f" RSS {settings.idle_s:g} s after initialized, then {settings.runs} cold first"
        f" suggestion(s); typing {len(bursts)} bursts x"
        f" {settings.repeat} repetition(s), provider first token {settings.latency_ms} ms,"
        f" {settings.slots} slots. Ratios: the system's figure / Crucible's."
        f" ({took[0]:.0f} s start-up, {took[1]:.0f} s cold, {took[2]:.0f} s typing)\n"
    )
    print(table(found))
    if cold:
        print(cold_table(cold, settings.latency_ms))
    print()
    print(burst_table([b.name for b in bursts], samples, typing))
    by_speed = speed_figures(samples, ahead) if settings.speeds else {}
    if by_speed:
        print(
            "\nBy typing speed (gap between keys): last keystroke -> fitting suggestion,"
            " provider calls per burst; ahead = calls for text not typed (prefetch)."
            " Target: Crucible p50 <= tabby-agent's, calls median <= tabby-agent's.\n"
        )
        print(speed_table(by_speed, typing))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return {
        "settings": {k: v for k, v in vars(settings).items() if k != "json"},
        "versions": {"tabby-agent": TABBY_AGENT.version, "copilot": COPILOT.version},
        "startup": {name: asdict(s) for name, s in startups.items()},
        "cold": {name: [asdict(x) for x in xs] for name, xs in cold.items()},
        "rows": [{"title": r.title, "values": r.values, "cells": r.cells} for r in found],
        "typing": {name: _figures.as_json(f) for name, f in totals.items()},
        "samples": {f"{b} / {s}": [vars(x) for x in xs] for (b, s), xs in samples.items()},
        "ahead_calls": {f"{b} / {s}": xs for (b, s), xs in ahead.items()},
        "speeds": {f"{v} / {s}": asdict(f) for (v, s), f in by_speed.items()},
        "skipped": skipped,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="2 start-up and cold runs, 2 bursts once: proves it runs (CI)",
    )
    add(
        "--runs",
        type=int,
        default=10,
        help="measured start-up runs per server, and cold first suggestions (default 10)",
    )
    add("--warmup", type=int, default=1, help="start-up runs discarded first (default 1)")
    add("--idle-s", type=float, default=2.0, help="idle before reading RSS (default 2)")
    add("--repeat", type=int, default=5, help="repetitions of each burst (default 5)")
    add("--latency-ms", type=int, default=150, help="provider time to first byte (default 150)")
    add("--slots", type=int, default=2, help="provider parallel slots (default 2)")
    add("--pause-ms", type=int, default=800, help="pause after each burst (default 800)")
    add("--deadline-s", type=float, default=10.0, help="wait for answers after a burst (10)")
    add("--seed", type=int, default=7, help="seed of the key-timing jitter")
    add(
        "--peers",
        default="tabby-agent,copilot",
        help="npm peers to run, comma-separated (default tabby-agent,copilot)",
    )
    add("--no-install", dest="install", action="store_false", help="never run npm install")
    add("--speeds", action="store_true", help="type at 30-60/60-90/90-120 ms; a table per speed")
    add(
        "--mispredict",
        type=float,
        default=0.0,
        help="fraction of prompts the fake answers wrongly (default 0: it knows the code)",
    )
    add("--baseline", type=Path, help="another checkout, typed into as crucible-before")
    add("--json", type=Path, help="also write the figures here")
    add("--logs", type=Path, help="keep each Crucible's typing log (at DEBUG) in this folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    settings.peers = {p.strip() for p in settings.peers.split(",") if p.strip()}
    if settings.quick:
        settings.runs, settings.warmup, settings.repeat = min(settings.runs, 2), 1, 1
        settings.idle_s, settings.pause_ms = min(settings.idle_s, 1.0), min(settings.pause_ms, 300)
    try:
        figures = asyncio.run(run(settings))
    except (PeerExited, OSError, TimeoutError) as exc:
        print(f"peers benchmark broke (Crucible): {exc}", file=sys.stderr)
        return 2
    if settings.json:
        figures["settings"]["peers"] = sorted(settings.peers)
        settings.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
