"""Cache replay: what the response cache saves, with the cache on and off in the same run.

Editing sessions are replayed against the real server (``python -m crucible --stdio``) and the
loopback fake provider (Ollama wire format, ``--latency-ms`` of prompt processing), whose
"model" knows the programs being written and answers the text at the cursor (see
``_cache_scenarios``). Each system is one server configuration, measured one after the other
with the same edits and the same provider:

- **cache off**: ``[cache] enabled = false``, the baseline;
- **cache on**: the response cache with ``prefetch = "off"``;
- **cache+prefetch**: the response cache with ``prefetch = "on"`` (left out with ``--quick``).

Scenarios: *type-through* (a suggestion is shown and typed through key by key, a newline
included, with backspaces and accepted words, then accepted whole), *accept* (functions
written by accepting a header, then the body, asking again after each accept), *visit* (three
files opened, asked at four spots each, closed), *revisit* (the same files reopened, the same
spots), *restart* (the server stopped, a new one started with the same cache directory, the
same requests again). Per scenario and system: requests, provider calls, p50/p95 time from
request to answer, how requests were served (type-through, L1, L2, joined), and the hit rate;
then ratios against cache off, the round trip of cache hits against an empty answer's (the LSP
floor), the in-process cost of the cache's lookups, and the issue's targets.

Run from the repository root::

    python -m benchmarks.cache_replay [--quick] [--latency-ms 100] [--json PATH]

The exit status is non-zero only when the run itself breaks (the server crashes or cannot
start); poor figures are figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from tests.fakes.provider import FakeProvider, Fault

from benchmarks import _cache_scenarios as sc
from benchmarks import _lookup_cost
from benchmarks._cache_figures import (
    HIT_SERVICES,
    Figures,
    Record,
    ms,
    ratio,
    summarize,
    table,
    targets,
)
from benchmarks._figures import percentile, target_lines
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session, end_position
from benchmarks._snippets import PYTHON

MODEL = "qwen2.5-coder:1.5b-base"
ANSWER_TIMEOUT_S = 10.0
_NEVER_OPENED = "file:///bench/never-opened.py"


@dataclass(frozen=True)
class System:
    name: str
    cache: dict[str, Any]  # the [cache] table sent in initializationOptions


SYSTEMS = (
    System("cache off", {"enabled": False}),
    System("cache on", {"enabled": True, "prefetch": "off"}),
    System("cache+prefetch", {"enabled": True, "prefetch": "on"}),
)
BASELINE = SYSTEMS[0].name


@dataclass
class _Open:
    """The client's copy of an open document."""

    text: str
    cursor: int
    version: int = 1


@dataclass(frozen=True)
class _Answer:
    latency_ms: float
    text: str  # the first suggestion's insert text ("" when none)
    replaces: int  # characters after the cursor its range covers
    error: str | None


def _counters(status: Any) -> dict[str, int]:
    """The server's counters that say how a request was served."""
    status = status if isinstance(status, dict) else {}
    requests = status.get("requests") or {}
    levels = (status.get("cache") or {}).get("levels") or {}
    return {
        "type_through": int(requests.get("type_through", 0)),
        "cache_hit": int(requests.get("cache_hit", 0)),
        "joined": int(requests.get("coalesced", 0)) + int(requests.get("reused", 0)),
        "l2": int((levels.get("l2") or {}).get("hits", 0)),
        "prefetched": int(requests.get("prefetched", 0)),
    }


def _service(delta: dict[str, int], calls: int) -> str:
    if delta["type_through"]:
        return "type-through"
    if delta["cache_hit"]:
        return "l2" if delta["l2"] else "l1"
    if delta["joined"]:
        return "joined"
    return "provider" if calls else "none"


