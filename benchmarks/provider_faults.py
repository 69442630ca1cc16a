"""Provider faults: what a failing primary provider costs, with the provider pool and without.

Two loopback fake providers speak the Ollama wire format with ``--latency-ms`` of prompt
processing and a one-line reply each, signed so the answer says who wrote it: the *primary*
and a healthy *secondary*. Phase after phase the primary misbehaves in one way: HTTP 500;
429 with Retry-After; a hang (no headers, ever); a stream truncated after its first chunk; a
slow drip (one chunk per quarter deadline, so the whole reply takes longer than the deadline);
hard down (connection refused: the fake is stopped). A healthy phase comes first: it is the
latency baseline. Each phase sends the same number of inline completion requests, one at a
time, each at a new spot (invoked, no debounce, cache off: every request is a real completion),
then clears the fault and keeps asking every 250 ms until the primary answers again.

Systems, measured phase by phase in the same run against the same fakes:

- **pool**: the real server, ``python -m crucible --stdio``, configured with both providers
  (primary priority 0, secondary 1): breaker, failover, first-byte timeout, deadline, probes;
- **single**: the same server with the primary only (the breaker without failover): the fair
  comparison with the naive client, which has the same one provider;
- **naive**: no pool at all, the baseline: one streaming ``/api/generate`` call to the primary
  per request, given up at the same deadline, no breaker, no failover.

Each Crucible phase runs in a fresh server process (started, warmed up with one healthy
request, then measured), so no phase inherits another's breaker state, cooldown growth or
latency window. While it runs, ``crucible/status`` is polled every 20 ms for the primary's
circuit state. Per phase and system: success rate, p50/p99 latency, upstream calls per request,
calls the primary took and the most it took in any one cooldown, time for its circuit to open,
and, after the fault is cleared, to close again and for the primary to answer again; the worst
overrun of an answer past its deadline. Then ratios against the naive client and against the
healthy phase, and the issue's targets, judged and printed, never asserted.

Run from the repository root::

    python -m benchmarks.provider_faults [--quick] [--requests 30] [--latency-ms 80] [--json PATH]

The exit status is non-zero only when the run itself breaks (the server crashes or cannot
start); poor figures are figures. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
from lsprotocol import types
from tests.fakes.ports import reserved_port
from tests.fakes.provider import FakeProvider, Fault

from benchmarks._fault_figures import (
    Figures,
    PhaseRun,
    Request,
    figures_json,
    ms,
    ratio,
    run_json,
    summarize,
    table,
    targets,
)
from benchmarks._figures import target_lines
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session, end_position

MODEL = "qwen2.5-coder:1.5b-base"
TEXT = "def add(a, b):\n    "
PROVIDERS = ("primary", "secondary")
MAX_TOKENS = 160  # Crucible's default completion.max_tokens; the naive client asks for as many
POLL_S = 0.02  # crucible/status polling while a phase runs
GAP_S = 0.05  # between one answer and the next measured request
RECOVERY_CADENCE_S = 0.25  # requests after the fault is cleared, until the primary answers
ANSWER_GRACE_S = 5.0  # how long past its deadline a request is waited for (then: no answer)


def _reply(name: str) -> str:
    return f"return a + b  # {name}"


@dataclass(frozen=True)
class Profile:
    """The settings of one run (full or quick); reported with the figures."""

    requests: int
    latency_ms: int
    deadline_ms: int  # completion.timeout_ms, and the naive client's deadline
    first_byte_ms: int  # resilience.first_byte_timeout_ms
    threshold: int  # resilience.failure_threshold
    cooldown_ms: int
    cooldown_max_ms: int
    retry_after_s: float
    drip_ms: int
    systems: tuple[str, ...]


FULL = Profile(
    requests=30,
    latency_ms=80,
    deadline_ms=4000,
    first_byte_ms=1500,
    threshold=5,
    cooldown_ms=1000,
    cooldown_max_ms=4000,
    retry_after_s=2.0,
    drip_ms=1000,
    systems=("pool", "single", "naive"),
)
# CI only proves the run works: a shorter deadline and cooldown, fewer requests. All three
# systems stay: without "single", the only Crucible figure beside the one-provider naive client
# would be the pool's, which has a second provider to fail over to.
QUICK = Profile(
    requests=4,
    latency_ms=80,
    deadline_ms=600,
    first_byte_ms=250,
    threshold=3,
    cooldown_ms=500,
    cooldown_max_ms=1000,
    retry_after_s=1.0,
    drip_ms=150,
    systems=("pool", "single", "naive"),
)
BASELINE = "naive"


@dataclass(frozen=True)
class Phase:
    name: str
    fault: Callable[[Profile], Fault | None]  # the primary's fault; None: stopped (hard down)
    what: Callable[[Profile], str]


PHASES = (
    Phase("healthy", lambda p: Fault(latency_ms=p.latency_ms), lambda p: "no fault"),
    Phase(
        "500",
        lambda p: Fault(latency_ms=p.latency_ms, status=500),
        lambda p: "HTTP 500 after the latency",
    ),
    Phase(
        "429",
        lambda p: Fault(latency_ms=p.latency_ms, status=429, retry_after=p.retry_after_s),
        lambda p: f"HTTP 429 with Retry-After: {p.retry_after_s:g} s",
    ),
    Phase("hang", lambda p: Fault(hang=True), lambda p: "reads the request, never answers"),
    Phase(
        "truncated",
        lambda p: Fault(latency_ms=p.latency_ms, truncate_after=1),
        lambda p: "the stream is dropped after its first chunk",
    ),
    Phase(
        "drip",
        lambda p: Fault(latency_ms=p.latency_ms, chunk_delay_ms=p.drip_ms),
        lambda p: f"first chunk on time, then one every {p.drip_ms} ms (6 chunks)",
    ),
    Phase("down", lambda p: None, lambda p: "connection refused (the fake is stopped)"),
)
HEALTHY, DOWN = PHASES[0].name, PHASES[-1].name


# -- the clients -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    sent: float  # time.perf_counter()
    arrived: float  # math.inf: no answer at all
    text: str  # the suggestion ("" when none)
    error: str | None

    @property
    def latency_ms(self) -> float:
        return (self.arrived - self.sent) * 1000

    @property
    def via(self) -> str:
        return next((name for name in PROVIDERS if self.text.endswith(f"# {name}")), "")


class Client(Protocol):
    async def ask(self) -> Answer:
        """One completion request at a new spot of the document, answered."""
        ...

    async def counters(self) -> dict[str, int]:
        """Provider calls made so far (``calls`` in all, ``primary`` to the primary) and the
        times the primary's circuit opened (``trips``)."""
        ...


