"""The metrics Crucible exports, as readings of one ``crucible/status``: pure, no
OpenTelemetry import (``runtime/metrics_export.py`` turns each into an observable instrument).

Each :class:`Metric` names itself as docs/metrics.md lists it (a test keeps the two equal) and
reads ``(value, attributes)`` pairs from a status dictionary. Readers pick named numeric
fields and nothing else, so no string of the status (a cache file's path, a task's name, an
error message, a model) can become a value; attribute values are the code's own labels,
quantile names and provider names from the user's configuration. A label taken from a key of
the status (an outcome, a stage, a cache level) is kept only if it looks like one of the code's
own words (``_LABEL``): a path, a URI or a sentence never does, whatever reaches those tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crucible.resilience.member import Health
from crucible.runtime.memory import Pressure
from crucible.runtime.telemetry import MARKS

Reading = tuple[float, dict[str, str]]
Status = Mapping[str, Any]

_QUANTILES = ("p50", "p95", "p99")
# From the enums the status is written from, so a state added there is exported too (a copy
# here had to be kept in step by hand: ``rate_limited`` was added to both).
_HEALTH = tuple(str(health) for health in Health)
_PRESSURE = tuple(str(level) for level in Pressure)
_PREFETCH = ("started", "used", "wasted", "skipped", "explored")
_MB = 1024 * 1024
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Metric:
    """One exported metric: a cumulative counter or a gauge, read from a status."""

    name: str
    kind: Literal["counter", "gauge"]
    unit: str
    description: str
    read: Callable[[Status], Iterable[Reading]]


def _label(key: Any) -> bool:
    return isinstance(key, str) and _LABEL.fullmatch(key) is not None


def _number(
    table: Any, key: str, scale: float = 1, attributes: dict[str, str] | None = None
) -> list[Reading]:
    value = table.get(key) if isinstance(table, Mapping) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return []
    return [(value * scale if scale != 1 else value, dict(attributes or {}))]


def _table(status: Status, *keys: str) -> Mapping[str, Any]:
    found: Any = status
    for key in keys:
        found = found.get(key) if isinstance(found, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _requests(status: Status) -> Iterable[Reading]:
    for name, count in _table(status, "requests").items():
        if name != "total" and name not in MARKS and _label(name):
            yield from _number({name: count}, name, attributes={"outcome": name})


def _marks(status: Status) -> Iterable[Reading]:
    requests = _table(status, "requests")
    for name in MARKS:
        yield from _number(requests, name, attributes={"mark": name})


def _stages(status: Status) -> Iterable[Reading]:
    for stage, found in _table(status, "stages_ms").items():
        if _label(stage):
            for quantile in _QUANTILES:
                labels = {"stage": stage, "quantile": quantile}
                yield from _number(found, quantile, attributes=labels)


def _providers(status: Status) -> Iterable[Mapping[str, Any]]:
    for provider in status.get("providers", ()):
        if isinstance(provider, Mapping) and isinstance(provider.get("name"), str):
            yield provider


def _per_provider(key: str) -> Callable[[Status], Iterable[Reading]]:
    def read(status: Status) -> Iterable[Reading]:
        for provider in _providers(status):
            yield from _number(provider, key, attributes={"provider": provider["name"]})

    return read


def _provider_quantiles(key: str) -> Callable[[Status], Iterable[Reading]]:
    def read(status: Status) -> Iterable[Reading]:
        for provider in _providers(status):
            for quantile in _QUANTILES:
                labels = {"provider": provider["name"], "quantile": quantile}
                yield from _number(provider.get(key), quantile, attributes=labels)

    return read


def _health(status: Status) -> Iterable[Reading]:
    for provider in _providers(status):
        for health in _HEALTH:
            labels = {"provider": provider["name"], "health": health}
            yield (1 if provider.get("health") == health else 0), labels


def _cache_levels(key: str) -> Callable[[Status], Iterable[Reading]]:
    """Every level status lists (l1, l2, and any added later), by its name."""

    def read(status: Status) -> Iterable[Reading]:
        for level, found in _table(status, "cache", "levels").items():
            if _label(level):
                yield from _number(found, key, attributes={"level": level})

    return read


def _cache_hits(status: Status) -> Iterable[Reading]:
    yield from _cache_levels("hits")(status)
    cache = _table(status, "cache")
    yield from _number(cache, "type_through_hits", attributes={"level": "type_through"})


def _memory_limits(status: Status) -> Iterable[Reading]:
    memory = _table(status, "memory")
    yield from _number(memory, "soft_limit_mb", _MB, attributes={"limit": "soft"})
    yield from _number(memory, "hard_limit_mb", _MB, attributes={"limit": "hard"})


def _pressure(status: Status) -> Iterable[Reading]:
    current = _table(status, "memory").get("pressure")
    for level in _PRESSURE:
        yield (1 if current == level else 0), {"level": level}


def _prefetch(status: Status) -> Iterable[Reading]:
    prefetch = _table(status, "prefetch")
    for result in _PREFETCH:
        yield from _number(prefetch, result, attributes={"result": result})


METRICS: tuple[Metric, ...] = (
    Metric(
        "crucible.requests",
        "counter",
        "{request}",
        "Inline completion requests answered, by outcome.",
        _requests,
    ),
    Metric(
        "crucible.requests.marks",
        "counter",
        "{request}",
        "How answered requests were served (cache_hit, type_through, coalesced, reused,"
        " batched) or what was done for them (prefetched).",
        _marks,
    ),
    Metric(
        "crucible.stage.duration",
        "gauge",
        "ms",
        "Percentiles of each completion stage over the recent 512 samples.",
        _stages,
    ),
    Metric(
        "crucible.upstream.calls",
        "counter",
        "{call}",
        "Provider calls (attempts) of every role since start-up.",
        lambda s: _number(_table(s, "upstream"), "calls"),
    ),
    Metric(
        "crucible.upstream.errors",
        "counter",
        "{call}",
        "Provider calls that failed, of every role, since start-up.",
        lambda s: _number(_table(s, "upstream"), "errors"),
    ),
    Metric(
        "crucible.provider.calls",
        "counter",
        "{call}",
        "Calls (attempts) to one provider.",
        _per_provider("calls"),
    ),
    Metric(
        "crucible.provider.errors",
        "counter",
        "{call}",
        "Failed calls to one provider.",
        _per_provider("failures"),
    ),
    Metric(
        "crucible.provider.duration",
        "gauge",
        "ms",
        "Percentiles of one provider's whole calls over its recent 50.",
        _provider_quantiles("latency_ms"),
    ),
    Metric(
        "crucible.provider.first_byte",
        "gauge",
        "ms",
        "Percentiles of one provider's time to first chunk over its recent 50.",
        _provider_quantiles("first_byte_ms"),
    ),
    Metric(
        "crucible.provider.health",
        "gauge",
        "1",
        "1 for the provider's current health, 0 for the others.",
        _health,
    ),
    Metric(
        "crucible.provider.parked",
        "gauge",
        "s",
        "Seconds until a provider parked by a rate limit is asked again.",
        _per_provider("parked_remaining_s"),
    ),
    Metric(
        "crucible.cache.hits",
        "counter",
        "{request}",
        "Answers served from cache, per level.",
        _cache_hits,
    ),
    Metric(
        "crucible.cache.misses",
        "counter",
        "{request}",
        "Lookups no cache level could answer.",
        lambda s: _number(_table(s, "cache"), "misses"),
    ),
    Metric(
        "crucible.cache.entries",
        "gauge",
        "{entry}",
        "Answers held, per level.",
        _cache_levels("entries"),
    ),
    Metric(
        "crucible.cache.size",
        "gauge",
        "By",
        "Bytes held, per level.",
        _cache_levels("bytes"),
    ),
    Metric(
        "crucible.memory.rss",
        "gauge",
        "By",
        "The server's resident memory.",
        lambda s: _number(_table(s, "memory"), "rss_mb", _MB),
    ),
    Metric(
        "crucible.memory.limit",
        "gauge",
        "By",
        "[memory] soft and hard limits.",
        _memory_limits,
    ),
    Metric(
        "crucible.memory.pressure",
        "gauge",
        "1",
        "1 for the current pressure level, 0 for the others.",
        _pressure,
    ),
    Metric(
        "crucible.prefetch",
        "counter",
        "{prefetch}",
        "Prefetches started, used, wasted, skipped as unlikely to be used, and explored.",
        _prefetch,
    ),
    Metric(
        "crucible.uptime",
        "gauge",
        "s",
        "Seconds since the server started.",
        lambda s: _number(s, "uptime_s"),
    ),
)
