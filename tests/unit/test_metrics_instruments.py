"""What the exported metrics read from a status (runtime/metric_readings.py, turned into
OpenTelemetry instruments by runtime/metrics_export.py): named numbers only. A status whose
every string is a marker (paths, URIs, task names, errors, a provider's model, and the keys
labels come from) exports no marker; the provider's name is the one string meant to go. And
docs/metrics.md lists exactly the metrics exported, with their types and units."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crucible.runtime.metric_readings import METRICS
from crucible.runtime.otlp_target import OtlpTarget

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
MARK = "/home/someone/secret_project/main.py"


def status() -> dict[str, Any]:
    return {
        "version": MARK,
        "uptime_s": 12.5,
        "requests": {"total": 3, "served": 2, "empty": 1, "cache_hit": 1, MARK: 7},
        "stages_ms": {"total": {"p50": 80.0, "p95": 90.0}, MARK: {"p50": 1.0}},
        "upstream": {"calls": 2, "errors": 0},
        "cache": {
            "hits": 1,
            "misses": 2,
            "type_through_hits": 0,
            "levels": {
                "l1": {"hits": 1, "entries": 2, "bytes": 100},
                "l2": {"hits": 0, "entries": 1, "bytes": 50, "path": MARK, "enabled": True},
                MARK: {"hits": 1, "entries": 1, "bytes": 1},
            },
        },
        "providers": [
            {
                "name": "gateway",
                "model": MARK,
                "last_error": MARK,
                "parked_reason": MARK,
                "health": "ready",
                "calls": 2,
                "failures": 0,
                "latency_ms": {"p50": 70.0},
                "first_byte_ms": {"p50": 30.0},
                "parked_remaining_s": 0.0,
            }
        ],
        "memory": {
            "rss_mb": 60.0,
            "soft_limit_mb": 256.0,
            "hard_limit_mb": 512.0,
            "pressure": "normal",
            "task_kinds": [{"name": MARK, "count": 1}],
        },
        "prefetch": {"started": 1, "used": 1, "languages": {MARK: {"started": 1}}},
        "telemetry_export": {"endpoint_host": MARK},
    }


def test_only_named_numbers_leave_and_no_string_of_the_status_does() -> None:
    metrics_export = pytest.importorskip("crucible.runtime.metrics_export")  # the otel extra
    target = OtlpTarget("http://127.0.0.1:9/v1/metrics", 60.0, None, "test")
    export = metrics_export.MetricsExport(target, status, version="1.0", instance_id="test")
    try:
        data = export.collect()
    finally:
        export.shutdown()
    assert data is not None
    points: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = [
                    (dict(p.attributes or {}), p.value) for p in metric.data.data_points
                ]
    assert MARK not in repr(points)
    assert ({"outcome": "served"}, 2) in points["crucible.requests"]
    assert ({"level": "l2"}, 50) in points["crucible.cache.size"]
    assert ({"provider": "gateway", "quantile": "p50"}, 70.0) in points[
        "crucible.provider.duration"
    ]
    assert ({}, 60.0 * 1024 * 1024) in points["crucible.memory.rss"]
    assert ({"result": "started"}, 1) in points["crucible.prefetch"]


def test_the_docs_list_every_metric_with_its_type_and_unit() -> None:
    rows = re.findall(
        r"^\| `(crucible\.[a-z_.]+)` \| (\w+) \| `([^`]+)` \|", DOCS.read_text(), re.M
    )
    assert rows == [(m.name, m.kind, m.unit) for m in METRICS]
