"""Each window's ``--log-level`` and ``--log-file`` in the shared daemon: its session's
records at its level go to its file (the daemon's own log stays at INFO), nothing of it
reaches another window's file, and no API key reaches any log."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient
from tests.e2e.conftest import provider_options, server_status
from tests.e2e.test_shared_daemon import SHARED, TEXT, Place, place, suggestion, window
from tests.fakes.provider import FakeProvider

__all__ = ["place"]  # the fixture, used by name

KEY = "sk-very-secret-4c1d"
OTHER_KEY = "sk-other-secret-9e2f"
STARTED = "INFO crucible.shared.daemon: session started"


def _levels(text: str) -> set[str]:
    return set(re.findall(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR) ", text, re.MULTILINE))


async def test_each_window_logs_at_its_level_to_its_file(place: Place, fake: FakeProvider) -> None:
    verbose_log, quiet_log = place.home / "verbose.log", place.home / "logs" / "quiet.log"
    options = provider_options(fake, "openai")
    options["providers"][0]["api_key_env"] = "MY_LLM_CREDENTIAL"
    verbose = [*SHARED, "--log-level", "DEBUG", "--log-file", str(verbose_log)]
    quiet = [*SHARED, "--log-file", str(quiet_log)]
    async with (
        window(place, options, command=verbose, env={"MY_LLM_CREDENTIAL": KEY}) as first,
        window(place, options, command=quiet, env={"MY_LLM_CREDENTIAL": OTHER_KEY}) as second,
    ):
        assert (await server_status(second))["shared"]["sessions"] == 2
        await suggestion(first, TEXT, name="one.py")
        await suggestion(second, TEXT, name="two.py")
    daemon_log = Path(place.env["XDG_STATE_HOME"]) / "crucible" / "daemon.log"
    verbose_text, quiet_text = verbose_log.read_text(), quiet_log.read_text()
    daemon_text = daemon_log.read_text()

    # Each window's file has its own session, once, and no other.
    assert verbose_text.count(STARTED) == quiet_text.count(STARTED) == 1
    # The DEBUG window's file has its session's DEBUG records, the quiet libraries' too (pygls
    # logs each message it sends), as a server of its own at DEBUG would write them.
    assert "DEBUG" in _levels(verbose_text)
    assert "DEBUG crucible.completion.service" in verbose_text
    assert "pygls.protocol.json_rpc: Sending data" in verbose_text
    # The INFO window's file: INFO and above, no pygls message log.
    assert _levels(quiet_text) == {"INFO"}
    assert "Sending data" not in quiet_text
    # The daemon's own log: both sessions at INFO, never DEBUG, no pygls message log.
    assert daemon_text.count(STARTED) == 2
    assert "DEBUG" not in _levels(daemon_text)
    assert "Sending data" not in daemon_text
    for text in (verbose_text, quiet_text, daemon_text):
        assert KEY not in text and OTHER_KEY not in text
    # The keys did reach the provider: they were there to leak.
    keys = {r.headers.get("authorization") for r in fake.generation_requests()}
    assert keys == {f"Bearer {KEY}", f"Bearer {OTHER_KEY}"}


def _stderr_to(path: Path) -> list[str]:
    """A thin client whose stderr is ``path`` (pytest-lsp would forward it to the test's)."""
    return ["sh", "-c", f'exec "$@" 2>"{path}"', "sh", *SHARED]


# A thin client whose stderr is a pipe that nobody reads: it holds the read end and never
# reads it, as an editor that ignores its server's stderr would.
_UNREAD_STDERR = [
    sys.executable,
    "-c",
    "import os, sys; r, w = os.pipe(); os.dup2(w, 2); os.set_inheritable(r, True);"
    " os.execv(sys.executable, [sys.executable, '-m', 'crucible', '--stdio', '--shared'])",
]


def _typo(client: LanguageClient, key: str) -> None:
    """A configuration change with an unknown key: one WARNING naming it."""
    settings = {"crucible": {"completion": {key: 3}}}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))


async def test_a_windows_warnings_reach_its_own_stderr_only(
    place: Place, fake: FakeProvider
) -> None:
    first_err, second_err = place.home / "first.err", place.home / "second.err"
    typo_options, options = provider_options(fake, "openai"), provider_options(fake, "openai")
    for each in (typo_options, options):
        each["providers"][0]["api_key_env"] = "MY_LLM_CREDENTIAL"
    typo_options["completion"]["debounce_mz"] = 3  # a typo: a WARNING naming the key
    async with (
        window(
            place,
            typo_options,
            command=_stderr_to(first_err),
            env={"MY_LLM_CREDENTIAL": KEY},
        ) as first,
        window(
            place,
            options,
            command=_stderr_to(second_err),
            env={"MY_LLM_CREDENTIAL": OTHER_KEY},
        ) as second,
    ):
        assert (await server_status(second))["shared"]["sessions"] == 2
        assert await suggestion(first, TEXT) == "return a + b"
        assert await suggestion(second, TEXT, name="two.py") == "return a + b"
    first_text, second_text = first_err.read_text(), second_err.read_text()
    # As a plain server writes it: "<time> WARNING <logger>: <message>", WARNING and above.
    assert re.search(r"^\S+ \S+ WARNING crucible\.\S+: .*completion\.debounce_mz", first_text, re.M)
    assert " INFO " not in first_text
    assert second_text == ""  # the other window's warning, and the daemon's INFO: not here
    assert KEY not in first_text and OTHER_KEY not in first_text


async def test_a_window_whose_stderr_is_never_read_stalls_no_one(
    place: Place, fake: FakeProvider
) -> None:
    """Far more warnings than the pipes between the daemon and an unread stderr hold: the
    daemon drops what does not fit, and both windows are still answered."""
    async with (
        window(place, provider_options(fake), command=_UNREAD_STDERR) as unread,
        window(place, provider_options(fake)) as other,
    ):
        assert (await server_status(other))["shared"]["sessions"] == 2
        for i in range(200):  # ~800 KB of warnings: every pipe on the way fills
            _typo(unread, f"typo_{i}_" + "x" * 4000)
        try:
            answered = await asyncio.wait_for(suggestion(other, TEXT, name="two.py"), 30)
            assert answered == "return a + b"
            assert await asyncio.wait_for(suggestion(unread, TEXT), 30) == "return a + b"
        except TimeoutError:
            place.kill_all()  # a stalled daemon would hold both windows' ends too
            raise
    # The warnings were logged (the daemon's log has them all): there were enough to fill.
    daemon_log = Path(place.env["XDG_STATE_HOME"]) / "crucible" / "daemon.log"
    assert (
        daemon_log.read_text().count(
            "WARNING crucible.lsp.handlers.lifecycle: configuration: completion.typo_"
        )
        == 200
    )
