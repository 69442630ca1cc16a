"""A loopback OpenTelemetry collector: a real HTTP server on 127.0.0.1 that takes OTLP/HTTP
metrics (``POST /v1/metrics``, protobuf ``ExportMetricsServiceRequest``), as the
OpenTelemetry Collector's ``otlp`` receiver does on port 4318.

It keeps every body as received (``bodies``: a test searches the raw bytes for text that must
never leave the editor) and decoded (``requests``), and answers ``status`` (200 by default; set
it to 503 or 400 to play a collector in trouble) after ``delay_s`` (a slow or stuck one).
``points(name)`` gives a metric's data points across every request received, as
``(attributes, value)`` pairs, newest last::

    with OtlpCollector() as collector:
        ...  # point the server at collector.endpoint
        assert collector.wait_for(lambda c: c.points("crucible.requests"))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

Attributes = dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(pairs: list[KeyValue] | Any) -> Attributes:
    return {pair.key: _value(pair.value) for pair in pairs}


class OtlpCollector:
    def __init__(self) -> None:
        self.status = 200
        self.delay_s = 0.0
        self.bodies: list[bytes] = []
        self.requests: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with collector._lock:
                    collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status = collector.status
                    if self.path == "/v1/metrics" and status == 200:
                        request = ExportMetricsServiceRequest()
                        request.ParseFromString(body)
                        collector.bodies.append(body)
                        collector.requests.append(request)
                time.sleep(collector.delay_s)  # counted in ``posts`` already: it has arrived
                answer = (
                    ExportMetricsServiceResponse().SerializeToString() if status == 200 else b""
                )
                self.send_response(status if self.path == "/v1/metrics" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP root, as ``otlp_endpoint`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` take it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def posts(self) -> int:
        """Every POST seen, accepted or not."""
        with self._lock:
            return len(self.headers)

    def __enter__(self) -> OtlpCollector:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def resources(self) -> list[Attributes]:
        with self._lock:
            return [
                attributes(rm.resource.attributes)
                for request in self.requests
                for rm in request.resource_metrics
            ]

    def points(self, name: str) -> list[tuple[Attributes, float]]:
        """Every data point of metric ``name`` received, oldest first."""
        found: list[tuple[Attributes, float]] = []
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name != name:
                            continue
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            number = point.WhichOneof("value")
                            found.append((attributes(point.attributes), getattr(point, number)))
        return found

    def latest(self, name: str, **labels: Any) -> float | None:
        """The newest value of ``name`` whose attributes include ``labels``."""
        matching = [v for a, v in self.points(name) if labels.items() <= a.items()]
        return matching[-1] if matching else None

    def wait_for(self, predicate: Callable[[OtlpCollector], Any], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
