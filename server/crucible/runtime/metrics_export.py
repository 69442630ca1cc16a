"""OpenTelemetry export of ``crucible/status``'s figures (the optional ``otel`` extra).

The only module that imports OpenTelemetry. ``app.py`` imports it, off the event loop, only
when ``runtime/otlp_target.py`` found somewhere to export to; an unconfigured server never
loads it. docs/metrics.md lists every metric (name, type, unit, attributes, meaning).

No second set of counters: every instrument is observable (one per ``Metric`` of
``runtime/metric_readings.py``, which says what is read), and its callback reads the one status
dictionary taken for that collection (``App.status``, the payload of ``crucible/status``), so
the exported figures are the ones a user sees in status, counted once. Collection runs on
the event loop (the counters are the loop's and not thread-safe): ``collect`` takes the status,
the SDK's reader calls the callbacks, and the encoded batch goes to the exporter in a daemon
thread, since the exporter's HTTP client (requests) blocks. An export the collector does not
accept (down, slow, 4xx/5xx) costs that thread its timeout, never a completion.

What leaves the machine: numbers, and as attribute values only the code's own labels (outcomes,
marks, stage and cache level names, health states), provider names from the user's own
configuration, and the resource attributes ``service.name``, ``service.version``,
``service.instance.id`` (random per window's server). Never document text, file paths, URIs,
model output or keys: the readings pick named numeric fields of the status, nothing else.

The exporter logs why each export failed (status code, connection error) at WARNING and ERROR,
on every failure; those records are kept here instead (``_ExporterWords``): the export's own
log says it once per failing streak, and status carries the last reason.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.re import parse_env_headers

from crucible.runtime.metric_readings import METRICS, Reading, Status
from crucible.runtime.otlp_target import ExportRecord, ExportState, OtlpTarget

logger = logging.getLogger(__name__)

SERVICE_NAME = "crucible-lsp"
StatusSource = Callable[[], Mapping[str, Any]]
# The exporter's own timeout per export (the OpenTelemetry default, 10 s), shorter when the
# interval is: an export never overlaps the next.
_EXPORT_TIMEOUT_S = 10.0
# At shutdown, one last export of a healthy target may take this long; the process does not
# wait for a collector that is failing.
_FINAL_EXPORT_S = 2.0

T = TypeVar("T")


class _ExporterWords(logging.Handler):
    """Keeps the first thing the OpenTelemetry exporter logged during an export (the cause:
    "Transient error Service Unavailable ..."; the last is only "max retries"), per thread
    (each export runs in its own), instead of letting every failed export reach the editor's
    log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        words = record.getMessage().splitlines()[0][:200] if record.getMessage() else ""
        if getattr(self._local, "last", None) is None:
            self._local.last = words
        logger.debug("exporter: %s", words)

    def take(self) -> str | None:
        last: str | None = getattr(self._local, "last", None)
        self._local.last = None
        return last

    def answered(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """The exporter's session's response hook: the collector's status, which the
        exporter's result does not carry."""
        self._local.status = response.status_code

    def status(self) -> int | None:
        status: int | None = getattr(self._local, "status", None)
        self._local.status = None
        return status


_WORDS = _ExporterWords()
_SDK_LOG = logging.getLogger("opentelemetry")
_SDK_LOG.addHandler(_WORDS)
_SDK_LOG.propagate = False


class MetricsExport:
    """The SDK's meter provider with Crucible's observable instruments, a reader collected on
    demand, and the OTLP/HTTP exporter for ``target``."""

    def __init__(
        self, target: OtlpTarget, source: StatusSource, *, version: str, instance_id: str
    ) -> None:
        self._source = source
        self._status: Mapping[str, Any] = {}
        self._reader = InMemoryMetricReader()
        resource = Resource.create(
            {
                "service.name": SERVICE_NAME,
                "service.version": version,
                "service.instance.id": instance_id,
            }
        )
        # Not the global provider, and no exit hook: the App closes it.
        self._provider = MeterProvider(
            metric_readers=[self._reader], resource=resource, shutdown_on_exit=False
        )
        _instruments(self._provider.get_meter("crucible", version), lambda: self._status)
        headers = parse_env_headers(target.headers, liberal=True) if target.headers else None
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment is not the user's choice here
        session.hooks["response"].append(_WORDS.answered)
        self._exporter = OTLPMetricExporter(
            endpoint=target.url,
            headers=headers,
            timeout=min(_EXPORT_TIMEOUT_S, max(1.0, target.interval_s)),
            session=session,
        )

    def collect(self) -> MetricsData | None:
        """On the loop: one status, read by every instrument's callback."""
        self._status = self._source()
        try:
            return self._reader.get_metrics_data()
        finally:
            self._status = {}

    def export(self, data: MetricsData) -> str | None:
        """In a thread: None when the collector accepted ``data``, else why not."""
        _WORDS.take(), _WORDS.status()  # nothing left from an earlier export on this thread
        try:
            result = self._exporter.export(data)
        except Exception as exc:  # the exporter's own bug must not end the export loop
            return type(exc).__name__
        words, status = _WORDS.take(), _WORDS.status()
        if result is MetricExportResult.SUCCESS:
            return None
        if status is not None:
            return f"HTTP {status} from the collector"
        return words or "export failed"

    def shutdown(self) -> None:
        self._exporter.shutdown()
        self._provider.shutdown()


async def export_until(
    target: OtlpTarget,
    source: StatusSource,
    record: ExportRecord,
    stop: asyncio.Event,
    *,
    version: str,
    instance_id: str,
) -> None:
    """Export every ``target.interval_s`` until ``stop`` is set, then once more if the
    collector was accepting (bounded by ``_FINAL_EXPORT_S``)."""
    try:
        export = MetricsExport(target, source, version=version, instance_id=instance_id)
    except Exception as exc:  # the SDK refused its setup (a malformed headers value, say)
        record.state, record.last_error = ExportState.FAILING, type(exc).__name__
        logger.warning("telemetry: cannot export to %s (%s)", target.host, type(exc).__name__)
        return
    record.state = ExportState.STARTING
    logger.info("telemetry: exporting metrics to %s every %g s", target.host, target.interval_s)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), target.interval_s)
            except TimeoutError:
                await _export_once(export, record, target)
                continue
            if record.state is ExportState.EXPORTING:
                try:
                    await asyncio.wait_for(_export_once(export, record, target), _FINAL_EXPORT_S)
                except TimeoutError:
                    pass
    finally:
        record.state = ExportState.STOPPED
        await _off_loop(export.shutdown, "crucible-otlp-shutdown")


