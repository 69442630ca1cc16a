"""Each window's ``--log-level`` and ``--log-file`` in the shared daemon: its session's
records at its level go to its file (the daemon's own log stays at INFO), nothing of it
reaches another window's file, and no API key reaches any log."""

from __future__ import annotations

import re
from pathlib import Path

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
