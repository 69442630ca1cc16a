"""The shared daemon over a short day of windows: it outlives them, so nothing of theirs may
stay behind in it.

Real processes, as the other ``test_shared_*`` files start them: thin clients
(``crucible-lsp --stdio --shared``), the one daemon they start in the test's private runtime
directory, and the loopback fake provider. Windows open, type, get suggestions, ask for code
actions (one resolved: a provider call) and a hover on a diagnostic, and close, round after
round: several windows at once, overlapping, one per round configured with its own ``[cache]``
and provider (a cache and a provider of its own, built and closed with it), one with
``--log-file`` (a file the daemon opens for the session), and one killed instead of closed.

The daemon's own counts are read through a window of its own (``crucible/status``: its loop's
tasks by kind, its threads and open descriptors, ``shared``'s sessions, caches, providers and
``ended_in_memory`` (the Apps of sessions that have left, still held), ``memory.daemon.
sessions``), opened after the first window has closed (the baseline: the
server imported, the shared cache and provider built, the executor's first threads started)
and again after the last; and from outside, /proc/<daemon>/fd and /proc/<daemon>/task while
no window is open at all. A leak of one task, thread, descriptor or session's lease per window
is a dozen and more here, past the allowances (``benchmarks._endurance_figures.TOLERANCE``,
which says why each).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from benchmarks._endurance_figures import TOLERANCE
from lsprotocol import types
from tests.e2e.conftest import (
    Editor,
    end_of,
    inline,
    open_document,
    provider_options,
    server_status,
)
from tests.e2e.test_shared_daemon import SHARED, Place, place, window
from tests.fakes.provider import FakeProvider

__all__ = ["place"]  # the fixture, used by name

pytestmark = pytest.mark.e2e

TEXT = "import math\n\n\ndef area(radius):\n    return math.pi * radus ** 2\n"
DIAGNOSTIC = types.Diagnostic(
    range=types.Range(types.Position(4, 21), types.Position(4, 26)),
    message="undefined name 'radus'",
    severity=types.DiagnosticSeverity.Error,
    source="Pyflakes",
    code="F821",
)
ROUNDS = 5  # after the first: 5 x 3 windows, one of them killed in every other round
PER_ROUND = 3


def options(fake: FakeProvider, *, own_cache: bool = False) -> dict[str, Any]:
    found = provider_options(fake)
    found["hover"] = {"prefetch": "off"}
    if own_cache:  # other [cache] settings and provider: its own, closed by its last holder
        found["cache"] = {**found["cache"], "memory_mb": 17}
        found["providers"] = [{**found["providers"][0], "name": "fake-own"}]
    return found


async def a_window_at_work(
    place: Place,
    fake: FakeProvider,
    name: str,
    *,
    own_cache: bool = False,
    kill: bool = False,
    log_file: bool = False,
) -> None:
    """One editor window's life: open, type, suggestions, code actions, hover, close."""
    # With --log-file, the daemon opens the window's file for its session, and must close it.
    command = [*SHARED, "--log-file", str(place.home / f"{name}.log")] if log_file else None
    settings = options(fake, own_cache=own_cache)
    # The editor's process id, as editors send it: the session watches it (a pidfd on the
    # daemon's loop) until it ends, and must stop watching when it ends first.
    editor = os.getpid()
    async with window(
        place, settings, command=command, shutdown=not kill, process_id=editor
    ) as client:
        uri = open_document(client, TEXT, name=f"{name}.py")
        editor = Editor(client, uri, TEXT)
        for chars in ("def ", "perimeter(r", "):\n    "):
            editor.type(chars)
            await asyncio.wait_for(editor.request(), 10)
        await inline(client, uri, end_of(editor.text))
        actions = await asyncio.wait_for(
            client.text_document_code_action_async(
                types.CodeActionParams(
                    types.TextDocumentIdentifier(uri),
                    DIAGNOSTIC.range,
                    types.CodeActionContext(diagnostics=[DIAGNOSTIC]),
                )
            ),
            10,
        )
        listed = [a for a in actions or [] if isinstance(a, types.CodeAction)]
        assert listed, "no code action listed"
        await asyncio.wait_for(client.code_action_resolve_async(listed[0]), 15)
        await asyncio.wait_for(
            client.text_document_hover_async(
                types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(4, 23))
            ),
            10,
        )
        if kill:  # the editor's server killed: no shutdown, no exit, no didClose
            client._server.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await client._server.wait()  # type: ignore[union-attr]
            return
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))
        )