def _new_spot(count: int) -> str:
    return f"x{count} = {count}\n    "


class CrucibleClient:
    """An editor asking the real server, one invoked request at a time, at a new line each."""

    def __init__(self, session: CrucibleSession, deadline_ms: int) -> None:
        self.session = session
        self._wait_s = deadline_ms / 1000 + ANSWER_GRACE_S
        self._uri = "file:///bench/faults.py"
        self._text = TEXT
        self._version = 1
        self._count = 0
        session.open(self._uri, "python", TEXT)

    async def ask(self) -> Answer:
        self.session.check_alive()
        spot = _new_spot(self._count)
        self._count += 1
        self._version += 1
        self.session.insert(self._uri, self._version, end_position(self._text), spot)
        self._text += spot
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        sent = time.perf_counter()
        invoked = types.InlineCompletionTriggerKind.Invoked
        pending = self.session.inline_completion(self._uri, end_position(self._text), invoked)
        pending.add_done_callback(lambda _: _settle(arrived, time.perf_counter()))
        try:
            done = await asyncio.wait_for(arrived, self._wait_s)
        except TimeoutError:
            self.session.check_alive()
            return Answer(sent, math.inf, "", "no answer")
        text, error = _lsp_text(pending)
        return Answer(sent, done, text, error)

    async def counters(self) -> dict[str, int]:
        status = await self.session.status()
        if not isinstance(status, dict):
            self.session.check_alive()
            raise ServerExited("crucible/status did not answer")
        primary = _member(status, "primary")
        return {
            "calls": int((status.get("upstream") or {}).get("calls", 0)),
            "primary": int(primary.get("calls", 0)),
            "trips": int(primary.get("trips", 0)),
        }

    async def primary_state(self) -> str | None:
        return _member(await self.session.status(), "primary").get("state")


