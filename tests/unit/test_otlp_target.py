"""[telemetry]: where metrics go (runtime/otlp_target.py), how the section is validated, and
that no workspace file says where metrics go or which variable is sent with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crucible.config.settings import Settings, TelemetrySettings
from crucible.config.trust import NEVER_KEYS, WorkspaceTrust, screen_workspace
from crucible.config.validate import build_settings
from crucible.runtime.otlp_target import ExportRecord, ExportState, otlp_target

UNTRUSTED = WorkspaceTrust(False, "not listed")
TRUSTED = WorkspaceTrust(True, "listed")
CACHE = Path("/nonexistent/cache/crucible")


def test_nothing_is_exported_by_default() -> None:
    assert otlp_target(TelemetrySettings(), {}) is None
    assert ExportRecord(None).snapshot() == {"state": "off"}


def test_the_configured_endpoint_gets_the_metrics_path_once() -> None:
    for endpoint in ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/metrics"):
        target = otlp_target(TelemetrySettings(otlp_endpoint=endpoint), {})
        assert target is not None
        assert target.url == "http://127.0.0.1:4318/v1/metrics"
        assert target.host == "127.0.0.1:4318"


def test_the_standard_variable_applies_when_the_file_names_no_endpoint() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com"}
    target = otlp_target(TelemetrySettings(), env)
    assert target is not None
    assert (target.url, target.source) == (
        "https://otel.example.com/v1/metrics",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    mine = otlp_target(TelemetrySettings(otlp_endpoint="http://127.0.0.1:1"), env)
    assert mine is not None and mine.host == "127.0.0.1:1"


def test_the_metrics_variable_is_the_whole_url_and_wins_over_the_generic_one() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318/custom/path",
    }
    target = otlp_target(TelemetrySettings(), env)
    assert target is not None
    assert (target.url, target.source) == (
        "http://metrics:4318/custom/path",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    )


def test_otel_sdk_disabled_turns_the_export_off() -> None:
    settings = TelemetrySettings(otlp_endpoint="http://127.0.0.1:4318")
    assert otlp_target(settings, {"OTEL_SDK_DISABLED": "true"}) is None


def test_headers_come_from_the_named_variable_and_are_never_shown() -> None:
    settings = TelemetrySettings(
        otlp_endpoint="http://127.0.0.1:4318", otlp_headers_env="TEAM_OTLP_HEADERS"
    )
    target = otlp_target(settings, {"TEAM_OTLP_HEADERS": "authorization=Bearer s3cr3t"})
    assert target is not None and target.headers == "authorization=Bearer s3cr3t"
    assert "s3cr3t" not in repr(target)
    record = ExportRecord(target, ExportState.FAILING, failures=1)
    assert "s3cr3t" not in str(record.snapshot())
    assert record.snapshot()["endpoint_host"] == "127.0.0.1:4318"


def test_the_section_is_validated_key_by_key() -> None:
    result = build_settings(
        {
            "telemetry": {
                "otlp_endpoint": "http://user:pw@collector:4318",
                "otlp_protocol": "grpc",
                "export_interval_s": 0,
                "otlp_headers_env": "sk-abcdefghijklmnopqrstuvwxyz012345",
            }
        }
    )
    assert result.settings.telemetry == TelemetrySettings()
    keys = [error.key for error in result.errors]
    assert keys == [
        "telemetry.otlp_endpoint",
        "telemetry.otlp_protocol",
        "telemetry.export_interval_s",
        "telemetry.otlp_headers_env",
    ]
    shown = " ".join(str(error) for error in result.errors)
    assert "pw" not in shown and "sk-abc" not in shown


def test_a_good_section_is_taken() -> None:
    telemetry = {
        "otlp_endpoint": "http://127.0.0.1:4318/",
        "export_interval_s": 15,
        "otlp_headers_env": "OTLP_HEADERS",
    }
    result = build_settings({"telemetry": telemetry})
    assert result.errors == ()
    assert result.settings.telemetry == TelemetrySettings(
        otlp_endpoint="http://127.0.0.1:4318",
        export_interval_s=15.0,
        otlp_headers_env="OTLP_HEADERS",
    )


@pytest.mark.parametrize("trust", [UNTRUSTED, TRUSTED], ids=["untrusted", "trusted"])
def test_no_workspace_file_sets_the_endpoint_or_the_headers_variable(
    trust: WorkspaceTrust,
) -> None:
    table = {
        "telemetry": {
            "otlp_endpoint": "http://attacker.example:4318",
            "otlp_headers_env": "AWS_SECRET_ACCESS_KEY",
            "export_interval_s": 5,
        }
    }
    screened = screen_workspace(table, Settings(), trust, CACHE)
    refused = [r.key for r in screened.refused]
    assert refused[:2] == ["telemetry.otlp_endpoint", "telemetry.otlp_headers_env"]
    if trust.trusted:  # the interval is no redirection: a trusted workspace may set it
        assert screened.table == {"telemetry": {"export_interval_s": 5}}
    else:  # deny by default: nothing of the section
        assert refused == [*refused[:2], "telemetry.export_interval_s"]
        assert screened.table == {}


def test_never_keys_are_keys_of_the_schema() -> None:
    names = {f.name for f in dataclasses.fields(TelemetrySettings)}
    assert {name for section, name in NEVER_KEYS if section == "telemetry"} <= names
