"""Slow local model: a real llama.cpp server whose prompt processing takes seconds, as on a CPU.

A user edits a ~200-line Python file (``samples/shop.py``) at several spots: opens a new line
(Enter with auto-indent), types a few keys, pauses 1-2 s, types again, pauses, ... The editor
asks for an inline completion on every keystroke (automatic trigger) and cancels the previous
request, as VS Code does. The provider is llama.cpp's own HTTP server (the pinned ``xllamacpp``
wheel, ``tests/llama_server``) with one slot, serving a generated model (``tiny_model.py``'s
bigram program, made big enough that a fresh completion prompt takes seconds to process on two
cores, while a prompt the server has just seen is served from its prompt cache in milliseconds).

Systems, one after the other, each against a freshly started llama.cpp server (empty cache),
with the same spots, keys and pauses:

- **crucible**: the real server, ``python -m crucible --stdio``, one ``llamacpp`` provider,
  every other setting at its default;
- **plain** (the baseline): what a simple editor plugin does: one streaming ``/infill`` per
  keystroke with the same window and sampling, the previous one cancelled (its HTTP stream
  closed), no cut-off;
- **failover** (not in ``--quick``): Crucible with a second provider listed after the local one,
  dead (connection refused), so the local one is cut at the first-byte timeout (1.5 s) and
  fails over. It does *not* reproduce the Crucible before "slow is not failed": the cut prompt
  keeps warming now; see ``--old-rev`` for that one;
- **old** (only with ``--old-rev REV``): the server as it was at git revision ``REV`` (extracted
  with ``git archive``), one provider, the same setup as ``crucible``.

Per pause: whether a suggestion was shown before the next key, and the time from the last key
to it; for Crucible, ``crucible/status`` after the pause: the provider's health, circuit state,
breaker trips, failures, first-byte percentiles and prompts still warming. From llama.cpp's own
log: every task it started, the share of its prompt found in the slot's cache, and how long it
held the slot, so it shows which requests reused the prompt cache and which queued behind
others. Targets from the issue are judged and printed, never asserted. The share of pauses
served is judged over the pauses the model server could answer in this run: the server's
speed is measured just before and just after Crucible's replay (``measure_speed``), and a
pause counts when it ended no earlier after its spot's Enter than the earliest suggestion
that speed allows; a run where none did (a loaded machine) says so (SKIP) instead of FAIL.

Run from the repository root::

    python -m benchmarks.slow_local_model [--quick] [--spots 10] [--bursts 3] [--threads 2]
                                          [--old-rev REV] [--json PATH] [--workdir DIR]

Exits 0 with a message when llama.cpp's binary cannot run on this CPU; non-zero only when the
run itself breaks (a server crashes or cannot start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from lsprotocol import types
from tests.fakes.ports import reserved_port
from tests.llama_server.server import CpuNotSupported, LlamaServerProcess
from tests.llama_server.tiny_model import train_merges, write_tiny_model

from benchmarks._figures import percentile
from benchmarks._lsp_client import CrucibleSession, ServerExited, crucible_session, end_position
from crucible.config.settings import CompletionSettings
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import cut_window

SAMPLE = Path(__file__).with_name("samples") / "shop.py"
# Crucible's defaults, which the plain client copies: window, tokens, temperature.
MAX_PREFIX, MAX_SUFFIX, MAX_TOKENS, TEMPERATURE = 6000, 2000, 160, 0.2
MODEL_NAME = "crucible-slow-bigram"
# The model: 4 layers of width 384 (FFN 1152), 6 heads of 64, 3 KV heads: ~35 MB F32. On this
# machine's two cores, shared with other work, a ~1700-2000-token /infill prompt took from 0.8 s
# (idle) to 7 s (load average 5), typically 2-5 s; the same prompt again 5-70 ms. --embed,
# --layers and --ffn change it (--embed 640: about 2.5 times slower).
MODEL = {"embed": 384, "layers": 4, "ffn": 1152, "heads": 6, "kv_heads": 3}
MERGES = 2000  # BPE merges learnt from Crucible's own sources: ~3 characters per token
CTX = 8192  # one slot: the whole context is its own
SERVED_TARGET = 0.8
JUDGED = "crucible"  # the system the targets are judged on
SPEED_TIMEOUT_S = 300.0
# The longest wait Crucible adds by design before it asks (the run keeps the default): part
# of the earliest a suggestion can be shown, besides the model's own time.
DEBOUNCE_MAX_MS = CompletionSettings().debounce_max_ms


@dataclass(frozen=True)
class Spot:
    """Open a new line after the line ``after`` (same indentation) and type ``bursts``."""

    after: str
    bursts: tuple[str, ...]


SPOTS = (
    Spot("        gross = self.product.price * self.quantity", ("minimum", " = Decim", "al(self")),
    Spot('        net = sum((line.subtotal for line in self.lines), Decimal("0"))',
         ("count", " = len(se", "lf.lines")),
    Spot("        held = sum(parts.get(sku, 0) for parts in self._reserved.values())",
         ("stock", " = self._", "stock.get")),
    Spot("            available = self.available(sku)", ("logger", '.debug("che', "cking %s")),
    Spot("        parts = self._reserved.pop(order.number, None)",
         ("shipped", " = order.", "shipped")),
    Spot("            tags = tuple(", ("price", ' = row["pr', 'ice"].str')),
    Spot("    weight = order.weight()", ("parcels", " = int(wei", "ght // 20")),
    Spot('        rows = [f"Invoice for order', ("header", ' = f"Order', " {self.ord")),
    Spot("    sold: dict[str, int] = defaultdict(int)", ("skipped", " = 0", "  # not sh")),
    Spot("    invoices = []", ("failed", " = []", "  # orders we")),
)  # fmt: skip
QUICK_SPOTS = (SPOTS[1], SPOTS[3])


# -- the user -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One edit: ``text`` inserted at the cursor, then ``gap`` seconds until the next one."""

    text: str
    gap: float
    spot: int
    burst: int  # the pause after this burst is judged; -1: the Enter that opens the line