def _member(status: Any, name: str) -> dict[str, Any]:
    members = status.get("providers") if isinstance(status, dict) else None
    return next((m for m in members or [] if m.get("name") == name), {})


def _settle(arrived: asyncio.Future[float], at: float) -> None:
    arrived.get_loop().call_soon_threadsafe(_set_once, arrived, at)


def _set_once(arrived: asyncio.Future[float], at: float) -> None:
    if not arrived.done():
        arrived.set_result(at)


def _lsp_text(pending: Future[Any]) -> tuple[str, str | None]:
    try:
        result = pending.result()
    except Exception as exc:
        return "", type(exc).__name__
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    if not items:
        return "", None
    insert = items[0].insert_text
    return (insert if isinstance(insert, str) else insert.value), None


class NaiveClient:
    """No pool: one streaming ``/api/generate`` to the primary per request, read to its end
    within the deadline; a failure is an empty answer. No breaker, no failover, no retry."""

    def __init__(self, http: httpx.AsyncClient, deadline_ms: int) -> None:
        self._http = http
        self._deadline_s = deadline_ms / 1000
        self._text = TEXT
        self._count = 0
        self._calls = 0

    async def ask(self) -> Answer:
        self._text += _new_spot(self._count)
        self._count += 1
        body = {
            "model": MODEL,
            "prompt": self._text,
            "suffix": "",
            "stream": True,
            "options": {"num_predict": MAX_TOKENS},
        }
        parts: list[str] = []
        finished, error = False, None
        self._calls += 1
        sent = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._deadline_s),
                self._http.stream("POST", "/api/generate", json=body) as response,
            ):
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line:
                        event = json.loads(line)
                        parts.append(event.get("response", ""))
                        finished = finished or event.get("done") is True
        except TimeoutError:
            error = "deadline"
        except (httpx.HTTPError, ValueError) as exc:
            error = type(exc).__name__
        arrived = time.perf_counter()
        text = "".join(parts).strip() if finished and error is None else ""
        return Answer(sent, arrived, text, error)

    async def counters(self) -> dict[str, int]:
        return {"calls": self._calls, "primary": self._calls, "trips": 0}  # no breaker


class StatePoller:
    """Polls ``crucible/status`` in the background: the primary's circuit state over time."""

    def __init__(self, client: CrucibleClient) -> None:
        self._client = client
        self.samples: list[tuple[float, str]] = []  # (time.perf_counter(), state)
        self._task: asyncio.Task[None] | None = None
        self._sampled = asyncio.Event()  # set, and replaced, after each new sample
        self._running = True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Let the status request in flight finish (a request cancelled mid-way would leave
        pygls an answer for nobody), then end."""
        self._running = False
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while self._running:
            state = await self._client.primary_state()
            if state is not None:
                self.samples.append((time.perf_counter(), state))
                sampled, self._sampled = self._sampled, asyncio.Event()
                sampled.set()
            await asyncio.sleep(POLL_S)

    def first(self, state: str, after: float) -> float | None:
        return next((t for t, s in self.samples if t >= after and s == state), None)

    async def wait_for(self, state: str, after: float, within_s: float) -> float | None:
        """:meth:`first`, waiting up to ``within_s`` seconds for it to be sampled."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self.first(state, after) is None:
                    await self._sampled.wait()
        return self.first(state, after)

    def transitions(self, origin: float) -> list[tuple[float, str]]:
        """Each change of state, in ms from ``origin``."""
        changes: list[tuple[float, str]] = []
        for at, state in self.samples:
            if not changes or changes[-1][1] != state:
                changes.append((round((at - origin) * 1000, 1), state))
        return changes


