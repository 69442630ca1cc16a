"""doctor.py's pure parts: masking keys that a server echoes, and the verdict line."""

from __future__ import annotations

from crucible.config.settings import ProviderSettings, Role
from crucible.doctor import ProviderCheck, mask_secrets, verdict
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