def script(spots: Sequence[Spot], bursts: int, seed: int) -> list[Key]:
    """The keys of the whole session: per spot, Enter, then each burst's keys and a pause."""
    rng = random.Random(seed)
    keys: list[Key] = []
    for number, spot in enumerate(spots):
        indent = spot.after[: len(spot.after) - len(spot.after.lstrip())]
        keys.append(Key("\n" + indent, rng.uniform(0.25, 0.5), number, -1))
        for index, burst in enumerate(spot.bursts[:bursts]):
            for char_number, char in enumerate(burst):
                last = char_number == len(burst) - 1
                gap = rng.uniform(1.0, 2.0) if last else rng.uniform(0.09, 0.18)
                keys.append(Key(char, gap, number, index))
    return keys


def place(text: str, spot: Spot) -> int:
    """The cursor where ``spot`` opens its line: the end of the line that starts with
    ``spot.after``."""
    start = text.index("\n" + spot.after) + 1
    return text.index("\n", start)


@dataclass(frozen=True)
class Shown:
    arrived: float  # time.perf_counter()
    text: str  # the suggestion; "" when the answer was empty
    error: str | None = None


class Editor(Protocol):
    name: str

    async def start(self, uri: str, text: str) -> None: ...

    def key(self, uri: str, version: int, before: str, offset: int, text: str) -> Future[Shown]:
        """Insert ``text`` at ``offset`` of ``before`` (the document), ask for a suggestion at
        the new cursor, and cancel the previous request if it is still pending."""
        ...

    async def finish(self) -> None: ...


class CrucibleEditor:
    """didChange + textDocument/inlineCompletion per key, $/cancelRequest for the previous."""

    def __init__(self, name: str, session: CrucibleSession) -> None:
        self.name = name
        self._session = session
        self._ids = itertools.count(1)
        self._pending: tuple[str, Future[Any]] | None = None

    async def start(self, uri: str, text: str) -> None:
        self._session.open(uri, "python", text)

    def key(self, uri: str, version: int, before: str, offset: int, text: str) -> Future[Shown]:
        self._session.check_alive()
        self._cancel_pending()
        self._session.insert(uri, version, end_position(before[:offset]), text)
        after = before[:offset] + text
        msg_id = f"bench-{next(self._ids)}"
        pending = self._session.inline_completion_with_id(uri, end_position(after), msg_id)
        self._pending = (msg_id, pending)
        shown: Future[Shown] = Future()
        pending.add_done_callback(lambda done: shown.set_result(_lsp_shown(done)))
        return shown

    def _cancel_pending(self) -> None:
        if self._pending is not None and not self._pending[1].done():
            self._session.cancel(self._pending[0])
        self._pending = None

    async def finish(self) -> None:
        self._cancel_pending()


def _lsp_shown(done: Future[Any]) -> Shown:
    arrived = time.perf_counter()
    try:
        result = done.result()
    except Exception as exc:  # RequestCancelled, mostly
        return Shown(arrived, "", type(exc).__name__)
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    texts = [
        i.insert_text if isinstance(i.insert_text, str) else i.insert_text.value for i in items
    ]
    return Shown(arrived, next((t for t in texts if t), ""))


def _snapshot(text: str) -> DocumentSnapshot:
    return DocumentSnapshot(
        uri="file:///bench/shop.py",
        path="/bench/shop.py",
        language_id="python",
        version=1,
        text=text,
    )


