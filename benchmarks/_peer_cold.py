"""The cold first suggestion: spawn -> the first suggestion that fits, asked as soon as the
server has answered ``initialize`` (issue 16's "first inline completion within 100 ms of the
first request after initialize", measured from the spawn so that no server hides its load).

One cold start, the same for every server (:func:`cold_start`): spawn; ``initialize`` (the
peers' parameters); ``initialized``; ``didOpen`` of :func:`cold_document` (a Python file as
written up to the cursor, mid-line where the fake model knows the rest of the line; its first
line names the run, so no run finds another's answer in a cache); then the first request at
once, at the end of the document, and the client's rule below until a suggestion fits.

The client's rule (:func:`ask_until_fit`), the same for every server: at most one request in
flight (an editor shows one suggestion at a time); an answer with nothing fitting (an empty
list, an error, a suggestion the text does not continue into) is followed by the next request
:data:`RETRY_MS` later at the same cursor, as an editor asks again at the user's next
keystroke; it stops at the first fitting suggestion or at :data:`DEADLINE_S` after the spawn
(a miss). Crucible is asked ``textDocument/inlineCompletion`` (trigger kind automatic, as on a
keystroke), tabby-agent ``textDocument/completion`` (invoked), as in the peers' typing.

The warm route (:class:`WarmDaemon`): Crucible with ``--shared`` as the *second* window of a
per-user daemon that a first window of the same run started and used (a completion served);
the second window's spawn -> first fitting suggestion is measured the same way. Every run has
its own ``XDG_RUNTIME_DIR`` (a temporary directory: never the user's daemon), and the daemon is
killed when the run ends (``CRUCIBLE_DAEMON_IDLE_S`` is short as well, should the benchmark
itself be killed).

Besides the figure, each sample says where the time went, from the fake's request log:
spawn -> ``initialize`` answered, -> the first request the fake received (tabby-agent's health
check; Crucible asks nothing before its first completion), -> the first generation request
(what came before it is the server's own start), -> the first answer of any kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.fakes.provider import FakeProvider, Fault

from benchmarks._peer_lsp import Message, RawLsp
from benchmarks._peer_servers import Launch
from benchmarks._peer_typists import INLINE, proposals
from benchmarks._snippets import HEADER_MARK, PYTHON

RETRY_MS = 50  # the next request after an answer with nothing fitting
DEADLINE_S = 10.0  # from the spawn: later is a miss
_ANCHOR = "statistics."  # the cursor: right after it, mid-line ("fmean(temperatures)" follows)
_DAEMON_IDLE_S = "30"  # a daemon the benchmark failed to kill exits on its own soon after
_STOP_WAIT_S = 10.0

WARM = "crucible --shared"  # the warm route's name in the figures: not a peer

# The peers' spawn-and-initialize: (the session, ms from the spawn to the answer).
Initialize = Callable[[Launch], Awaitable[tuple[RawLsp, float]]]


@dataclass(frozen=True)
class ColdSample:
    """One cold start; every time in ms from just before the spawn."""

    init_ms: float  # initialize answered
    fit_ms: float | None  # the first fitting suggestion arrived; None: not by the deadline
    requests: int  # completion requests sent, the fitting one included
    first_answer_ms: float | None  # the first answer of any kind
    first_contact_ms: float | None  # the fake's first request of any kind (a health check)
    first_call_ms: float | None  # the fake's first generation request
    calls: int  # generation requests the fake received by the end


def cold_document(tag: str) -> str:
    """The document a cold start opens: :data:`PYTHON` up to just after :data:`_ANCHOR`, under
    a first line naming the run (the fake's model still recognizes the snippet)."""
    cursor = PYTHON.text.index(_ANCHOR) + len(_ANCHOR)
    return f"{PYTHON.comment} {HEADER_MARK} cold start {tag}\n{PYTHON.text[:cursor]}"


def fits(message: Message, text: str) -> bool:
    """Whether an answer proposes text that continues ``text`` (the document as it is)."""
    if "error" in message:
        return False
    return any(p.startswith(text) and len(p) > len(text) for p in proposals(message, text))


def _params(method: str, uri: str, text: str) -> dict[str, Any]:
    lines = text.split("\n")
    # UTF-16 code units; the document's last line is ASCII.
    position = {"line": len(lines) - 1, "character": len(lines[-1])}
    kind = 2 if method == INLINE else 1  # inline: automatic; completion: invoked
    return {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": kind}}


@dataclass(frozen=True)
class Asked:
    fit_at: float | None  # time.perf_counter() of the fitting answer
    requests: int
    first_answer_at: float | None


async def ask_until_fit(
    lsp: RawLsp, method: str, uri: str, text: str, deadline: float, retry_s: float
) -> Asked:
    """The client's rule (module docstring) until ``deadline`` (a ``time.perf_counter()``)."""
    params = _params(method, uri, text)
    requests = 0
    first_answer: float | None = None
    while (remaining := deadline - time.perf_counter()) > 0:
        requests += 1
        try:
            arrived, message = await asyncio.wait_for(lsp.request(method, params), remaining)
        except TimeoutError:
            break
        first_answer = first_answer or arrived
        if fits(message, text):
            return Asked(arrived, requests, first_answer)
        lsp.check_alive()
        await asyncio.sleep(retry_s)
    return Asked(None, requests, first_answer)


async def cold_start(
    launch: Launch,
    method: str,
    fake: FakeProvider,
    tag: str,
    initialize: Initialize,
    latency_ms: int,
) -> tuple[RawLsp, ColdSample]:
    """One cold start of ``launch`` (module docstring); the session is left open (the caller
    stops it: the warm route keeps its first window). ``initialize(launch)`` is the peers'
    spawn-and-initialize, returning (session, ms to the answer)."""
    fake.reset()
    fake.inject(Fault(latency_ms=latency_ms))
    lsp, init_ms = await initialize(launch)
    try:
        text = cold_document(tag)
        uri = (launch.cwd / f"cold-{tag}.py").as_uri()
        document = {"uri": uri, "languageId": PYTHON.language_id, "version": 1, "text": text}
        lsp.notify("textDocument/didOpen", {"textDocument": document})
        asked = await ask_until_fit(
            lsp, method, uri, text, lsp.started + DEADLINE_S, RETRY_MS / 1000
        )
    except BaseException:
        await lsp.stop()
        raise
    # The fake stamps time.monotonic(), the client time.perf_counter(): one offset between them.
    offset = time.monotonic() - time.perf_counter()
    spawned = lsp.started + offset
    seen = list(fake.requests)
    calls = fake.generation_requests()

    def since_spawn(at: float | None) -> float | None:
        return None if at is None else (at - lsp.started) * 1000

    return lsp, ColdSample(
        init_ms=init_ms,
        fit_ms=since_spawn(asked.fit_at),
        requests=asked.requests,
        first_answer_ms=since_spawn(asked.first_answer_at),
        first_contact_ms=(seen[0].received_at - spawned) * 1000 if seen else None,
        first_call_ms=(calls[0].received_at - spawned) * 1000 if calls else None,
        calls=len(calls),
    )


class WarmDaemon:
    """The warm route's run: a per-user daemon in a runtime directory of its own, started by a
    first window (which is served once, then stays open), and the second window measured."""

    def __init__(self, launch: Launch) -> None:
        # A short directory: a Unix socket's path has ~100 bytes.
        self.runtime = Path(tempfile.mkdtemp(prefix="crw", dir="/tmp"))
        env = {
            **launch.env,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_STATE_HOME": str(launch.cwd.parent / "state"),
            "CRUCIBLE_DAEMON_IDLE_S": _DAEMON_IDLE_S,
        }
        self.launch = replace(launch, argv=[*launch.argv, "--shared"], env=env)
        self._windows: list[RawLsp] = []

    def window(self, name: str) -> Launch:
        """The launch of one window: its own log file (a session logs to its window's)."""
        argv = list(self.launch.argv)
        if "--log-file" in argv:
            log = Path(argv[argv.index("--log-file") + 1])
            argv[argv.index("--log-file") + 1] = str(log.with_name(f"{name}.log"))
        return replace(self.launch, argv=argv)

    def keep(self, lsp: RawLsp) -> None:
        self._windows.append(lsp)

    def daemon_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.runtime / "crucible" / "daemon.pid").read_text())
        return None

    async def close(self) -> None:
        """Stop the windows, kill the daemon (by its pid file) and remove the directory."""
        for lsp in reversed(self._windows):
            await lsp.stop()
        pid = self.daemon_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + _STOP_WAIT_S
            while time.monotonic() < deadline:
                if not _alive(pid):
                    break
                await asyncio.sleep(0.02)
        shutil.rmtree(self.runtime, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def warm_start(
    launch: Launch, fake: FakeProvider, tag: str, initialize: Initialize, latency_ms: int
) -> ColdSample:
    """The warm route once: a first window starts the daemon and is served; the second
    window's cold start is the sample. Everything it started is stopped before it returns."""
    daemon = WarmDaemon(launch)
    try:
        first, _ = await cold_start(
            daemon.window("first"), INLINE, fake, f"{tag}-first", initialize, latency_ms
        )
        daemon.keep(first)
        second, sample = await cold_start(
            daemon.window("second"), INLINE, fake, tag, initialize, latency_ms
        )
        daemon.keep(second)
    finally:
        await daemon.close()
    return sample
