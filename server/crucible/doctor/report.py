"""doctor's report: text for people (verdicts first, configuration last) or JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crucible.config.loader import WORKSPACE_LABEL, ConfigSource, LoadResult, user_config_path
from crucible.config.render import to_toml
from crucible.config.settings import Settings
from crucible.config.trust import trust_hint
from crucible.config.validate import mask_url
from crucible.doctor.checks import ProviderCheck, Workspace, verdict
from crucible.resilience.policy import policy_for


def _key_line(check: ProviderCheck) -> str:
    env = check.settings.api_key_env
    if env is None:
        return "needed, none configured (api_key_env)" if check.key_needed else "not needed"
    return f"{env} is set" if check.key_present else f"{env} is NOT set"


def _latency_line(check: ProviderCheck) -> str:
    if check.first_token_ms is not None and check.total_ms is not None:
        line = f"{check.first_token_ms:.0f} ms (whole 4-token answer {check.total_ms:.0f} ms)"
        if check.slow and check.slow_after_ms is not None:
            line += (
                f"; slow: over the {check.slow_after_ms:.0f} ms failover cut-off. Crucible waits"
                " for it when no other provider can answer (a repeated prompt is faster: its"
                " prompt cache)"
            )
        return line
    if check.total_ms is not None:
        return f"no text; the answer took {check.total_ms:.0f} ms"
    return check.latency_error or check.latency_note or "not measured"


def max_concurrency(check: ProviderCheck, settings: Settings) -> int:
    """The most requests Crucible runs at once at this provider: ``resilience.max_concurrency``
    capped by the provider's own ``max_connections``, as the pool applies it."""
    limiter = policy_for(settings).limiter
    return limiter.for_connections(check.settings.max_connections).maximum


def _concurrency_line(check: ProviderCheck, settings: Settings) -> str:
    return (
        f"{max_concurrency(check, settings)} at once (max_connections"
        f" {check.settings.max_connections}, resilience.max_concurrency"
        f" {settings.resilience.max_concurrency})"
    )


def text_report(
    checks: Sequence[ProviderCheck],
    workspace: Workspace,
    result: LoadResult,
    view: dict[str, Any],
) -> list[str]:
    lines = ["Providers:"]
    for check in checks:
        s = check.settings
        mark = "ok  " if check.can_serve else ("FAIL" if check.serves_completion else "--  ")
        # The local kind serves a file on a port chosen at each launch.
        served = f"at {mask_url(s.base_url)}"
        if s.kind == "local":
            served = f"serving {s.model_path or s.model_url or 'the catalogue model'}"
        lines.append(
            f"  [{mark}] {s.name}: {s.kind} {s.model} {served}"
            f" (roles: {', '.join(str(r) for r in s.roles) or 'none'})"
        )
        # A failed probe's words are in the problem line below.
        reach = "yes" if check.reachable else "no"
        reach += f" ({check.probe.detail})" if check.probe.ok else ""
        lines.append(f"         reachable:   {reach}")
        lines.append(f"         model:       {_model_line(check)}")
        lines.append(f"         API key:     {_key_line(check)}")
        lines.append(f"         first token: {_latency_line(check)}")
        lines.append(f"         max_concurrency: {_concurrency_line(check, result.settings)}")
        lines.extend(f"         problem:     {problem}" for problem in check.problems())
    lines += ["", verdict(checks)[1], "", f"Workspace: {workspace.path} ({workspace.found_by})"]
    lines.append("Configuration files, in order (later wins):")
    for source in result.sources:
        if source.path is not None:
            state = f"error: {source.error}" if source.state == "error" else source.state
            lines.append(f"  {source.label:<15} {source.path}: {state}")
    lines.extend(_workspace_lines(result))
    if result.errors:
        lines += ["", "Configuration problems (these keys use their defaults):"]
        lines.extend(f"  - {error}" for error in result.errors)
    lines += ["", "Effective configuration (secrets masked):", ""]
    lines.append(to_toml(_toml_view(view)).rstrip("\n"))
    return lines


def _workspace_lines(result: LoadResult) -> list[str]:
    """Whether the workspace file is trusted, and what of it was refused."""
    decision = result.workspace_trust
    if decision is None:
        return []
    state = "trusted" if decision.trusted else "not trusted"
    lines = [f"Workspace file: {state} ({decision.why})"]
    if result.refused:
        lines += ["", "Refused from the workspace file:"]
        lines.extend(f"  - {refusal}" for refusal in result.refused)
        workspace = next((s.path for s in result.sources if s.label == WORKSPACE_LABEL), None)
        if workspace is not None and not decision.trusted:
            lines.append(f"  {trust_hint(workspace, user_config_path())}")
    return lines


def _model_line(check: ProviderCheck) -> str:
    present = check.probe.model_present
    if present is None:
        return "unknown (the server lists no models, or the probe failed)"
    if present:
        return "present"
    return "not listed, but the server answered" if check.answered else "missing"


def _toml_view(view: dict[str, Any]) -> dict[str, Any]:
    """``describe``'s view with ``api_key_env`` back to the plain name a file holds."""
    providers = []
    for provider in view.get("providers", []):
        shown = dict(provider)
        key = shown.get("api_key_env")
        shown["api_key_env"] = key.get("name") if isinstance(key, dict) else key
        providers.append(shown)
    return {**view, "providers": providers}


def source_json(source: ConfigSource) -> dict[str, Any]:
    return {
        "source": source.label,
        "path": str(source.path) if source.path is not None else None,
        "state": source.state,
        "error": source.error,
    }


def provider_json(check: ProviderCheck, settings: Settings) -> dict[str, Any]:
    s = check.settings
    return {
        "name": s.name,
        "kind": str(s.kind),
        "model": s.model,
        "base_url": mask_url(s.base_url),
        "roles": [str(r) for r in s.roles],
        "can_serve": check.can_serve,
        "reachable": check.reachable,
        "probe": check.probe.detail,
        "model_present": check.probe.model_present,
        "api_key": {
            "env": s.api_key_env,
            "needed": check.key_needed,
            "present": check.key_present,
        },
        "first_token_ms": _rounded(check.first_token_ms),
        "slow": check.slow,
        "total_ms": _rounded(check.total_ms),
        "latency_note": check.latency_error or check.latency_note or None,
        "max_concurrency": max_concurrency(check, settings),
        "problems": check.problems(),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def json_report(
    checks: Sequence[ProviderCheck],
    workspace: Workspace,
    result: LoadResult,
    view: dict[str, Any],
) -> dict[str, Any]:
    state, line = verdict(checks)
    problems = [str(e) for e in result.errors] + [
        f"{c.settings.name}: {p}" for c in checks for p in c.problems()
    ]
    return {
        "verdict": state,
        "summary": line,
        "workspace": {
            "path": str(workspace.path),
            "found_by": workspace.found_by,
            "trusted": decision.trusted if (decision := result.workspace_trust) else None,
            "refused": [{"key": r.key, "reason": r.reason} for r in result.refused],
        },
        "config_files": [source_json(s) for s in result.sources if s.path is not None],
        "providers": [provider_json(c, result.settings) for c in checks],
        "settings": view,
        "problems": problems,
    }