class PlainEditor:
    """The baseline: a streaming ``/infill`` per key, the previous one cancelled (its stream
    closed), the answer read to the end of its first line; no cut-off, no warming."""

    name = "plain"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._task: asyncio.Task[None] | None = None

    async def start(self, uri: str, text: str) -> None:
        return None

    def key(self, uri: str, version: int, before: str, offset: int, text: str) -> Future[Shown]:
        if self._task is not None:
            self._task.cancel()
        after = before[:offset] + text + before[offset:]
        window = cut_window(
            _snapshot(after),
            offset + len(text),
            max_prefix=MAX_PREFIX,
            max_suffix=MAX_SUFFIX,
        )
        shown: Future[Shown] = Future()
        self._task = asyncio.create_task(self._ask(window.prefix, window.suffix, shown))
        return shown

    async def _ask(self, prefix: str, suffix: str, shown: Future[Shown]) -> None:
        body = {
            "input_prefix": prefix,
            "input_suffix": suffix,
            "input_extra": [],
            "n_predict": MAX_TOKENS,
            "temperature": TEMPERATURE,
            "stream": True,
            "cache_prompt": True,
        }
        reply = ""
        try:
            async with self._http.stream("POST", "/infill", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    reply += event.get("content", "")
                    if event.get("stop") or "\n" in reply.lstrip("\n"):
                        break
        except asyncio.CancelledError:
            shown.set_result(Shown(time.perf_counter(), "", "cancelled"))
            raise
        except (httpx.HTTPError, ValueError) as exc:
            shown.set_result(Shown(time.perf_counter(), "", type(exc).__name__))
            return
        shown.set_result(Shown(time.perf_counter(), reply.lstrip("\n").split("\n", 1)[0]))

    async def finish(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -- one run --------------------------------------------------------------------------------


@dataclass
class Pause:
    """A pause after a burst: was a suggestion shown before the next key?"""

    spot: int
    burst: int
    keys: int  # edits since the previous pause (the Enter included)
    pause_ms: float
    served: bool
    latency_ms: float | None  # last key -> suggestion shown, None: nothing shown in the pause
    suggestion: str
    error: str | None
    provider: dict[str, Any] = field(default_factory=dict)  # Crucible: its status after it
    reach_ms: float = 0.0  # from the Enter that opened the spot's line to the pause's end


async def replay(
    editor: Editor, keys: Sequence[Key], session: CrucibleSession | None, spots: Sequence[Spot]
) -> list[Pause]:
    """Type ``keys`` on schedule; one :class:`Pause` per burst."""
    uri = "file:///bench/shop.py"
    text = SAMPLE.read_text()
    await editor.start(uri, text)
    pauses: list[Pause] = []
    cursor, typed, opened = 0, 0, 0.0
    for version, key in enumerate(keys, start=2):
        if key.burst == -1:
            cursor = place(text, spots[key.spot])
        shown = editor.key(uri, version, text, cursor, key.text)
        at = time.perf_counter()
        if key.burst == -1:
            opened = at
        text = text[:cursor] + key.text + text[cursor:]
        cursor += len(key.text)
        typed += 1
        if key.burst == -1 or not _ends_burst(keys, version - 2):
            await asyncio.sleep(max(0.0, at + key.gap - time.perf_counter()))
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(shown)), key.gap)
        answer = shown.result() if shown.done() else None
        served = answer is not None and bool(answer.text) and answer.arrived - at <= key.gap
        provider = {}
        if session is not None:
            status = await session.status()
            provider = _provider_status(status)
        pauses.append(
            Pause(
                spot=key.spot,
                burst=key.burst,
                keys=typed,
                pause_ms=key.gap * 1000,
                served=served,
                latency_ms=(answer.arrived - at) * 1000 if served and answer else None,
                suggestion=answer.text if answer else "",
                error=answer.error if answer else None,
                provider=provider,
                reach_ms=(at + key.gap - opened) * 1000,
            )
        )
        typed = 0
        await asyncio.sleep(max(0.0, at + key.gap - time.perf_counter()))
    await editor.finish()
    return pauses


def _ends_burst(keys: Sequence[Key], index: int) -> bool:
    nxt = keys[index + 1] if index + 1 < len(keys) else None
    return nxt is None or (nxt.spot, nxt.burst) != (keys[index].spot, keys[index].burst)


def _provider_status(status: Any) -> dict[str, Any]:
    """The local provider's line of ``crucible/status`` (the first provider)."""
    if not isinstance(status, dict) or not status.get("providers"):
        return {}
    local = status["providers"][0]
    keys = ("health", "state", "trips", "failures", "calls", "warming", "first_byte_ms")
    found = {k: local.get(k) for k in keys}
    found["requests"] = {
        k: v for k, v in (status.get("requests") or {}).items() if isinstance(v, int) and v
    }
    return found


# -- llama.cpp's side -------------------------------------------------------------------------