class Editor:
    """One server session driven like an editor: edits at the cursor, one request after each,
    answered before the next edit; every request becomes a :class:`Record`."""

    def __init__(
        self,
        session: CrucibleSession,
        fake: FakeProvider,
        model: sc.TargetModel,
        system: str,
        records: list[Record],
        floor: list[float],
    ) -> None:
        self._session = session
        self._fake = fake
        self._model = model
        self._system = system
        self._records = records
        self._open: dict[str, _Open] = {}
        self.scenario = ""
        self.think_s = 0.0  # the user's pause after an answer, before the next edit
        # Round trips of requests for a document never opened, one after each step: answered
        # empty before the completion service is reached, they cost the LSP exchange itself.
        self.floor = floor
        self._settled: dict[str, int] | None = None  # the server's counters after the last step
        self._calls_seen = 0  # generation requests the provider had received by then

    # -- documents ---------------------------------------------------------------------------

    def open(self, document: sc.Document, text: str, cursor: int) -> None:
        self._session.open(document.uri, document.language_id, text)
        self._open[document.uri] = _Open(text, cursor)

    def close(self, uri: str) -> None:
        self._session.close(uri)
        del self._open[uri]

    def text(self, uri: str) -> str:
        return self._open[uri].text

    def cursor(self, uri: str) -> int:
        return self._open[uri].cursor

    def move(self, uri: str, cursor: int) -> None:
        self._open[uri].cursor = cursor

    def edit(self, uri: str, start: int, end: int, new: str) -> None:
        """Replace ``start``-``end`` (string offsets) with ``new``; the cursor goes after it."""
        state = self._open[uri]
        state.version += 1
        self._session.replace(
            uri,
            state.version,
            end_position(state.text[:start]),
            end_position(state.text[:end]),
            new,
        )
        state.text = state.text[:start] + new + state.text[end:]
        state.cursor = start + len(new)

    # -- requests ----------------------------------------------------------------------------

    async def ask(self, uri: str) -> _Answer:
        """One inline completion request at the cursor; its round trip is timed from the send
        to the moment the answer is read (a callback on the client's loop)."""
        self._session.check_alive()
        state = self._open.get(uri)
        position = end_position(state.text[: state.cursor]) if state else types.Position(0, 0)
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        sent = time.perf_counter()
        pending = self._session.inline_completion(uri, position)
        pending.add_done_callback(lambda _: _settle(arrived, time.perf_counter()))
        try:
            done = await asyncio.wait_for(arrived, ANSWER_TIMEOUT_S)
        except TimeoutError:
            self._session.check_alive()
            return _Answer(math.inf, "", 0, "no answer")
        return _answer(pending, (done - sent) * 1000)

    async def step(self, kind: str, uri: str, note: str = "") -> _Answer:
        """Ask at the cursor (after whatever edit the caller made), then record the request:
        how it was served, and the provider calls made until the user's next move.

        The server's counters are read before the request, right after its answer (how it was
        served) and after the user's pause (what was done in the background meanwhile: a
        prefetch); the last reading is the next step's first.
        """
        if self._settled is None:
            self._settled = _counters(await self._session.status())
            self._calls_seen = len(self._fake.generation_requests())
        before = self._settled
        answer = await self.ask(uri)
        after = _counters(await self._session.status())
        # The LSP floor, sampled in the same rhythm and moment as the request itself.
        floor = (await self.ask(_NEVER_OPENED)).latency_ms
        self.floor.append(floor)
        if self.think_s:
            await asyncio.sleep(self.think_s)
        self._settled = _counters(await self._session.status())
        seen = len(self._fake.generation_requests())
        calls, self._calls_seen = seen - self._calls_seen, seen
        delta = {key: after[key] - before[key] for key in after}
        prefetches = self._settled["prefetched"] - before["prefetched"]
        state = self._open[uri]
        expected = self._model.answer(state.text[: state.cursor], state.text[state.cursor :])
        rest = expected + state.text[state.cursor :]
        self._records.append(
            Record(
                scenario=self.scenario,
                system=self._system,
                kind=kind,
                note=note,
                latency_ms=answer.latency_ms,
                floor_ms=floor,
                calls=calls,
                prefetch_calls=min(prefetches, calls),
                service=_service(delta, calls - prefetches),
                shown=bool(answer.text),
                wrong=bool(answer.text) and not rest.startswith(answer.text),
                error=answer.error,
            )
        )
        return answer

    async def back_to_back(self, uri: str, count: int) -> list[float]:
        """Round trips of ``count`` requests at the cursor sent one right after the other's
        answer, with no pause and no status reading: the server and client stay hot. They are
        no steps: the next step reads the server's counters afresh."""
        self._settled = None
        return [(await self.ask(uri)).latency_ms for _ in range(count)]


def _settle(arrived: asyncio.Future[float], at: float) -> None:
    arrived.get_loop().call_soon_threadsafe(_set_once, arrived, at)


def _set_once(arrived: asyncio.Future[float], at: float) -> None:
    if not arrived.done():
        arrived.set_result(at)


def _answer(pending: Future[Any], latency_ms: float) -> _Answer:
    try:
        result = pending.result()
    except Exception as exc:
        return _Answer(latency_ms, "", 0, type(exc).__name__)
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    if not items:
        return _Answer(latency_ms, "", 0, None)
    item = items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    replaces = 0
    if item.range is not None and item.range.end.line == item.range.start.line:
        replaces = item.range.end.character - item.range.start.character
    return _Answer(latency_ms, text, replaces, None)