def from_outside(pid: int) -> dict[str, Any]:
    """The daemon's descriptors and threads, by name, read from /proc."""
    threads: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        threads[name] = threads.get(name, 0) + 1
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


async def the_daemon_alone(place: Place, fake: FakeProvider) -> dict[str, Any]:
    """The daemon's counts with no window open (from outside), then through one window that
    is its only session (status), that window closed again."""
    pid = place.daemon_pid()
    seen: dict[str, Any] = {}
    async with window(place, options(fake)) as observer:
        status = await server_status(observer)
        for _ in range(200):  # a killed window's session ends when the daemon notices
            if status["shared"]["sessions"] == 1:
                break
            await asyncio.sleep(0.05)
            status = await server_status(observer)
        seen["status"] = status
    await asyncio.sleep(0.5)  # the observer's session ends in the daemon
    seen["outside"] = from_outside(pid)
    return seen


def counts(seen: dict[str, Any]) -> dict[str, int]:
    status = seen["status"]
    memory, shared = status["memory"], status["shared"]
    return {
        "sessions": shared["sessions"],
        "ended sessions in memory": shared["ended_in_memory"],
        "budget sessions": memory["daemon"]["sessions"],
        "caches": shared["caches"],
        "providers": shared["providers"],
        "tasks": memory["tasks"],
        "threads": memory["threads"],
        "open_files": memory["open_files"],
        "fds alone": seen["outside"]["fds"],
        "threads alone": sum(seen["outside"]["threads"].values()),
    }


@pytest.mark.timeout(90)
async def test_a_day_of_windows_leaves_nothing_behind_in_the_daemon(
    place: Place, fake: FakeProvider
) -> None:
    await a_window_at_work(place, fake, "first")
    pid = place.daemon_pid()
    baseline = await the_daemon_alone(place, fake)

    for round_ in range(ROUNDS):
        # Windows overlapping: started a moment apart, working at the same time.
        windows = []
        for index in range(PER_ROUND):
            windows.append(
                asyncio.create_task(
                    a_window_at_work(
                        place,
                        fake,
                        f"r{round_}w{index}",
                        own_cache=index == 1,
                        log_file=index == 0,
                        kill=index == 2 and round_ % 2 == 0,
                    )
                )
            )
            await asyncio.sleep(0.1)
        await asyncio.gather(*windows)

    after = await the_daemon_alone(place, fake)
    assert place.daemon_pid() == pid, "the daemon was replaced during the day"
    assert [p.pid for p in place.daemons()] == [pid]

    before, now = counts(baseline), counts(after)
    report = f"after the first window {before}, after the day {now}"
    # Session state: exactly the observer's, as after the first window.
    # No App of a window closed or killed is still held (pygls's lru_cache held every one).
    assert now["ended sessions in memory"] == 0, report
    for name in ("sessions", "budget sessions", "caches", "providers"):
        assert now[name] == before[name], f"{name} grew: {report}"
    kinds = (baseline["status"]["memory"]["task_kinds"], after["status"]["memory"]["task_kinds"])
    assert now["tasks"] <= before["tasks"] + TOLERANCE["tasks"], f"tasks grew: {kinds}"
    threads = (baseline["outside"]["threads"], after["outside"]["threads"])
    for name in ("threads", "threads alone"):
        assert now[name] <= before[name] + TOLERANCE["threads"], f"threads grew: {threads}"
    for name in ("open_files", "fds alone"):
        assert now[name] <= before[name] + TOLERANCE["open_files"], f"{name} grew: {report}"
