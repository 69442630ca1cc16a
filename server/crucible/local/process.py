"""ManagedLlamaServer: the one llama.cpp server process a ``local`` provider runs, owned here.

Its life:

- **lazy start**: nothing runs until ``ensure()`` is first awaited (the first request), so an
  editor's start-up never waits for a model to load. The start is a task of its own, shielded:
  a request that gives up (superseded, cancelled, past its deadline) does not abort a start
  the next request will want.
- **launch**: ``python -m crucible.local.child`` (``child.py``) on 127.0.0.1, on a port the
  kernel picks, with a fresh random API key per launch (``secrets``), so another local user
  who finds the port cannot use the server; the key reaches the child in its environment,
  never in its arguments. The child prints its root URL once the model is loaded; the start
  then waits for ``ready(launch)`` (the provider's ``/health`` probe) to say yes.
- **parent death**: on Linux the child gets PR_SET_PDEATHSIG = SIGKILL before exec
  (``lifeline.py``), so it dies with Crucible even when Crucible is killed with
  SIGKILL; the child also watches its parent pid itself (``child.py``).
- **idle stop**: after ``idle_stop_s`` seconds without a request in flight it is stopped
  (SIGTERM, then SIGKILL after 5 s), freeing its memory; the next request starts it again.
- **crash restart with backoff**: when the process exits unasked, the next request starts it
  again, at once after the first crash, then only after 1, 2, 4 ... 60 s (``restart_delay``);
  a request meanwhile fails fast (the pool answers from elsewhere or empty). A launch that ran
  for ``STABLE_S`` seconds resets the count.
- **stop**: ``aclose()`` (shutdown, exit, a configuration change replacing the provider).

Its stderr goes to Crucible's log (logger ``crucible.local.llama``, DEBUG: llama.cpp is
chatty), and its last lines are quoted at WARNING when it crashes or fails to start.

Errors: ``LocalServerError`` (a ``CrucibleError``) when the server cannot be had now: the
extra is missing, the model file is missing, the start failed or timed out, a restart is
waiting out its backoff. ``providers/local.py`` maps it to ``ProviderUnavailable``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crucible
from crucible.errors import CrucibleError
from crucible.local.lifeline import parent_death_signal, rss_mb, terminate
from crucible.local.sizing import ServerSize

log = logging.getLogger(__name__)
llama_log = logging.getLogger("crucible.local.llama")

STABLE_S = 60.0  # a launch that lived this long was healthy: the crash count starts over
_MAX_DELAY_S = 60.0
_TAIL_LINES = 30
_SIGILL_HINT = (
    "the llama.cpp build (xllamacpp wheel) uses CPU instructions this machine lacks"
    " (it needs x86-64 with AVX2, FMA and F16C)"
)
_NO_EXTRA = "the local kind needs the llama.cpp server: pip install 'crucible-lsp[local]'"


class LocalServerError(CrucibleError):
    """The managed server cannot serve now; the message says why, in words to act on."""


@dataclass(frozen=True, slots=True)
class Launch:
    """One running instance: where it listens and the key it wants."""

    root: str  # http://127.0.0.1:PORT
    api_key: str
    pid: int
    number: int  # 1 for the first launch, one more per start since

    @property
    def port(self) -> int:
        return int(self.root.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    model_path: Path
    size: ServerSize
    idle_stop_s: float  # 0: never
    start_timeout_s: float = 120.0
    # What to do when the model file is missing (e.g. "run `crucible-lsp models pull X`").
    missing_hint: str = ""


def restart_delay(crashes: int) -> float:
    """Seconds to wait before starting again after ``crashes`` crashes in a row: none after
    the first (one crash may be a fluke), then 1, 2, 4 ... up to 60."""
    if crashes <= 1:
        return 0.0
    return float(min(_MAX_DELAY_S, 2 ** (crashes - 2)))


def extra_installed() -> bool:
    """Whether the ``local`` extra (xllamacpp) is installed, without importing it."""
    return importlib.util.find_spec("xllamacpp") is not None


class ManagedLlamaServer:
    """Owns one llama.cpp server process for provider ``name`` (module docstring)."""

    def __init__(
        self,
        name: str,
        spec: LaunchSpec,
        ready: Callable[[Launch], Awaitable[bool]],
        *,
        clock: Callable[[], float] = time.monotonic,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.spec = spec
        self._ready = ready
        self._clock = clock
        self._python = python
        self._process: asyncio.subprocess.Process | None = None
        self._launch: Launch | None = None
        self._launched_at = 0.0
        self._starting: asyncio.Task[Launch] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # stderr reader, exit watch, idle watch
        self._idle_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._last_used = clock()
        self._crashes = 0  # in a row
        self._next_start_at = 0.0
        self._closed = False
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        # For crucible/status and doctor.
        self.starts = 0
        self.crashes_total = 0
        self.stops: collections.Counter[str] = collections.Counter()
        self.last_start_s: float | None = None
        self.last_error = ""

    # -- use --------------------------------------------------------------------------------

    async def ensure(self) -> Launch:
        """The running server, started (or restarted) first if need be."""
        if self._closed:
            raise LocalServerError("the local server is shut down")
        if self._launch is not None:
            return self._launch
        if self._starting is None:
            wait = self._next_start_at - self._clock()
            if wait > 0:
                raise LocalServerError(
                    f"the local llama.cpp server crashed {self._crashes} times in a row;"
                    f" starting it again in {wait:.0f} s"
                )
            self._starting = asyncio.get_running_loop().create_task(
                self._start(), name=f"start local server {self.name}"
            )
            self._starting.add_done_callback(self._started)
        return await asyncio.shield(self._starting)

    def hold(self) -> None:
        """A request is using the server: no idle stop until ``release``."""
        self._in_flight += 1
        self._last_used = self._clock()

    def release(self) -> None:
        self._in_flight -= 1
        self._last_used = self._clock()

    @property
    def state(self) -> str:
        if self._launch is not None:
            return "running"
        if self._starting is not None:
            return "starting"
        if self._next_start_at > self._clock():
            return "backoff"
        return "failed" if self.last_error else "stopped"

    def snapshot(self) -> dict[str, Any]:
        """The server's health and timings (``crucible/status``, ``doctor``)."""
        launch = self._launch
        return {
            "state": self.state,
            "model_path": str(self.spec.model_path),
            "threads": self.spec.size.threads,
            "ctx_size": self.spec.size.ctx_size,
            "parallel": self.spec.size.parallel,
            "idle_stop_s": self.spec.idle_stop_s,
            "pid": launch.pid if launch else None,
            "port": launch.port if launch else None,
            "starts": self.starts,
            "crashes": self.crashes_total,
            "stops": dict(self.stops),
            "last_start_s": self.last_start_s,
            "uptime_s": round(self._clock() - self._launched_at, 1) if launch else None,
            "rss_mb": round(mb, 1) if launch and (mb := rss_mb(launch.pid)) else None,
            "in_flight": self._in_flight,
            "last_error": self.last_error,
        }

    async def stop(self, reason: str) -> None:
        """Stop the server now (SIGTERM, SIGKILL after a grace period); it may start again.
        ``reason`` (``idle``, ``shutdown``) is counted in ``stops``."""
        process, self._process, self._launch = self._process, None, None
        idle, self._idle_task = self._idle_task, None
        if idle is not None and idle is not asyncio.current_task():
            idle.cancel()
        if process is None:
            return
        self.stops[reason] += 1
        await terminate(process)
        log.info(
            "%s: stopped the local llama.cpp server (pid %d): %s", self.name, process.pid, reason
        )

    async def aclose(self) -> None:
        self._closed = True
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        await self.stop("shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- start ------------------------------------------------------------------------------

    def _started(self, task: asyncio.Task[Launch]) -> None:
        if self._starting is task:
            self._starting = None
        if not task.cancelled() and task.exception() is None:
            return
        # A failed start counts as a crash: the next attempt waits out the backoff.
        self._crashes += 1
        self._next_start_at = self._clock() + restart_delay(self._crashes)

    async def _start(self) -> Launch:
        model = self.spec.model_path
        if not extra_installed():
            raise self._failed(_NO_EXTRA)
        if not model.is_file():
            hint = f"; {self.spec.missing_hint}" if self.spec.missing_hint else ""
            raise self._failed(f"model file {model}: no such file{hint}")
        key = secrets.token_urlsafe(32)
        began = self._clock()
        process = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "crucible.local.child",
            str(model),
            f"--parallel={self.spec.size.parallel}",
            f"--ctx={self.spec.size.ctx_size}",
            f"--threads={self.spec.size.threads}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._child_env(key),
            preexec_fn=parent_death_signal(),
        )
        self._tail.clear()
        self._spawn(self._read_log(process), "log")
        try:
            async with asyncio.timeout(self.spec.start_timeout_s):
                launch = await self._wait_until_ready(process, key)
        except BaseException as exc:
            await terminate(process)
            if isinstance(exc, TimeoutError):
                raise self._failed(
                    f"the server was not ready within {self.spec.start_timeout_s:.0f} s"
                ) from None
            raise
        self._process, self._launch, self._launched_at = process, launch, self._clock()
        self.starts += 1
        self.last_start_s = round(self._launched_at - began, 3)
        self.last_error = ""
        self._spawn(self._watch_exit(process), "exit watch")
        if self.spec.idle_stop_s > 0:
            self._idle_task = self._spawn(self._watch_idle(), "idle watch")
        log.info(
            "%s: started the local llama.cpp server in %.2f s (pid %d, %s, threads %d, ctx %d)",
            self.name,
            self.last_start_s,
            launch.pid,
            launch.root,
            self.spec.size.threads,
            self.spec.size.ctx_size,
        )
        return launch

    async def _wait_until_ready(self, process: asyncio.subprocess.Process, key: str) -> Launch:
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            code = await process.wait()
            raise self._failed(self._exit_words(code, "before it listened"))
        launch = Launch(line.decode().strip().rstrip("/"), key, process.pid, self.starts + 1)
        while not await self._ready(launch):
            if process.returncode is not None:
                raise self._failed(self._exit_words(process.returncode, "before it was ready"))
            await asyncio.sleep(0.05)
        return launch

    def _child_env(self, key: str) -> dict[str, str]:
        # The child imports crucible.local.child from the same place this process did, even
        # when it is not installed (a checkout on PYTHONPATH, an editable install elsewhere).
        package_root = str(Path(crucible.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "CRUCIBLE_LOCAL_API_KEY": key,
            "CRUCIBLE_LOCAL_PARENT": str(os.getpid()),
        }

    def _failed(self, message: str) -> LocalServerError:
        self.last_error = message
        tail = "\n".join(self._tail)
        log.warning("%s: %s%s", self.name, message, f"; its last lines:\n{tail}" if tail else "")
        return LocalServerError(message)

    def _exit_words(self, code: int, when: str) -> str:
        if code == -signal.SIGILL:
            return f"the llama.cpp server died {when}: {_SIGILL_HINT}"
        if code < 0:
            return f"the llama.cpp server was killed by signal {-code} {when}"
        return f"the llama.cpp server exited with code {code} {when} (see the log)"

    # -- watching ---------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None], what: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        task.set_name(f"local server {self.name}: {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self._tail.append(text)
            llama_log.debug("%s", text)

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._process is not process:
            return  # stopped on purpose
        self._process, self._launch = None, None
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        lived = self._clock() - self._launched_at
        self._crashes = 1 if lived >= STABLE_S else self._crashes + 1
        self.crashes_total += 1
        delay = restart_delay(self._crashes)
        self._next_start_at = self._clock() + delay
        when = f"in {delay:.0f} s" if delay else "at once"
        self._failed(
            self._exit_words(code, f"after {lived:.0f} s")
            + f"; it starts again on the next request ({when})"
        )

    async def _watch_idle(self) -> None:
        idle_s = self.spec.idle_stop_s
        while True:
            remaining = self._last_used + idle_s - self._clock()
            if remaining <= 0 and self._in_flight == 0:
                await self.stop("idle")
                return
            await asyncio.sleep(max(remaining, min(idle_s, 1.0)))
