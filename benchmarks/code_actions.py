"""Code actions: what listing costs next to a cache-hit completion, and what a resolve adds on
top of the provider's own time.

One real server (``python -m crucible --stdio``), one loopback fake provider (Ollama wire
format, ``--latency-ms`` of prompt processing for every generation), one Python document of
about 300 lines, in the same run:

- **cache-hit completion** (the baseline): the same inline completion asked again and again
  after its first answer is cached: the cheapest round trip that does real work;
- **listing**: ``textDocument/codeAction`` at a different line each time, with two diagnostics
  in the context (two quick fixes, "fix all", the rewrites of a three-line selection). The
  provider's request count before and after says whether listing called it (it must not);
- **resolve**: ``codeAction/resolve`` of a quick fix, the client advertising work-done progress
  (so each resolve includes the progress round trip a real editor costs). The provider's own
  time is measured where it runs (request received to response completed, in this process);
  the server's overhead is the client's round trip minus that.

Run from the repository root::

    python -m benchmarks.code_actions [--quick] [--latency-ms 200] [--json PATH]

Figures, ratios and targets are printed, never asserted; the exit status is non-zero only
when the run itself breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from tests.fakes.provider import FakeProvider, Fault

from benchmarks._figures import Target, percentile, target_lines
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session

MODEL = "qwen2.5-coder:1.5b-base"
URI = "file:///bench/geometry.py"
TIMEOUT_S = 30.0
FUNCTION = (
    "def area_{n}(radius):\n"
    '    """The area of circle {n}."""\n'
    "    scale = {n} + 1\n"
    "    return math.pi * radus**2 * scale\n"
    "\n\n"
)
TEXT = "import math\n\n\n" + "".join(FUNCTION.format(n=n) for n in range(50))
ANSWER = "Here is the fix:\n```python\n    return math.pi * radius**2 * scale\n```\n"


def _capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities(),
            code_action=types.CodeActionClientCapabilities(
                resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"])
            ),
        ),
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


def _diagnostics(line: int) -> list[types.Diagnostic]:
    def at(start: int, end: int, message: str) -> types.Diagnostic:
        span = types.Range(types.Position(line, start), types.Position(line, end))
        return types.Diagnostic(range=span, message=message, source="pyflakes")

    return [at(22, 27, "undefined name 'radus'"), at(4, 10, "line too long (120 > 100)")]


def _return_line(n: int) -> int:
    return 3 + 6 * n + 3  # the "return" line of function n


async def _timed(session: CrucibleSession, method: str, params: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = await asyncio.wait_for(asyncio.wrap_future(session.request(method, params)), TIMEOUT_S)
    return (time.perf_counter() - started) * 1000, answer


async def _cache_hits(session: CrucibleSession, count: int) -> list[float]:
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=types.Position(5, 4),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
    )
    await _timed(session, types.TEXT_DOCUMENT_INLINE_COMPLETION, params)  # fills the cache
    return [
        (await _timed(session, types.TEXT_DOCUMENT_INLINE_COMPLETION, params))[0]
        for _ in range(count)
    ]


def _listing_params(n: int) -> types.CodeActionParams:
    line = _return_line(n % 50)
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        range=types.Range(types.Position(line - 2, 0), types.Position(line + 1, 0)),
        context=types.CodeActionContext(diagnostics=_diagnostics(line)),
    )


async def _listings(session: CrucibleSession, count: int) -> tuple[list[float], int]:
    times, actions = [], 0
    for n in range(count):
        elapsed, answer = await _timed(session, types.TEXT_DOCUMENT_CODE_ACTION, _listing_params(n))
        times.append(elapsed)
        actions = len(answer or [])
    return times, actions


async def _resolves(
    session: CrucibleSession, fake: FakeProvider, count: int
) -> tuple[list[float], list[float], int]:
    round_trips, provider_ms, edits = [], [], 0
    for n in range(count):
        _, listed = await _timed(session, types.TEXT_DOCUMENT_CODE_ACTION, _listing_params(n))
        fix = next(a for a in listed if a.kind == types.CodeActionKind.QuickFix)
        before = len(fake.generation_requests())
        elapsed, resolved = await _timed(session, types.CODE_ACTION_RESOLVE, fix)
        [record] = fake.generation_requests()[before:]
        assert record.finished_at is not None
        round_trips.append(elapsed)
        provider_ms.append((record.finished_at - record.received_at) * 1000)
        edits += resolved.edit is not None
    return round_trips, provider_ms, edits


def _row(name: str, values: list[float], calls: int | str) -> str:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return f"  {name:<24} {len(values):>6} {p50:>9.2f} {p99:>9.2f} {calls!s:>15}"


async def run(settings: argparse.Namespace) -> dict[str, Any]:
    count = 50 if settings.quick else 500
    resolves = 5 if settings.quick else 40
    with FakeProvider(model=MODEL, reply=ANSWER) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.inject(Fault(latency_ms=settings.latency_ms))
        options = {
            "providers": [{"name": "fake", "kind": "ollama", "base_url": fake.base_url,
                           "model": MODEL}],
            "completion": {"debounce_ms": 0},
            "cache": {"prefetch": "off", "disk": False},
            "code_actions": {"timeout_ms": 30_000},
        }  # fmt: skip
        async with crucible_session(Path(tmp), options, capabilities=_capabilities()) as session:
            session.on_request(types.WINDOW_WORK_DONE_PROGRESS_CREATE, lambda params: None)
            session.on_request(types.PROGRESS, lambda params: None)  # a notification, unshown
            session.open(URI, "python", TEXT)
            hits = await _cache_hits(session, count)
            calls_before = len(fake.generation_requests())
            listings, actions = await _listings(session, count)
            listing_calls = len(fake.generation_requests()) - calls_before
            round_trips, provider_ms, edits = await _resolves(session, fake, resolves)
            status = await session.status()
    overhead = [rt - p for rt, p in zip(round_trips, provider_ms, strict=True)]
    return _report(settings, hits, listings, listing_calls, actions, round_trips, provider_ms,
                   overhead, edits, status)  # fmt: skip


def _report(
    settings: argparse.Namespace,
    hits: list[float],
    listings: list[float],
    listing_calls: int,
    actions: int,
    round_trips: list[float],
    provider_ms: list[float],
    overhead: list[float],
    edits: int,
    status: Any,
) -> dict[str, Any]:
    print(f"code actions: one server, fake provider at {settings.latency_ms} ms prompt processing")
    print(f"  {'':<24} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'provider calls':>15}")
    print(_row("cache-hit completion", hits, 0))
    print(_row(f"listing ({actions} actions)", listings, listing_calls))
    print(_row("resolve round trip", round_trips, len(round_trips)))
    print(_row("  provider's own time", provider_ms, ""))
    print(_row("  server overhead", overhead, ""))
    hit50, list50 = percentile(hits, 50), percentile(listings, 50)
    print(f"  listing p50 / cache-hit completion p50: {list50 / hit50:.2f}")
    print(f"  resolves that returned an edit: {edits}/{len(round_trips)}")
    over50 = percentile(overhead, 50)
    found = [
        Target(
            "listing p50 under 5 ms with zero provider calls",
            list50 < 5 and listing_calls == 0,
            f"{list50:.2f} ms, {listing_calls} calls",
        ),
        Target("server overhead on resolve under 20 ms (p50)", over50 < 20, f"{over50:.2f} ms"),
    ]
    print("targets:")
    print("\n".join(target_lines(found)))
    counts = (status or {}).get("code_actions", {})
    return {
        "latency_ms": settings.latency_ms,
        "cache_hit_ms": hits,
        "listing_ms": listings,
        "listing_provider_calls": listing_calls,
        "resolve_ms": round_trips,
        "provider_ms": provider_ms,
        "overhead_ms": overhead,
        "edits": edits,
        "status": {k: v for k, v in counts.items() if k != "chat_providers"},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.code_actions", description=__doc__)
    add = parser.add_argument
    add("--quick", action="store_true", help="50 listings, 5 resolves (CI)")
    add("--latency-ms", type=int, default=200, help="provider prompt processing (default 200)")
    add("--json", type=Path, help="also write every sample here")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    try:
        figures = asyncio.run(run(settings))
    except (ServerExited, OSError, TimeoutError) as exc:
        print(f"code actions benchmark broke: {exc}", file=sys.stderr)
        return 2
    if settings.json:
        settings.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
