"""The OpenTelemetry export end to end: the real server process, completions against the
loopback fake provider, and a loopback OTLP/HTTP collector (``tests/fakes/otlp_collector.py``)
that decodes what arrives. What a platform team would check: the figures match
``crucible/status``, the service is identified, no code leaves the editor, nothing at all is
sent (or imported) unless configured, and a collector in trouble never costs a completion.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_lsp import LanguageClient
from tests.e2e.conftest import (
    Session,
    end_of,
    inline,
    open_document,
    provider_options,
    server_status,
    texts,
)
from tests.fakes.otlp_collector import OtlpCollector
from tests.fakes.provider import FakeProvider

import crucible

pytestmark = pytest.mark.e2e

MARKER = "zq_marker_never_exported_7f3a"
TEXT = f"def {MARKER}(a, b):\n    "
INTERVAL_S = 0.2
NO_OTEL_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_SDK_DISABLED": ""}


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as running:
        yield running


def exporting_to(fake: FakeProvider, endpoint: str, **telemetry: Any) -> dict[str, Any]:
    return {
        **provider_options(fake),
        "telemetry": {"otlp_endpoint": endpoint, "export_interval_s": INTERVAL_S, **telemetry},
    }


async def until(check: Callable[[], Any], seconds: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def export_state(client: LanguageClient, wanted: str) -> dict[str, Any]:
    """``telemetry_export`` of status once its state is ``wanted`` (or after 10 s)."""
    for _ in range(200):
        export: dict[str, Any] = (await server_status(client))["telemetry_export"]
        if export["state"] == wanted:
            break
        await asyncio.sleep(0.05)
    return export


async def complete_three_times(client: LanguageClient) -> list[list[str]]:
    """Two spots, the first asked twice: two provider calls and one answer from cache."""
    uri = open_document(client, TEXT, name=f"{MARKER}.py")
    answers = [texts(await inline(client, uri, end_of(TEXT)))]
    answers.append(texts(await inline(client, uri, end_of(TEXT))))
    other = TEXT + "return a\n\ndef g():\n    "
    client.text_document_did_change(_whole(uri, other, 2))
    answers.append(texts(await inline(client, uri, end_of(other))))
    return answers


def _whole(uri: str, text: str, version: int) -> Any:
    from lsprotocol import types

    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
    )


async def test_the_status_figures_arrive_with_the_service_identified_and_no_code(
    fake: FakeProvider, collector: OtlpCollector, lsp_session: Session, tmp_path: Path
) -> None:
    async with lsp_session(exporting_to(fake, collector.endpoint), env=NO_OTEL_ENV) as client:
        answers = await complete_three_times(client)
        status = await server_status(client)
        served = status["requests"]["served"]
        # The next export after these completions carries the same counts as status.
        assert await until(
            lambda: collector.latest("crucible.requests", outcome="served") == served
        )
        assert await until(
            lambda: (
                collector.latest("crucible.cache.hits", level="type_through")
                == status["cache"]["type_through_hits"]
            )
        )
        after = await server_status(client)

    assert answers == [["return a + b"]] * 3
    # The repeat was served by type-through (the cache's first level for a shown suggestion).
    assert (served, status["cache"]["type_through_hits"]) == (3, 1)
    calls = status["upstream"]["calls"]
    assert calls == 2
    assert collector.latest("crucible.upstream.calls") == calls
    assert collector.latest("crucible.provider.calls", provider="fake-ollama") == calls
    assert collector.latest("crucible.provider.errors", provider="fake-ollama") == 0
    assert collector.latest("crucible.requests.marks", mark="type_through") == 1
    assert collector.latest("crucible.cache.hits", level="l1") == 0
    assert collector.latest("crucible.cache.misses") == status["cache"]["misses"] == 2
    assert collector.latest("crucible.cache.entries", level="l1") == 2
    assert collector.latest("crucible.provider.health", provider="fake-ollama", health="ready") == 1
    assert collector.latest("crucible.stage.duration", stage="total", quantile="p50") > 0
    assert collector.latest("crucible.memory.rss") > 10 * 1024 * 1024
    assert collector.latest("crucible.memory.pressure", level="normal") == 1
    [resource, *_] = collector.resources()
    assert resource["service.name"] == "crucible-lsp"
    assert resource["service.version"] == crucible.__version__
    assert len(resource["service.instance.id"]) == 36  # a UUID, one per window's server
    # Nothing of the document, its name or the workspace's path left the editor.
    sent = b"".join(collector.bodies)
    for never in (MARKER, "workspace", str(tmp_path), "file://", "return a"):
        assert never.encode() not in sent, never
    export = after["telemetry_export"]
    host = collector.endpoint.removeprefix("http://")
    assert (export["endpoint_host"], export["state"], export["failures"]) == (host, "exporting", 0)
    assert export["exported"] >= 1


async def test_unconfigured_nothing_is_sent(
    fake: FakeProvider, collector: OtlpCollector, lsp_session: Session
) -> None:
    async with lsp_session(provider_options(fake), env=NO_OTEL_ENV) as client:
        answers = await complete_three_times(client)
        await asyncio.sleep(1.0)  # five export intervals, had one been configured
        status = await server_status(client)

    assert answers == [["return a + b"]] * 3
    assert status["telemetry_export"] == {"state": "off"}
    assert collector.posts == 0


def test_unconfigured_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    """The App a server builds, configured and started as an editor's is, with no endpoint:
    not one opentelemetry module in the process (start-up cost unchanged)."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from crucible.app import App, build_server

        async def main():
            app = App()
            build_server(app)
            app.initialize(None, {"telemetry": {"export_interval_s": 0.1}})
            await app.start()
            await asyncio.sleep(0.3)
            state = app.status()["telemetry_export"]["state"]
            await app.aclose()
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            print(state, loaded)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    for name in NO_OTEL_ENV:
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["off", "[]"]