_STAMP = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+) ")  # minutes.seconds.ms.us since start
_RELEASE = re.compile(r"task (\d+) \| stop processing")
_SELECTED = re.compile(r"selected slot by (LRU|LCP similarity, f_sim_best = ([\d.]+))")
_LAUNCH = re.compile(r"task (\d+) \| processing task")
_PROMPT = re.compile(r"task (\d+) \| prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_CANCEL = re.compile(r"cancel task, id_task = (\d+)")


@dataclass
class Task:
    """One /infill task llama.cpp's server started (took its slot for)."""

    task: int
    similarity: float  # of its prompt to the slot's cached one (LCP / prompt): 0 is a cold start
    prompt_tokens: int | None = None  # evaluated (not from the cache); None: no timing logged
    prompt_ms: float | None = None  # logged only by tasks that ran to their end
    cancelled: bool = False  # the client closed it (a task cancelled while queued never starts)
    started_s: float | None = None  # server time (seconds since its start) it got the slot
    busy_s: float | None = None  # from then until it released the slot


def llama_tasks(log: str) -> tuple[list[Task], int]:
    """The tasks llama.cpp's server started, from its log, and how many it dropped unstarted
    (cancelled while queued behind the busy slot)."""
    tasks: dict[int, Task] = {}
    cancelled: set[int] = set()
    similarity = 0.0
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        now = (
            int(stamp[1]) * 60 + int(stamp[2]) + int(stamp[3]) / 1e3 + int(stamp[4]) / 1e6
            if stamp
            else None
        )
        if found := _SELECTED.search(line):
            similarity = float(found[2]) if found[2] else 0.0
        elif found := _LAUNCH.search(line):
            tasks[int(found[1])] = Task(int(found[1]), similarity, started_s=now)
        elif found := _RELEASE.search(line):
            task = tasks.get(int(found[1]))
            if task is not None and task.started_s is not None and now is not None:
                task.busy_s = now - task.started_s
        elif found := _PROMPT.search(line):
            task = tasks.get(int(found[1]))
            if task is not None:
                task.prompt_ms, task.prompt_tokens = float(found[2]), int(found[3])
        elif found := _CANCEL.search(line):
            cancelled.add(int(found[1]))
    for number in cancelled & tasks.keys():
        tasks[number].cancelled = True
    return list(tasks.values()), len(cancelled - tasks.keys())


@dataclass(frozen=True)
class Calibration:
    cold_ms: float
    cold_tokens: int
    again_ms: float
    again_tokens: int
    key_ms: float  # one more key typed at the cursor: the new part and the suffix again
    key_tokens: int


async def calibrate(http: httpx.AsyncClient, spot: Spot) -> Calibration:
    """llama.cpp's own prompt timings at ``spot``: cold, the same prompt again, one key later."""
    text = SAMPLE.read_text()
    cursor = place(text, spot)
    indent = spot.after[: len(spot.after) - len(spot.after.lstrip())]
    text = text[:cursor] + "\n" + indent + spot.bursts[0] + text[cursor:]
    cursor += 1 + len(indent) + len(spot.bursts[0])
    figures = []
    for extra in ("", "", spot.bursts[1][0]):
        document = text[:cursor] + extra + text[cursor:]
        window = cut_window(
            _snapshot(document),
            cursor + len(extra),
            max_prefix=MAX_PREFIX,
            max_suffix=MAX_SUFFIX,
        )
        body = {
            "input_prefix": window.prefix,
            "input_suffix": window.suffix,
            "n_predict": 1,
            "temperature": TEMPERATURE,
            "cache_prompt": True,
        }
        response = await http.post("/infill", json=body, timeout=120)
        response.raise_for_status()
        timings = response.json()["timings"]
        figures.append((float(timings["prompt_ms"]), int(timings["prompt_n"])))
    (cold, cold_n), (again, again_n), (key, key_n) = figures
    return Calibration(cold, cold_n, again, again_n, key, key_n)


@dataclass(frozen=True)
class Speed:
    """The model server's speed at one moment of a run, as llama.cpp times it: a cold prompt
    at a spot, then the answer one key later (the prompt from its cache but for the new part
    and the suffix, then a line generated)."""

    cold_ms: float
    answer_ms: float
    answer_tokens: int  # generated up to the end of the line (or the token limit)

    @property
    def earliest_ms(self) -> float:
        """The earliest a suggestion can be shown after a spot's Enter: the cold prompt, the
        answer to the newest key, and Crucible's longest debounce before it asks."""
        return self.cold_ms + self.answer_ms + DEBOUNCE_MAX_MS


async def measure_speed(http: httpx.AsyncClient, spot: Spot) -> Speed:
    """:class:`Speed` at ``spot`` of a document unrelated to the replay's (the sample's lines
    in reverse order): the prompt it leaves in the slot's cache shares no prefix with the
    replay's, whose first prompt therefore starts cold as on an empty cache."""
    text = "\n".join(reversed(SAMPLE.read_text().splitlines())) + "\n"
    cursor = place(text, spot)
    indent = spot.after[: len(spot.after) - len(spot.after.lstrip())]
    text = text[:cursor] + "\n" + indent + spot.bursts[0] + text[cursor:]
    cursor += 1 + len(indent) + len(spot.bursts[0])
    figures = []
    for extra, tokens in (("", 1), (spot.bursts[1][0], MAX_TOKENS)):
        document = text[:cursor] + extra + text[cursor:]
        window = cut_window(
            _snapshot(document), cursor + len(extra), max_prefix=MAX_PREFIX, max_suffix=MAX_SUFFIX
        )
        body = {
            "input_prefix": window.prefix,
            "input_suffix": window.suffix,
            "n_predict": tokens,
            "temperature": TEMPERATURE,
            "cache_prompt": True,
            "stop": ["\n"],  # a suggestion is shown once its line is complete
        }
        try:
            # At a load of 15 the answer took 107 s: a measure that takes longer than this
            # says the machine could answer no pause at all.
            response = await http.post("/infill", json=body, timeout=SPEED_TIMEOUT_S)
        except httpx.TimeoutException:
            return Speed(cold_ms=math.inf, answer_ms=math.inf, answer_tokens=0)
        response.raise_for_status()
        timings = response.json()["timings"]
        figures.append(float(timings["prompt_ms"]) + float(timings.get("predicted_ms", 0.0)))
        generated = int(timings.get("predicted_n", 0))
    return Speed(cold_ms=figures[0], answer_ms=figures[1], answer_tokens=generated)


def _tasks_so_far(llama: LlamaServerProcess) -> int:
    return len(llama_tasks(llama.log_path.read_text(errors="replace"))[0])


# -- the systems ------------------------------------------------------------------------------


@dataclass
class Run:
    system: str
    pauses: list[Pause]
    tasks: list[Task]
    status: Any = None
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dropped: int = 0  # requests llama.cpp dropped before they got the slot
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    # The model server's speed just before and just after the replay (the judged system only):
    # what the machine allowed in this run, whatever its load.
    speeds: list[Speed] = field(default_factory=list)


def _options(root: str, system: str, dead_port: int) -> dict[str, Any]:
    """One local provider; for ``failover``, a second one after it at ``dead_port``, which
    refuses connections (reserved by the caller for the run: tests/fakes/ports.py)."""
    local = {"name": "local", "kind": "llamacpp", "base_url": root, "model": MODEL_NAME}
    providers: list[dict[str, Any]] = [local]
    if system == "failover":
        dead = f"http://127.0.0.1:{dead_port}"
        local["priority"] = 0
        providers.append(
            {"name": "dead", "kind": "llamacpp", "base_url": dead, "model": "x", "priority": 1}
        )
    return {"providers": providers}


def _old_checkout(revision: str, into: Path) -> str:
    """``server/`` as it was at ``revision``, extracted under ``into``; its PYTHONPATH."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "server"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return str(into / "server")


async def run_system(system: str, model: Path, workdir: Path, settings: argparse.Namespace) -> Run:
    """One system against a fresh llama.cpp server (an empty prompt cache). For the judged
    system, the server's speed is measured just before and just after the replay, on a prompt
    that leaves the replay's conditions as they were; its tasks are not the replay's."""
    spots = QUICK_SPOTS if settings.quick else SPOTS[: settings.spots]
    keys = script(spots, settings.bursts, settings.seed)
    here = workdir / system
    here.mkdir()
    llama = LlamaServerProcess(model, here, parallel=1, ctx=CTX, threads=settings.threads)
    llama.start(timeout=60)
    speeds: list[Speed] = []
    try:
        if system == JUDGED:
            speeds.append(await _speed_of(llama, spots))
        first_task = _tasks_so_far(llama)
        started = time.perf_counter()
        load = os.getloadavg()[0]
        if system == "plain":
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            async with httpx.AsyncClient(
                base_url=llama.root, timeout=None, trust_env=False, limits=limits
            ) as http:
                pauses = await replay(PlainEditor(http), keys, None, spots)
            run = Run(system, pauses, [])
        else:
            python_path = None
            if system == "old":
                python_path = _old_checkout(settings.old_rev, here / "old")
            with reserved_port() as dead_port:
                options = _options(llama.root, system, dead_port)
                async with crucible_session(
                    here, options, python_path=python_path, log_level=settings.log_level
                ) as session:
                    editor = CrucibleEditor(system, session)
                    pauses = await replay(editor, keys, session, spots)
                    await asyncio.sleep(0.5)  # let a cancelled request's warming report
                    status = await session.status()
                    run = Run(system, pauses, [], status, list(session.messages))
        run.seconds = time.perf_counter() - started
        run.load = (load, os.getloadavg()[0])
        await asyncio.sleep(0.2)
        # The system's client is gone: its queued requests were dropped, and a task it left
        # running was started already, so the tasks after this one are the measure's.
        last_task = _tasks_so_far(llama)
        if system == JUDGED:
            speeds.append(await _speed_of(llama, spots))
    finally:
        llama.stop()
    tasks, run.dropped = llama_tasks(llama.log_path.read_text(errors="replace"))
    run.tasks, run.speeds = tasks[first_task:last_task], speeds
    return run


async def _speed_of(llama: LlamaServerProcess, spots: Sequence[Spot]) -> Speed:
    async with httpx.AsyncClient(base_url=llama.root, trust_env=False) as http:
        return await measure_speed(http, spots[len(spots) // 2])


# -- figures ----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isinf(value) else f"{value:.0f}"


def _text(provider: dict[str, Any], key: str) -> str:
    """A status field as text; ``-`` when this server version does not report it."""
    value = provider.get(key)
    return "-" if value is None else str(value)


def _fb(provider: dict[str, Any]) -> str:
    first = provider.get("first_byte_ms") or {}
    return f"{_ms(first.get('p50'))}/{_ms(first.get('p95'))}"


def pause_table(runs: Sequence[Run]) -> str:
    """One line per pause: each system's served/latency; Crucible's provider after it."""
    head = f"{'spot':>4} {'burst':>5} {'keys':>4} {'pause':>5} {'reach':>5}"
    groups = []
    for run in runs:
        group = f"{run.system:<9} {'ms':>5}"
        if run.status is not None:
            group += f" {'health':>7} {'state':>6} {'trips':>5} {'fail':>4} {'warm':>4}"
            group += f" {'fb p50/p95':>11}"
        groups.append(group)
    lines = [head + " | " + " | ".join(groups)]
    lines.append("-" * len(lines[0]))
    for number, pause in enumerate(runs[0].pauses):
        row = (
            f"{pause.spot:>4} {pause.burst:>5} {pause.keys:>4} {pause.pause_ms:>5.0f}"
            f" {pause.reach_ms:>5.0f}"
        )
        cells = []
        for run in runs:
            p = run.pauses[number]
            cell = f"{'shown' if p.served else '-':<9} {_ms(p.latency_ms):>5}"
            if run.status is not None:
                s = p.provider
                cell += (
                    f" {_text(s, 'health'):>7} {_text(s, 'state'):>6} {_text(s, 'trips'):>5}"
                    f" {_text(s, 'failures'):>4} {_text(s, 'warming'):>4} {_fb(s):>11}"
                )
            cells.append(cell)
        lines.append(row + " | " + " | ".join(cells))
    return "\n".join(lines)


@dataclass(frozen=True)
class Summary:
    served: int
    pauses: int
    p50_ms: float  # last key -> suggestion over the pauses, unserved ones as infinitely slow
    p50_later_ms: float  # the same over the pauses after the first at each spot
    first_served: int  # first pauses at a spot that were served
    tasks: int  # /infill tasks llama.cpp started
    cold: int  # of those, started with less than half of their prompt in the slot's cache
    similarity_p50: float  # p50 of the tasks' cached share of their prompt
    dropped: int  # requests llama.cpp dropped unstarted (cancelled while queued)
    busy_s: float  # the slot's time with a task, summed


_COLD = 0.5


def summarize(run: Run) -> Summary:
    latencies = [math.inf if p.latency_ms is None else p.latency_ms for p in run.pauses]
    later = [math.inf if p.latency_ms is None else p.latency_ms for p in run.pauses if p.burst > 0]
    return Summary(
        served=sum(p.served for p in run.pauses),
        pauses=len(run.pauses),
        p50_ms=percentile(latencies, 50),
        p50_later_ms=percentile(later, 50),
        first_served=sum(p.served for p in run.pauses if p.burst == 0),
        tasks=len(run.tasks),
        cold=sum(t.similarity < _COLD for t in run.tasks),
        similarity_p50=percentile([t.similarity for t in run.tasks], 50),
        dropped=run.dropped,
        busy_s=sum(t.busy_s or 0.0 for t in run.tasks),
    )


def summary_lines(runs: Sequence[Run], summaries: dict[str, Summary], spots: int) -> list[str]:
    lines = [
        f"{'system':<9} {'served':>8} {'p50 ms':>7} {'later':>7} {'1st':>5} {'tasks':>5}"
        f" {'cold':>4} {'cached':>6} {'busy s':>6} {'dropped':>7} {'run s':>6} {'load':>9}"
    ]
    for run in runs:
        s = summaries[run.system]
        cached = "-" if math.isinf(s.similarity_p50) else f"{s.similarity_p50:.2f}"
        lines.append(
            f"{run.system:<9} {f'{s.served}/{s.pauses}':>8} {_ms(s.p50_ms):>7}"
            f" {_ms(s.p50_later_ms):>7} {f'{s.first_served}/{spots}':>5} {s.tasks:>5}"
            f" {s.cold:>4} {cached:>6} {s.busy_s:>6.1f} {s.dropped:>7} {run.seconds:>6.1f}"
            f" {run.load[0]:>4.1f}-{run.load[1]:<4.1f}"
        )
    return lines


def _ratio(numerator: float, denominator: float) -> str:
    if math.isinf(numerator) or math.isinf(denominator) or denominator == 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


@dataclass(frozen=True)
class Target:
    description: str
    passed: bool | None  # None: not judged in this run, the figure says why
    figure: str


def served_target(run: Run) -> Target:
    """Suggestions shown in the pauses the model server could have answered in this run.

    How many pauses a model on two shared cores can answer depends on the machine's load at
    that moment: a cold prompt took 0.8 s idle and 8 s at a load of 6-9, longer than the whole
    time from a spot's Enter to the end of its second pause. Judging every pause made the
    verdict a measure of the load. So each pause is judged only if it ended no earlier after
    its spot's Enter than the earliest suggestion the server allowed, measured around this
    run (the slower of just before and just after): its cold prompt, its answer to a key, and
    Crucible's longest debounce. At a load of 3.5 that was 4.0 s before the replay and 6.7 s
    after it (a spot's second pause ends ~5.3 s after its Enter, its first ~2.5 s); on a
    faster machine or moment more pauses are judged, and a Crucible that stops serving is
    caught there. When no pause is, the target says so (SKIP) with these figures."""
    description = f"suggestion shown in >= {SERVED_TARGET:.0%} of the pauses the model could answer"
    everything = f"{sum(p.served for p in run.pauses)}/{len(run.pauses)} of all pauses"
    if not run.speeds:
        judged, how = run.pauses, "no speed measured: every pause"
    else:
        slower = max(run.speeds, key=lambda speed: speed.earliest_ms)
        judged = [p for p in run.pauses if p.reach_ms >= slower.earliest_ms]
        how = (
            f"pauses ending >= {slower.earliest_ms:.0f} ms after their spot's Enter (llama.cpp"
            f" cold prompt {slower.cold_ms:.0f} + answer {slower.answer_ms:.0f} ms, the slower"
            f" of {', '.join(f'{s.earliest_ms - DEBOUNCE_MAX_MS:.0f}' for s in run.speeds)} ms"
            f" before/after the run, + {DEBOUNCE_MAX_MS} ms debounce)"
        )
    if not judged:
        longest = max((p.reach_ms for p in run.pauses), default=0.0)
        return Target(
            description,
            None,
            f"not judged: no pause in reach, the longest ended {longest:.0f} ms after its"
            f" Enter; {how}; {everything}",
        )
    served = sum(p.served for p in judged)
    return Target(
        description,
        served >= SERVED_TARGET * len(judged),
        f"{served}/{len(judged)} ({served / len(judged):.0%}) of the {how}; {everything}",
    )


def targets(run: Run, summary: Summary, calibration: Calibration, spots: int) -> list[Target]:
    trips = max((p.provider.get("trips") or 0 for p in run.pauses), default=0)
    final = _provider_status(run.status)
    trips = max(trips, final.get("trips") or 0)
    opened = [p for p in run.pauses if p.provider.get("state") not in (None, "closed")]
    return [
        served_target(run),
        Target(
            "the breaker never opens",
            trips == 0 and not opened,
            f"trips {trips}, circuit not closed after {len(opened)} pause(s);"
            f" failures {final.get('failures')}",
        ),
        Target(
            "prompt cache reused: at most one cold start per spot",
            summary.cold <= spots,
            f"{summary.cold} of {summary.tasks} llama.cpp tasks started with < {_COLD:.0%} of"
            f" their prompt cached, {spots} spots",
        ),
        # Judged on the tokens llama.cpp evaluated, not its milliseconds: at a load of 15 one
        # token took 6.5 s against 39 s for 1681 (a ratio of 6), though the cache worked.
        Target(
            "the same prompt again is served from the prompt cache (<= 1/10 of a cold one's"
            " tokens evaluated)",
            calibration.again_tokens <= calibration.cold_tokens / 10,
            f"{calibration.again_tokens} vs {calibration.cold_tokens} tokens"
            f" ({calibration.again_ms:.0f} vs {calibration.cold_ms:.0f} ms)",
        ),
    ]


def report(
    settings: argparse.Namespace,
    calibration: Calibration,
    model_info: dict[str, Any],
    runs: Sequence[Run],
) -> dict[str, Any]:
    spots = len(QUICK_SPOTS if settings.quick else SPOTS[: settings.spots])
    summaries = {run.system: summarize(run) for run in runs}
    print(
        f"Slow local model: llama.cpp server (xllamacpp), 1 slot, ctx {CTX}, {settings.threads}"
        f" thread(s); model {model_info['size_mb']:.0f} MB {model_info['shape']}, written in"
        f" {model_info['written_s']:.1f} s; {spots} spots x {settings.bursts} bursts,"
        f" seed {settings.seed}"
    )
    print(
        f"llama.cpp prompt (one /infill at a spot, Crucible's window): cold"
        f" {calibration.cold_ms:.0f} ms / {calibration.cold_tokens} tokens; same prompt again"
        f" {calibration.again_ms:.0f} ms / {calibration.again_tokens}; one key later"
        f" {calibration.key_ms:.0f} ms / {calibration.key_tokens}"
        f" (cold/again {_ratio(calibration.cold_ms, calibration.again_ms)})\n"
    )
    print(pause_table(runs))
    print("  reach: ms from the Enter that opened the spot's line to the end of the pause")
    for run in runs:
        for moment, speed in zip(("before", "after"), run.speeds, strict=False):
            print(
                f"llama.cpp {moment} the {run.system} run: cold prompt {speed.cold_ms:.0f} ms,"
                f" one key later and a line ({speed.answer_tokens} tokens) {speed.answer_ms:.0f} ms"
            )
    print()
    print("\n".join(summary_lines(runs, summaries, spots)))
    print(
        "  served: pauses with a suggestion before the next key; p50: last key -> suggestion,"
        " over all pauses (a miss\n  is infinitely slow); later: the same after a spot's first"
        " pause; 1st: first pauses served; tasks: /infill\n  tasks llama.cpp started; cold: of"
        f" those, started with < {_COLD:.0%} of the prompt in its cache; cached: p50 share"
        " cached;\n  busy s: the slot's time on tasks; dropped: requests cancelled while queued;"
        " load: 1-minute load average before-after"
    )
    plain = summaries.get("plain")
    if plain is not None:
        for run in runs:
            if run.system == "plain":
                continue
            s = summaries[run.system]
            print(
                f"{run.system} vs plain: served {s.served} vs {plain.served};"
                f" p50 plain/{run.system} {_ratio(plain.p50_ms, s.p50_ms)};"
                f" llama.cpp tasks {s.tasks} vs {plain.tasks}, cold starts {s.cold} vs"
                f" {plain.cold}"
            )
    found = targets(runs[0], summaries[runs[0].system], calibration, spots)
    print(f"Targets ({runs[0].system}):")
    for target in found:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[target.passed]
        print(f"  [{verdict}] {target.description}: {target.figure}")
    for run in runs:
        for message in run.messages:
            print(f"{run.system} server said: {message}")
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()},
        "model": model_info,
        "calibration": asdict(calibration),
        "runs": [
            {
                "system": run.system,
                "seconds": run.seconds,
                "summary": {
                    k: (None if isinstance(v, float) and math.isinf(v) else v)
                    for k, v in asdict(summaries[run.system]).items()
                },
                "pauses": [asdict(p) for p in run.pauses],
                "llama_tasks": [asdict(t) for t in run.tasks],
                "speeds": [asdict(speed) for speed in run.speeds],
                "status": run.status,
                "messages": run.messages,
            }
            for run in runs
        ],
        "targets": [asdict(t) for t in found],
    }


# -- main -------------------------------------------------------------------------------------


def write_model(path: Path, settings: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    shape = {
        "embed": settings.embed,
        "layers": settings.layers,
        "ffn": settings.ffn,
        "heads": settings.embed // 64,
        "kv_heads": settings.embed // 128,
    }
    sources = Path(sys.modules["crucible"].__file__ or "").parent
    corpus = "".join(p.read_text() for p in sorted(sources.rglob("*.py")))
    write_tiny_model(
        path, context=CTX, model_name=MODEL_NAME, merges=train_merges(corpus, MERGES), **shape
    )
    return {
        "path": str(path),
        "size_mb": path.stat().st_size / 2**20,
        "shape": ", ".join(f"{k} {v}" for k, v in shape.items()),
        "merges": MERGES,
        "written_s": time.perf_counter() - started,
    }


async def run(settings: argparse.Namespace) -> dict[str, Any] | None:
    systems = ["crucible", "plain"]
    if not settings.quick:
        systems.append("failover")
    if settings.old_rev:
        systems.append("old")
    async with AsyncExitStack() as stack:
        if settings.workdir is not None:
            workdir = settings.workdir
            workdir.mkdir(parents=True, exist_ok=False)
        else:
            temporary = tempfile.TemporaryDirectory(prefix="crucible-slow-")
            workdir = Path(stack.enter_context(temporary))
        model_info = write_model(workdir / "slow.gguf", settings)
        model = Path(model_info["path"])
        here = workdir / "calibration"
        here.mkdir()
        llama = LlamaServerProcess(model, here, parallel=1, ctx=CTX, threads=settings.threads)
        try:
            llama.start(timeout=60)
        except CpuNotSupported as exc:
            print(f"slow_local_model skipped: {exc}")
            return None
        try:
            async with httpx.AsyncClient(base_url=llama.root, trust_env=False) as http:
                spots = QUICK_SPOTS if settings.quick else SPOTS[: settings.spots]
                calibration = await calibrate(http, spots[len(spots) // 2])
        finally:
            llama.stop()
        runs = [await run_system(system, model, workdir, settings) for system in systems]
        return report(settings, calibration, model_info, runs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.slow_local_model", description=__doc__
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="2 spots x 2 bursts, no failover system (CI)")
    add("--spots", type=int, default=len(SPOTS), help=f"spots edited (default {len(SPOTS)})")
    add("--bursts", type=int, default=3, help="bursts (and pauses) per spot (default 3)")
    add("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    add("--embed", type=int, default=MODEL["embed"], help="model width (a multiple of 64)")
    add("--layers", type=int, default=MODEL["layers"], help="model layers")
    add("--ffn", type=int, default=MODEL["ffn"], help="model feed-forward width")
    add("--seed", type=int, default=9, help="seed of the key timing and pauses")
    add("--old-rev", help="also run the server as it was at this git revision (system 'old')")
    add("--json", type=Path, help="also write the figures here")
    add("--log-level", default="INFO", help="Crucible's --log-level (its log is in --workdir)")
    add("--workdir", type=Path, help="a new directory to keep the model and the logs in")
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = _parser().parse_args(argv)
    if settings.quick:
        settings.bursts = min(settings.bursts, 2)
    try:
        figures = asyncio.run(run(settings))
    except (ServerExited, OSError, TimeoutError, RuntimeError) as exc:
        print(f"slow local model benchmark broke: {exc}", file=sys.stderr)
        return 2
    if figures is not None and settings.json:
        settings.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
