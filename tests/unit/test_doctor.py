"""doctor.py's pure parts: masking keys that a server echoes, and the verdict line."""

from __future__ import annotations

from pathlib import Path

from crucible.config.loader import LoadResult
from crucible.config.settings import ProviderSettings, Role, Settings
from crucible.doctor import ProviderCheck, mask_secrets, verdict
from crucible.doctor.checks import Workspace
from crucible.doctor.report import json_report, text_report
from crucible.providers.base import ProbeResult

KEY = "sk-proj-Zq8Xw3Vt9Ks2Lm4Np6Rb1Yc5Hd7Jf0Ga"


def test_a_key_and_a_half_masked_echo_of_it_are_masked() -> None:
    text = (
        f"HTTP 401: Incorrect API key provided: sk-proj-****************7Jf0Ga. Sent {KEY}."
        " Model Qwen/Qwen2.5-Coder-1.5B at http://127.0.0.1:8000/v1"
    )
    masked = mask_secrets(text, [KEY])
    assert "sk-p" not in masked and "7Jf0Ga" not in masked and KEY not in masked
    # Nothing else is touched.
    assert "Qwen/Qwen2.5-Coder-1.5B at http://127.0.0.1:8000/v1" in masked


def _check(
    name: str, *, answered: bool, roles: tuple[Role, ...] = (Role.COMPLETION,)
) -> ProviderCheck:
    return ProviderCheck(
        ProviderSettings(name=name, roles=roles),
        ProbeResult(True, "ok", model_present=True),
        key_needed=False,
        key_present=None,
        first_token_ms=5.0 if answered else None,
        total_ms=9.0 if answered else None,
    )


def test_verdict_counts_only_completion_providers_that_answered() -> None:
    assert verdict([_check("a", answered=True)])[0] == "ready"
    assert verdict([_check("a", answered=True), _check("b", answered=False)])[0] == "degraded"
    assert verdict([_check("a", answered=False)])[0] == "not ready"
    chat_only = _check("c", answered=False, roles=(Role.CHAT,))
    assert verdict([chat_only]) == ("not ready", "Not ready: no provider has the completion role.")


def test_doctor_prints_the_concurrency_in_force_per_provider(tmp_path: Path) -> None:
    # resilience.max_concurrency is 8 by default, but a provider's own max_connections (4 by
    # default) caps it: doctor used to show only the 8.
    settings = Settings(
        providers=(
            ProviderSettings(name="local", max_connections=1),
            ProviderSettings(name="default"),
            ProviderSettings(name="hosted", max_connections=16),
        )
    )
    result = LoadResult(settings=settings, errors=())
    checks = [
        ProviderCheck(p, ProbeResult(True, "ok"), key_needed=False, key_present=None)
        for p in settings.providers
    ]
    where = Workspace(tmp_path, "cwd")
    lines = text_report(checks, where, result, {})
    shown = [line.split("max_concurrency: ")[1] for line in lines if "max_concurrency: " in line]
    assert [line.split(" ")[0] for line in shown] == ["1", "4", "8"]
    assert shown[1] == "4 at once (max_connections 4, resilience.max_concurrency 8)"
    as_json = json_report(checks, where, result, {})
    assert [p["max_concurrency"] for p in as_json["providers"]] == [1, 4, 8]