async def _export_once(export: MetricsExport, record: ExportRecord, target: OtlpTarget) -> None:
    data = export.collect()
    if data is None:
        return
    error = await _off_loop(lambda: export.export(data), "crucible-otlp-export")
    if error is None:
        if record.state is ExportState.FAILING:
            logger.info("telemetry: export to %s works again", target.host)
        record.exported += 1
        record.state = ExportState.EXPORTING
        return
    record.failures += 1
    record.last_error = error
    if record.state is not ExportState.FAILING:
        # Once per failing streak: a collector down for a day is one line, not 1,440.
        logger.warning(
            "telemetry: export to %s failed (%s); completions are not affected, and the"
            " export is tried again every %g s",
            target.host,
            error,
            target.interval_s,
        )
    record.state = ExportState.FAILING


async def _off_loop(call: Callable[[], T], name: str) -> T:
    """``call()`` in a daemon thread: a hung collector can hold that thread, never the loop
    nor the process's exit (``asyncio.to_thread``'s pool is joined at exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = call()
        except BaseException as exc:
            outcome: tuple[T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


# -- the instruments: one observable per Metric of runtime/metric_readings.py -----------------


def _instruments(meter: Meter, status: Callable[[], Status]) -> None:
    for metric in METRICS:
        create = (
            meter.create_observable_counter
            if metric.kind == "counter"
            else meter.create_observable_gauge
        )
        callback = _observer(metric.read, status)
        create(metric.name, [callback], unit=metric.unit, description=metric.description)


def _observer(
    read: Callable[[Status], Iterable[Reading]], status: Callable[[], Status]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """The SDK's callback for one metric: its readings of the status taken for this
    collection (none outside a collection)."""

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        current = status()
        if not current:
            return []
        return [Observation(value, labels or None) for value, labels in read(current)]

    return callback