# -- scenarios ---------------------------------------------------------------------------


async def type_through(editor: Editor, model: sc.TargetModel, quick: bool) -> None:
    editor.scenario, editor.think_s = "type-through", 0.04  # a key every ~40 ms after answers
    document = sc.document("type-through", PYTHON)
    text, (cursor,) = document.with_holes((sc.TYPE_THROUGH_HOLE,))
    suggestion = model.answer(text[:cursor], text[cursor:])
    editor.open(document, text, cursor)
    uri = document.uri
    await editor.step(sc.FIRST, uri, "ask at the end of a def line")
    for step in sc.type_through_steps(suggestion, quick=quick):
        here = editor.cursor(uri)
        editor.edit(uri, here - step.delete, here, step.insert)
        await editor.step(step.kind, uri, step.note)
    editor.close(uri)


async def accept_and_continue(editor: Editor, quick: bool) -> None:
    # The user reads each suggestion for 300 ms before accepting it.
    editor.scenario, editor.think_s = "accept", 0.3
    document = sc.document("accept", sc.CHAIN)
    target = document.target
    start = target.index(sc.CHAIN_START) + len(sc.CHAIN_START)
    editor.open(document, target[:start], start)
    uri = document.uri
    for _ in sc.CHAIN_FUNCTIONS[: 1 if quick else None]:
        # Two blank lines and the keyword typed (one edit), then accept whatever fits, asking
        # again after every accept, until nothing more is suggested.
        here = editor.cursor(uri)
        editor.edit(uri, here, here, "\n\n\ndef ")
        answer = await editor.step(sc.FIRST, uri, "typed 'def '")
        for accepted in ("header", "body"):
            rest = target[editor.cursor(uri) :]
            if not answer.text or not rest.startswith(answer.text):
                break
            here = editor.cursor(uri)
            editor.edit(uri, here, here + answer.replaces, answer.text)
            answer = await editor.step(sc.ACCEPT, uri, f"accepted the {accepted}")
        # Whatever was not accepted is typed by hand (no request): the next function follows.
        here = editor.cursor(uri)
        end = target.find("\n\n\ndef ", here)
        if editor.text(uri) == target[:here] and end > here:
            editor.edit(uri, here, here, target[here:end])
    editor.close(uri)


def _revisit_documents(quick: bool = False) -> list[tuple[sc.Document, str, list[int]]]:
    """The files of visit, revisit and restart: text with holes, and a spot at each hole."""
    documents = []
    for snippet in sc.REVISIT_SNIPPETS:
        document = sc.document("revisit", snippet)
        holes = sc.REVISIT_HOLES[snippet.name]
        text, cursors = document.with_holes(holes[:2] if quick else holes)
        documents.append((document, text, cursors))
    return documents


async def visit(editor: Editor, kind: str, quick: bool) -> None:
    """Open each revisit file, ask at each of its spots, close it."""
    editor.scenario = kind
    editor.think_s = 0.1
    for document, text, cursors in _revisit_documents(quick):
        editor.open(document, text, cursors[0])
        for number, cursor in enumerate(cursors, start=1):
            editor.move(document.uri, cursor)
            await editor.step(kind, document.uri, f"{Path(document.uri).name} spot {number}")
        editor.close(document.uri)


async def back_to_back(editor: Editor, count: int, *, cached: bool) -> dict[str, list[float]]:
    """The LSP floor and (with a cache) a repeated request, each sent ``count`` times back to
    back: round trips without the wake-ups of an idle server and client."""
    timings = {"floor b2b": await editor.back_to_back(_NEVER_OPENED, count)}
    if cached:
        document, text, cursors = _revisit_documents()[0]
        editor.open(document, text, cursors[0])
        timings["repeat b2b"] = await editor.back_to_back(document.uri, count)
        editor.close(document.uri)
    return timings


async def warm_up(session: CrucibleSession, name: str) -> None:
    """One request before measuring: process start-up and the provider's connection are not
    what is measured (it costs one call; the fake's model knows nothing to say here)."""
    uri, text = f"file:///bench/warm-up-{name}.py", f"def warm_up_{name}():\n    "
    session.open(uri, "python", text)
    invoked = types.InlineCompletionTriggerKind.Invoked
    await asyncio.wait_for(
        asyncio.wrap_future(session.inline_completion(uri, end_position(text), invoked)),
        ANSWER_TIMEOUT_S,
    )
    session.close(uri)


# -- the run -----------------------------------------------------------------------------