async def test_the_standard_environment_variable_names_the_collector(
    fake: FakeProvider, collector: OtlpCollector, lsp_session: Session
) -> None:
    options = {**provider_options(fake), "telemetry": {"export_interval_s": INTERVAL_S}}
    env = {
        **NO_OTEL_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "TEAM_OTLP": "x-team-token=abc123",
    }
    options["telemetry"]["otlp_headers_env"] = "TEAM_OTLP"
    async with lsp_session(options, env=env) as client:
        await complete_three_times(client)
        assert await until(lambda: collector.latest("crucible.requests", outcome="served") == 3)

    assert collector.headers[0]["x-team-token"] == "abc123"


async def test_a_collector_down_or_refusing_never_costs_a_completion(
    fake: FakeProvider, collector: OtlpCollector, lsp_session: Session
) -> None:
    collector.status = 503
    async with lsp_session(exporting_to(fake, collector.endpoint), env=NO_OTEL_ENV) as client:
        answers = await complete_three_times(client)
        failing = await export_state(client, "failing")
        for _ in range(200):  # a streak of at least two failed exports (each may retry once)
            if failing["failures"] >= 2:
                break
            await asyncio.sleep(0.05)
            failing = (await server_status(client))["telemetry_export"]
        collector.status = 200  # back: the next export is accepted
        back = await export_state(client, "exporting")
        assert collector.latest("crucible.requests", outcome="served") == 3
        warnings = [m.message for m in client.log_messages if "telemetry: export to" in m.message]

    assert answers == [["return a + b"]] * 3
    assert failing["state"] == "failing"
    assert failing["failures"] >= 2
    assert failing["last_error"] == "HTTP 503 from the collector"
    assert back["state"] == "exporting"
    # Said once per failing streak (then "works again"), not once per failed export.
    assert len([w for w in warnings if "failed" in w]) == 1, warnings


async def test_no_collector_listening_never_costs_a_completion(
    fake: FakeProvider, lsp_session: Session
) -> None:
    with OtlpCollector() as closed:
        endpoint = closed.endpoint  # a port nobody listens on once it is closed
    async with lsp_session(exporting_to(fake, endpoint), env=NO_OTEL_ENV) as client:
        answers = await complete_three_times(client)
        export = await export_state(client, "failing")
        status = await server_status(client)

    assert answers == [["return a + b"]] * 3
    assert export["state"] == "failing"
    assert export["last_error"]  # connection refused, in the exporter's words
    assert status["requests"]["served"] == 3


async def test_a_collector_that_does_not_answer_never_costs_a_completion(
    fake: FakeProvider, collector: OtlpCollector, lsp_session: Session
) -> None:
    collector.delay_s = 30.0  # past the export's own timeout (1 s at this interval)
    async with lsp_session(exporting_to(fake, collector.endpoint), env=NO_OTEL_ENV) as client:
        assert await until(lambda: collector.posts >= 1)  # an export is stuck on it now
        answers = await complete_three_times(client)
        export = await export_state(client, "failing")

    assert answers == [["return a + b"]] * 3
    assert export["state"] == "failing"
    assert export["last_error"]  # the exporter's words for its timeout