# -- one phase ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fakes:
    primary: FakeProvider
    secondary: FakeProvider
    primary_url: str  # fixed: the primary is stopped and started again on the same port

    def healthy(self, profile: Profile) -> None:
        """Both fakes serving, no fault but their latency, no records."""
        self.primary.start()
        for fake in (self.primary, self.secondary):
            fake.reset()
            fake.inject(Fault(latency_ms=profile.latency_ms))

    def generations(self) -> dict[str, int]:
        return {
            "primary": len(self.primary.generation_requests()),
            "secondary": len(self.secondary.generation_requests()),
        }


def _break(fakes: Fakes, phase: Phase, profile: Profile) -> None:
    fault = phase.fault(profile)
    if fault is None:
        fakes.primary.stop()
    else:
        fakes.primary.clear_faults()
        fakes.primary.inject(fault)


async def measure(
    client: Client,
    fakes: Fakes,
    phase: Phase,
    system: str,
    profile: Profile,
    poller: StatePoller | None,
) -> PhaseRun:
    """The phase's requests with the fault on; then the fault cleared, and the recovery."""
    before = first = await client.counters()
    seen = fakes.generations()
    _break(fakes, phase, profile)
    requests: list[Request] = []
    start: float | None = None
    for _ in range(profile.requests):
        answer = await client.ask()
        after = await client.counters()
        start = answer.sent if start is None else start
        requests.append(
            Request(
                sent_ms=(answer.sent - start) * 1000,
                latency_ms=answer.latency_ms,
                served=bool(answer.text),
                via=answer.via,
                attempts=after["calls"] - before["calls"],
                primary=after["primary"] - before["primary"],
                error=answer.error,
            )
        )
        before = after
        await asyncio.sleep(GAP_S)
    generations = {name: n - seen[name] for name, n in fakes.generations().items()}
    trips = before["trips"] - first["trips"]
    run = PhaseRun(phase.name, system, requests, generations, trips=trips)
    assert start is not None
    if poller is not None:
        opened = poller.first("open", after=start)
        run.open_ms = None if opened is None else (opened - start) * 1000
    if phase.name != HEALTHY:
        await recover(client, fakes, run, profile, poller)
    if poller is not None:
        run.transitions = poller.transitions(start)
    return run


async def recover(
    client: Client, fakes: Fakes, run: PhaseRun, profile: Profile, poller: StatePoller | None
) -> None:
    """Clear the fault, then ask every 250 ms until an answer comes from the primary."""
    if isinstance(client, CrucibleClient):
        run.state_at_clear = await client.primary_state()
    cleared = time.perf_counter()
    fakes.healthy(profile)  # starts a stopped primary again, on the same port
    limit = (1.1 * profile.cooldown_max_ms + profile.deadline_ms) / 1000 + 2.0
    while True:
        answer = await client.ask()
        run.recovery.append(
            {
                "sent_ms": round((answer.sent - cleared) * 1000, 1),
                "latency_ms": None if math.isinf(answer.arrived) else round(answer.latency_ms, 1),
                "via": answer.via,
            }
        )
        if answer.via == "primary":
            run.back_ms = (answer.arrived - cleared) * 1000
            break
        if time.perf_counter() - cleared > limit:
            run.back_ms = math.inf
            break
        await asyncio.sleep(max(0.0, answer.sent + RECOVERY_CADENCE_S - time.perf_counter()))
    if poller is None or run.state_at_clear in (None, "closed"):
        return
    closed = await poller.wait_for("closed", after=cleared, within_s=1.0)
    half_open = poller.first("half_open", after=cleared)
    run.closed_ms = math.inf if closed is None else (closed - cleared) * 1000
    run.half_open_ms = None if half_open is None else (half_open - cleared) * 1000


def _options(system: str, fakes: Fakes, profile: Profile) -> dict[str, Any]:
    urls = {"primary": fakes.primary_url, "secondary": fakes.secondary.base_url}
    names = PROVIDERS if system == "pool" else PROVIDERS[:1]
    providers = [
        {"name": name, "kind": "ollama", "base_url": urls[name], "model": MODEL, "priority": n}
        for n, name in enumerate(names)
    ]
    return {
        "providers": providers,
        "completion": {
            "debounce_mode": "fixed",
            "debounce_ms": 0,
            "timeout_ms": profile.deadline_ms,
            "max_tokens": MAX_TOKENS,
        },
        "cache": {"enabled": False},
        "resilience": {
            "first_byte_timeout_ms": profile.first_byte_ms,
            "failure_threshold": profile.threshold,
            "cooldown_ms": profile.cooldown_ms,
            "cooldown_max_ms": profile.cooldown_max_ms,
        },
    }