def _options(fake: FakeProvider, system: System) -> dict[str, Any]:
    provider = {"name": "bench", "kind": "ollama", "base_url": fake.base_url, "model": MODEL}
    # A fixed debounce of 0 ms: the measured time is the cache's and the provider's, not a wait.
    completion = {"debounce_mode": "fixed", "debounce_ms": 0}
    return {"providers": [provider], "completion": completion, "cache": system.cache}


def _model() -> sc.TargetModel:
    model = sc.TargetModel()
    model.register(sc.document("type-through", PYTHON).target)
    model.register(sc.document("accept", sc.CHAIN).target)
    for document, _, _ in _revisit_documents():
        model.register(document.target)
    return model


async def run(settings: argparse.Namespace) -> dict[str, Any]:
    systems = SYSTEMS[:2] if settings.quick else SYSTEMS
    model = _model()
    records: list[Record] = []
    floors: dict[str, list[float]] = {}
    hot: dict[str, dict[str, list[float]]] = {}
    statuses: dict[str, Any] = {}
    messages: list[str] = []
    fake = FakeProvider(model=MODEL, reply=model, chunk_size=8, slots=settings.slots)
    async with AsyncExitStack() as stack:
        stack.enter_context(fake)
        fake.inject(Fault(latency_ms=settings.latency_ms))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crucible-cache-")))
        for system in systems:
            # One directory per system: its disk cache is its own, and kept across the restart.
            workdir = root / system.name.replace(" ", "-").replace("+", "-")
            options = _options(fake, system)
            async with crucible_session(workdir, options) as session:
                await warm_up(session, "first")
                floor = floors.setdefault(system.name, [])
                editor = Editor(session, fake, model, system.name, records, floor)
                await type_through(editor, model, settings.quick)
                await accept_and_continue(editor, settings.quick)
                await visit(editor, sc.VISIT, settings.quick)
                for _ in range(1 if settings.quick else 2):
                    await visit(editor, sc.REVISIT, settings.quick)
                count = 20 if settings.quick else 100
                hot[system.name] = await back_to_back(
                    editor, count, cached=bool(system.cache.get("enabled"))
                )
                statuses[f"{system.name} / before restart"] = await session.status()
                messages += session.messages
            async with crucible_session(workdir, options) as session:  # the same cache dir
                await warm_up(session, "restarted")
                editor = Editor(session, fake, model, system.name, records, floor)
                await visit(editor, sc.RESTART, settings.quick)
                statuses[f"{system.name} / after restart"] = await session.status()
                messages += session.messages
    lookups = _lookup_cost.measure(quick=settings.quick)
    names = [system.name for system in systems]
    timings = {"floor": floors, "back to back": hot}
    return _report(settings, names, records, timings, lookups, statuses, messages)


# -- the report --------------------------------------------------------------------------

SCENARIOS = ("type-through", "accept", sc.VISIT, sc.REVISIT, sc.RESTART)


def _rows(records: Sequence[Record], systems: Sequence[str]) -> list[tuple[str, str, Figures]]:
    rows = []
    for scenario in (*SCENARIOS, "all"):
        for system in systems:
            mine = [r for r in records if r.system == system and scenario in ("all", r.scenario)]
            rows.append((scenario, system, summarize(mine)))
    return rows


def _round_trip_lines(
    records: Sequence[Record], systems: Sequence[str], timings: dict[str, Any]
) -> list[str]:
    """Per system and service: round trips, the floor sampled right after the same requests,
    and the p50 of each request's excess over its own floor sample (paired, so that a noisy
    machine moves both); then the back-to-back figures."""
    header = (
        f"  {'system':<15} {'served by':<13} {'n':>4} {'p50':>6} {'p95':>6} {'floor':>6}"
        f" {'excess':>7}"
    )
    lines = [header]
    for system in systems:
        name = system
        for service in (*HIT_SERVICES, "provider"):
            mine = [r for r in records if r.system == system and r.service == service]
            if not mine:
                continue
            latencies = [r.latency_ms for r in mine]
            floors = [r.floor_ms for r in mine]
            excess = [r.latency_ms - r.floor_ms for r in mine]
            lines.append(
                f"  {name:<15} {service:<13} {len(mine):>4} {ms(percentile(latencies, 50)):>6}"
                f" {ms(percentile(latencies, 95)):>6} {ms(percentile(floors, 50)):>6}"
                f" {_signed(percentile(excess, 50)):>7}"
            )
            name = ""
        for label, xs in timings["back to back"].get(system, {}).items():
            lines.append(
                f"  {name:<15} {label:<13} {len(xs):>4} {ms(percentile(xs, 50)):>6}"
                f" {ms(percentile(xs, 95)):>6}"
            )
            name = ""
    return lines


