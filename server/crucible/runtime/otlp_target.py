"""Where the server's metrics go, and how the export is doing: no OpenTelemetry import here.

The export itself (``runtime/metrics_export.py``) needs the optional ``otel`` extra and costs
~100 ms of imports; this module decides, from ``[telemetry]`` and the environment, whether
there is anything to export at all, so that an unconfigured server never imports
OpenTelemetry. ``OtlpTarget`` is what the export needs to know; ``ExportRecord`` is how it is
doing, as ``crucible/status`` ``telemetry_export`` shows it; ``TelemetryExport`` is the
export's life in one server: started, replaced or stopped as ``[telemetry]`` changes, and a
last export at the end.

Sources, first wins: ``[telemetry] otlp_endpoint``, then the standard variables (read from
the editor's environment) ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (the metrics URL, taken as it
is) and ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` turns the export off either
way, as it does any OpenTelemetry SDK. ``otlp_endpoint`` is the OTLP/HTTP root, as the generic
variable takes it: ``/v1/metrics`` is appended (an endpoint that already ends with it is kept).

Headers (an authorization token) come from the variable ``otlp_headers_env`` names, else from
``OTEL_EXPORTER_OTLP_HEADERS``, which the exporter reads itself; they are never in a file, and
never shown: status names the endpoint's host only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from crucible.config.settings import TelemetrySettings

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
METRICS_ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
DISABLED_VARIABLE = "OTEL_SDK_DISABLED"
METRICS_PATH = "/v1/metrics"


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """One export destination. ``headers`` holds the raw value of the named variable (OTLP's
    ``key=value,...``), or None to leave headers to ``OTEL_EXPORTER_OTLP_HEADERS``."""

    url: str  # the full metrics URL, ``/v1/metrics`` included
    interval_s: float
    headers: str | None
    source: str  # where the endpoint came from: "[telemetry] otlp_endpoint" or the variable

    @property
    def host(self) -> str:
        """``host:port`` only: status and logs never show a path or query (they may carry a
        tenant or a token in some setups)."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host

    def __repr__(self) -> str:  # the headers may hold a token
        return f"OtlpTarget({self.host}, every {self.interval_s:g} s, from {self.source})"


def otlp_target(settings: TelemetrySettings, env: Mapping[str, str]) -> OtlpTarget | None:
    """The destination ``settings`` and ``env`` (the editor's environment) name; None when
    nothing is to be exported (the default)."""
    if env.get(DISABLED_VARIABLE, "").strip().lower() == "true":
        return None
    endpoint, source = settings.otlp_endpoint, "[telemetry] otlp_endpoint"
    whole = not endpoint and bool(env.get(METRICS_ENDPOINT_VARIABLE, "").strip())
    if whole:
        endpoint, source = env[METRICS_ENDPOINT_VARIABLE].strip(), METRICS_ENDPOINT_VARIABLE
    elif not endpoint:
        endpoint, source = env.get(ENDPOINT_VARIABLE, "").strip(), ENDPOINT_VARIABLE
    if not endpoint or urlsplit(endpoint).scheme not in ("http", "https"):
        return None
    url = endpoint if whole else endpoint.rstrip("/")
    if not whole and not url.endswith(METRICS_PATH):
        url += METRICS_PATH
    headers = env.get(settings.otlp_headers_env) if settings.otlp_headers_env else None
    return OtlpTarget(url, settings.export_interval_s, headers, source)


class ExportState(StrEnum):
    OFF = "off"  # nothing configured: nothing imported, nothing sent
    STARTING = "starting"  # configured, no export attempted yet
    EXPORTING = "exporting"  # the last export was accepted
    FAILING = "failing"  # the last export failed (collector down, slow, refused)
    UNAVAILABLE = "unavailable"  # configured, but the otel extra is not installed
    STOPPED = "stopped"  # the configuration changed or the server is ending


@dataclass(slots=True)
class ExportRecord:
    """How one target's export is doing; written by the export loop, read by status."""

    target: OtlpTarget | None
    state: ExportState = ExportState.OFF
    exported: int = 0  # exports the collector accepted
    failures: int = 0  # exports that failed
    last_error: str | None = None  # short, from the exporter's own words; never a header

    def snapshot(self) -> dict[str, Any]:
        """``crucible/status`` ``telemetry_export``."""
        if self.target is None:
            return {"state": str(ExportState.OFF)}
        return {
            "endpoint_host": self.target.host,
            "state": str(self.state),
            "exported": self.exported,
            "failures": self.failures,
            "last_error": self.last_error,
            "interval_s": self.target.interval_s,
        }


# How long closing waits for the export loop's last export (runtime/metrics_export.py bounds
# it at 2 s) and shutdown.
_END_S = 3.0


class TelemetryExport:
    """The metrics export of one server (``[telemetry]``): the target in force, its loop and
    its record. The loop (``runtime/metrics_export.py``, imported in a thread only once a
    target is set) reads ``status`` at each export; ``spawn`` runs it as the App's owned
    background work; ``announce`` tells the user the ``otel`` extra is missing."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        status: Callable[[], dict[str, Any]],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        announce: Callable[[str], None],
        version: str,
    ) -> None:
        self._env = env
        self._status = status
        self._spawn = spawn
        self._announce = announce
        self._version = version
        self._instance_id = str(uuid.uuid4())  # service.instance.id: this server process
        self.record = ExportRecord(None)
        self._stop: asyncio.Event | None = None
        self._ended: asyncio.Event | None = None

    def apply(self, settings: TelemetrySettings) -> None:
        """Start, replace or stop the export; an unchanged target, nothing done."""
        target = otlp_target(settings, self._env)
        if target == self.record.target:
            return
        if self._stop is not None:
            self._stop.set()  # the old loop ends
            self._stop = None
        self.record = ExportRecord(target)
        if target is not None:
            self.record.state = ExportState.STARTING
            self._stop, self._ended = asyncio.Event(), asyncio.Event()
            self._spawn(self._run(target, self.record, self._stop, self._ended), "export metrics")

    async def aclose(self, *, started: bool) -> None:
        """A last export while every component still counts, bounded, then the loop ends
        (waited for only when the loop could have run: ``started``)."""
        if self._stop is None or self._ended is None:
            return
        self._stop.set()
        if started:
            try:
                await asyncio.wait_for(self._ended.wait(), _END_S)
            except TimeoutError:
                logger.debug("telemetry: the export loop did not end in time")

    async def _run(
        self, target: OtlpTarget, record: ExportRecord, stop: asyncio.Event, ended: asyncio.Event
    ) -> None:
        try:
            if stop.is_set():  # replaced or closed before the loop ran
                return
            try:
                # ~100 ms of imports, off the loop; only now, so an unconfigured server never
                # imports OpenTelemetry.
                exporting: Any = await asyncio.to_thread(
                    importlib.import_module, "crucible.runtime.metrics_export"
                )
            except ImportError as exc:
                record.state = ExportState.UNAVAILABLE
                record.last_error = f"{type(exc).__name__}: {exc.name or exc}"
                message = (
                    f"Crucible: metrics export to {target.host} needs the otel extra:"
                    " pip install 'crucible-lsp[otel]'"
                )
                logger.warning("telemetry: %s", message)
                self._announce(message)
                return
            await exporting.export_until(
                target,
                self._status,
                record,
                stop,
                version=self._version,
                instance_id=self._instance_id,
            )
        finally:
            ended.set()