async def run_phase(
    system: str, phase: Phase, fakes: Fakes, profile: Profile, root: Path, messages: list[str]
) -> PhaseRun:
    """One phase against one system, in a fresh server (Crucible) or client (naive)."""
    fakes.healthy(profile)
    if system == BASELINE:
        async with httpx.AsyncClient(
            base_url=fakes.primary_url, timeout=None, trust_env=False
        ) as http:
            naive = NaiveClient(http, profile.deadline_ms)
            await naive.ask()  # warm-up: the connection, like the server's first request
            return await measure(naive, fakes, phase, system, profile, None)
    workdir = root / f"{phase.name}-{system}"
    async with crucible_session(workdir, _options(system, fakes, profile)) as session:
        client = CrucibleClient(session, profile.deadline_ms)
        await client.ask()  # warm-up: process start-up and the primary's connection
        poller = StatePoller(client)
        poller.start()
        try:
            run = await measure(client, fakes, phase, system, profile, poller)
        finally:
            await poller.stop()
        run.status = await session.status()
        messages.extend(session.messages)
        return run


async def run(settings: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    runs: list[PhaseRun] = []
    messages: list[str] = []
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        # Held for the whole run: the outage phase's stopped primary refuses, and no other
        # process is given its port before it starts again there (tests/fakes/ports.py).
        port = stack.enter_context(reserved_port())
        primary = FakeProvider(model=MODEL, reply=_reply("primary"), chunk_size=4, port=port)
        secondary = FakeProvider(model=MODEL, reply=_reply("secondary"), chunk_size=4)
        stack.enter_context(primary)
        stack.enter_context(secondary)
        fakes = Fakes(primary, secondary, f"http://127.0.0.1:{port}")
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crucible-faults-")))
        # Phase by phase, every system in turn: a slow moment of the machine hits all alike.
        for phase in PHASES:
            for system in profile.systems:
                runs.append(await run_phase(system, phase, fakes, profile, root, messages))
    return _report(settings, profile, runs, messages, time.perf_counter() - started)


# -- the report --------------------------------------------------------------------------


def _ratio_lines(figures: dict[tuple[str, str], Figures], systems: Sequence[str]) -> list[str]:
    """Per phase, each Crucible system against the naive client: what was served, the calls
    the primary took (naive / system), and the latency of served answers over the naive
    client's on a healthy primary (system / naive healthy): what a suggestion costs the user
    under the fault. An empty answer's latency is in the table, not compared here."""
    healthy = figures[HEALTHY, BASELINE]
    lines = []
    for phase in PHASES:
        base = figures[phase.name, BASELINE]
        for system in systems:
            if system == BASELINE:
                continue
            f = figures[phase.name, system]
            latency = (
                f"p50 {ms(f.served_p50_ms)} ms, p99 {ms(f.served_p99_ms)} ms ="
                f" {ratio(f.served_p50_ms, healthy.served_p50_ms)},"
                f" {ratio(f.served_p99_ms, healthy.served_p99_ms)}"
                if f.served
                else "none"
            )
            lines.append(
                f"  {phase.name:<10} {system:<7} served {f.served:>2}/{f.requests} vs"
                f" {base.served:>2}/{base.requests}; primary calls {f.primary:>2} vs"
                f" {base.primary:>2} ({ratio(base.primary, f.primary):>5});"
                f" served answers {latency}"
            )
    return lines


def _settings_line(profile: Profile) -> str:
    return (
        f"{profile.requests} requests per phase, one at a time ({GAP_S * 1000:.0f} ms apart);"
        f" provider latency {profile.latency_ms} ms; deadline (completion.timeout_ms)"
        f" {profile.deadline_ms} ms; [resilience] first_byte_timeout_ms {profile.first_byte_ms},"
        f" failure_threshold {profile.threshold}, cooldown_ms {profile.cooldown_ms},"
        f" cooldown_max_ms {profile.cooldown_max_ms}, health probes on, hedging off;"
        " cache off, debounce 0, invoked requests"
    )


def _report(
    settings: argparse.Namespace,
    profile: Profile,
    runs: Sequence[PhaseRun],
    messages: Sequence[str],
    elapsed_s: float,
) -> dict[str, Any]:
    figures = {
        (r.phase, r.system): summarize(
            r, cooldown_ms=profile.cooldown_ms, deadline_ms=profile.deadline_ms
        )
        for r in runs
    }
    rows = [(r.phase, r.system, figures[r.phase, r.system]) for r in runs]
    healthy_p99 = {s: figures[HEALTHY, s].p99_ms for s in profile.systems}
    faults = [phase.name for phase in PHASES if phase.name != HEALTHY]
    found = targets(
        figures,
        system="pool",
        healthy=HEALTHY,
        down=DOWN,
        faults=faults,
        threshold=profile.threshold,
        cooldown_ms=profile.cooldown_ms,
    )
    print(
        f"Provider faults ({'quick' if settings.quick else 'full'} run, {elapsed_s:.0f} s):"
        f" primary (priority 0) faulty phase by phase, secondary (priority 1) healthy.\n"
        + _settings_line(profile)
        + ".\nSystems: pool = Crucible with both providers; "
        + ("single = Crucible with the primary only; " if "single" in profile.systems else "")
        + "naive = one streaming /api/generate per request to the primary, same deadline.\n"
        + "Phases: "
        + "; ".join(f"{p.name}: {p.what(profile)}" for p in PHASES)
        + ".\n"
    )
    print(table(rows, healthy_p99))
    print(
        "\n(served: answers with a suggestion; 2nd: of those, written by the secondary;"
        " p50/p99: request sent -> answer, ms;\n p99/h: p99 over the system's own healthy p99;"
        " calls: provider calls per request (Crucible: upstream.calls; naive: its own);\n"
        " gens: generation requests the fakes received per request; 1st: calls to the primary;"
        " 1st/cd: the most of them\n in any one cooldown; open: first request -> circuit open;"
        " closed: fault cleared -> circuit closed\n (- when it was not open then); back:"
        " fault cleared -> an answer from the primary; over: slowest answer minus deadline)\n"
    )
    print(
        "Against the naive client (single has its one provider: the like-for-like comparison;"
        " pool adds a second one):\nserved (system vs naive), calls to the primary (system vs"
        " naive, ratio naive / system:\nhigher is better), latency of served answers (ratios over"
        " the naive client's on the healthy primary:\nlower is better):"
    )
    print("\n".join(_ratio_lines(figures, profile.systems)))
    print("\nTargets:")
    print("\n".join(target_lines(found)))
    for message in messages:
        print(f"server said: {message}")
    return {
        "settings": {
            **{k: v for k, v in vars(settings).items() if k != "json"},
            **asdict(profile),
            "gap_ms": GAP_S * 1000,
            "poll_ms": POLL_S * 1000,
            "recovery_cadence_ms": RECOVERY_CADENCE_S * 1000,
        },
        "figures": [
            {"phase": phase, "system": system, **figures_json(f)} for phase, system, f in rows
        ],
        "targets": [asdict(t) for t in found],
        "runs": [run_json(r) for r in runs],
        "server_messages": list(messages),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.provider_faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="4 requests a phase, short deadline (CI)")
    add("--requests", type=int, help="requests per phase (full 30, quick 4)")
    add("--latency-ms", type=int, help="provider prompt processing (default 80)")
    add("--json", type=Path, help="also write the figures and every request here")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    profile = QUICK if settings.quick else FULL
    if settings.requests:
        profile = replace(profile, requests=max(1, settings.requests))
    if settings.latency_ms is not None:
        profile = replace(profile, latency_ms=max(0, settings.latency_ms))
    try:
        figures = asyncio.run(run(settings, profile))
    except (ServerExited, OSError, TimeoutError) as exc:
        print(f"provider faults broke: {exc}", file=sys.stderr)
        return 2
    if settings.json:
        settings.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