def _signed(value: float) -> str:
    return "n/a" if math.isinf(value) else f"{value:+.1f}"


def _ratio_lines(rows: Sequence[tuple[str, str, Figures]], systems: Sequence[str]) -> list[str]:
    by = {(scenario, system): f for scenario, system, f in rows}
    lines = []
    for scenario in (*SCENARIOS, "all"):
        base = by[scenario, BASELINE]
        parts = []
        for system in systems:
            if system == BASELINE:
                continue
            f = by[scenario, system]
            parts.append(
                f"{system}: calls {ratio(base.calls, f.calls)}, p50 {ratio(base.p50_ms, f.p50_ms)},"
                f" p95 {ratio(base.p95_ms, f.p95_ms)}"
            )
        lines.append(f"  {scenario:<13} " + " | ".join(parts))
    return lines


def _report(
    settings: argparse.Namespace,
    systems: Sequence[str],
    records: Sequence[Record],
    timings: dict[str, Any],
    lookups: dict[str, float],
    statuses: dict[str, Any],
    messages: Sequence[str],
) -> dict[str, Any]:
    rows = _rows(records, systems)
    found = [
        t
        for system in systems
        if system != BASELINE
        for t in targets(records, system, context=_round_trip_context(timings, system))
    ]
    print(
        f"Cache replay: provider latency {settings.latency_ms} ms, {settings.slots} slot(s);"
        " debounce fixed at 0 ms (automatic triggers, each answered before the next edit);"
        f" {'quick' if settings.quick else 'full'} run\n"
    )
    print(table(rows))
    print(
        "\n(tt/l1/l2: served by type-through / memory / disk cache; join: joined a running"
        " stream, e.g. a prefetch;\n calls: provider calls from the step to the next one,"
        " background prefetch included)\n"
    )
    print(f"Ratios, {BASELINE} / cache system (higher is better):")
    print("\n".join(_ratio_lines(rows, systems)))
    print(
        "\nLSP round trip in ms, request sent -> answer read, by how requests were served."
        "\nfloor: p50 of an empty answer (a document never opened) asked right after each of"
        " those requests;\nexcess: p50 of each request's round trip minus its floor sample;"
        " 'back to back': the same request\nrepeated with no pause and no status reads"
        " (a repeat: l1 once, then type-through):"
    )
    print("\n".join(_round_trip_lines(records, systems, timings)))
    baseline = lookups.get("dict.get (baseline), hit", math.nan)
    print("\nIn-process lookup cost (µs per call, best of 5 rounds; ratio to dict.get):")
    for name, us in lookups.items():
        print(f"  {us:9.2f} µs  {ratio(us, baseline):>7}  {name}")
    print("\nTargets:")
    print("\n".join(target_lines(found)))
    for message in messages:
        print(f"server said: {message}")
    return {
        "settings": {k: v for k, v in vars(settings).items() if k != "json"},
        "figures": [
            {"scenario": scenario, "system": system, **_json_figures(f)}
            for scenario, system, f in rows
        ],
        "round_trips_ms": timings,
        "lookup_cost_us": lookups,
        "targets": [asdict(t) for t in found],
        "records": [_json_record(r) for r in records],
        "server_status": statuses,
        "server_messages": list(messages),
    }


def _round_trip_context(timings: dict[str, Any], system: str) -> str:
    """A hit's round trip without the wake-ups of an idle server and client."""
    repeat = timings["back to back"].get(system, {}).get("repeat b2b")
    return f"; a repeat back to back p50 {ms(percentile(repeat, 50))} ms" if repeat else ""


def _finite(value: float) -> float | None:
    return None if math.isinf(value) else value


def _json_figures(figures: Figures) -> dict[str, Any]:
    data = asdict(figures)
    data["p50_ms"], data["p95_ms"] = _finite(figures.p50_ms), _finite(figures.p95_ms)
    data["hit_rate"] = figures.hit_rate
    return data


def _json_record(record: Record) -> dict[str, Any]:
    data = asdict(record)
    data["latency_ms"] = _finite(record.latency_ms)
    data["floor_ms"] = _finite(record.floor_ms)
    return data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_replay", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="short scenarios, no prefetch system (CI)")
    add("--latency-ms", type=int, default=100, help="provider prompt processing (default 100)")
    add("--slots", type=int, default=2, help="provider parallel slots (default 2)")
    add("--json", type=Path, help="also write the figures and every request here")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    try:
        figures = asyncio.run(run(settings))
    except (ServerExited, OSError, TimeoutError) as exc:
        print(f"cache replay broke: {exc}", file=sys.stderr)
        return 2
    if settings.json:
        settings.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
