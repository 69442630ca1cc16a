"""``crucible-lsp doctor``: can Crucible serve completions here, and if not, what to fix.

A command for people: it prints to stdout, in this order,

1. each provider's verdict: reachable (the probe's answer, in words to act on), model present
   (from the server's model listing), API key present (the variable's NAME from
   ``api_key_env``, never its value), the first-token latency of ONE tiny real completion
   (``max_tokens`` 4, skipped when the probe failed), and its roles;
2. one overall verdict line;
3. the workspace, found as an editor finds it (``config.loader.find_workspace_root``) unless
   ``--workspace`` names it, and the configuration files in merge order, each loaded, not
   found, or in error;
4. configuration problems, then the effective configuration as TOML, secrets masked.

``--json`` prints one object instead (``verdict``, ``workspace``, ``config_files``,
``providers``, ``settings``, ``problems``) and nothing else on stdout.

Exit 0 when at least one provider with the completion role can serve (reachable, the model
present or not knowable, a key when it needs one, and the tiny completion answered), 1 when
none can; ``cli.py`` exits 2 on a usage error.

Keys: no key, nor any part of one, is printed. Every text shown passes through
``mask_secrets`` (``providers.http.mask_key`` for each key in the environment, plus any
key-like run starting like one), so even a server that echoes a key in an error is masked.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crucible.config.loader import (
    WORKSPACE_MARKERS,
    ConfigSource,
    LoadResult,
    describe,
    find_workspace_root,
    load_settings,
)
from crucible.config.render import to_toml
from crucible.config.settings import ProviderKind, ProviderSettings, Role
from crucible.config.validate import mask_url
from crucible.providers.base import FimRequest, ProbeResult, Provider
from crucible.providers.errors import ProviderError
from crucible.providers.http import mask_key
from crucible.providers.registry import create_provider

_PROBE_TIMEOUT_S = 5.0
# Generous: a cold local model on a CPU can take seconds to its first token, and doctor is
# where the user finds out how many; past this it cannot serve a completion in any case.
_LATENCY_TIMEOUT_S = 20.0
# One tiny real completion: a few tokens, greedy, a prompt every code model can continue.
_LATENCY_REQUEST = FimRequest(
    prefix="def add(a, b):\n    return ",
    suffix="\n\n\nprint(add(1, 2))\n",
    language_id="python",
    path="crucible_doctor.py",
    max_tokens=4,
    temperature=0.0,
)
# Hosted APIs that never work without a key, whatever api_key_env says.
_KEYED_KINDS = (ProviderKind.ANTHROPIC, ProviderKind.CODESTRAL)
# Probe details meaning nothing answered at all (providers/http.py's describe_error words).
_UNREACHABLE = ("connection refused", "cannot connect", "connection lost", "timeout", "no answer")


@dataclass(frozen=True, slots=True)
class Workspace:
    path: Path
    found_by: str  # the marker, "--workspace", or "no root marker: the current directory"


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """What doctor found out about one provider."""

    settings: ProviderSettings
    probe: ProbeResult
    key_needed: bool
    key_present: bool | None  # None: no variable named
    first_token_ms: float | None = None
    total_ms: float | None = None
    latency_note: str = ""  # why the latency was not measured
    latency_error: str = ""  # what went wrong with the test completion

    @property
    def reachable(self) -> bool:
        return self.probe.ok or not any(m in self.probe.detail.lower() for m in _UNREACHABLE)

    @property
    def key_ok(self) -> bool:
        return not self.key_needed or bool(self.key_present)

    @property
    def answered(self) -> bool:
        return self.total_ms is not None

    @property
    def serves_completion(self) -> bool:
        return Role.COMPLETION in self.settings.roles

    @property
    def can_serve(self) -> bool:
        """Whether inline completions can come from this provider right now: the test
        completion is only sent when everything else checked out, so its answer decides
        (a server of one model answers to a name it does not list)."""
        return self.serves_completion and self.reachable and self.key_ok and self.answered

    def problems(self) -> list[str]:
        found: list[str] = []
        if not self.key_ok:
            found.append(_key_problem(self.settings))
        refused_key = any(f"http {code}" in self.probe.detail.lower() for code in (401, 403))
        if not self.probe.ok and not (refused_key and not self.key_ok):
            # (a missing key explains a 401/403 already, in better words)
            found.append(_probe_problem(self.settings, self.probe.detail))
        elif self.probe.model_present is False and not self.answered:
            found.append(f"model {self.settings.model} is not listed by the server")
        if self.latency_error:
            found.append(self.latency_error)
        return found


# -- checking --------------------------------------------------------------------------------


async def _check(settings: ProviderSettings, env: Mapping[str, str]) -> ProviderCheck:
    named = settings.api_key_env
    key_present = bool(env.get(named)) if named else None
    needed = named is not None or settings.kind in _KEYED_KINDS
    provider = create_provider(settings)
    try:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                probe = await provider.probe()
        except TimeoutError:
            probe = ProbeResult(False, f"no answer within {_PROBE_TIMEOUT_S:.0f} s")
        except ProviderError as exc:
            probe = ProbeResult(False, exc.message)
        check = ProviderCheck(settings, probe, needed, key_present)
        if Role.COMPLETION not in settings.roles:
            return replace(check, latency_note="not measured: not a completion provider")
        if not probe.ok:
            return replace(check, latency_note="not measured: the probe failed")
        if not check.key_ok:
            return replace(check, latency_note="not measured: no API key")
        return await _measure(check, provider)
    finally:
        await provider.aclose()


async def _measure(check: ProviderCheck, provider: Provider) -> ProviderCheck:
    """Time one tiny completion through the provider's own ``stream_fim``."""
    first: float | None = None
    start = time.perf_counter()
    error = ""
    total: float | None = None
    try:
        async with asyncio.timeout(_LATENCY_TIMEOUT_S):
            async with aclosing(provider.stream_fim(_LATENCY_REQUEST)) as chunks:
                async for _ in chunks:
                    if first is None:
                        first = (time.perf_counter() - start) * 1000
        total = (time.perf_counter() - start) * 1000
    except TimeoutError:
        error = f"the test completion got no answer within {_LATENCY_TIMEOUT_S:.0f} s"
    except ProviderError as exc:
        error = f"the test completion failed: {exc.message}"
    return replace(check, first_token_ms=first, total_ms=total, latency_error=error)


async def _check_all(
    providers: Sequence[ProviderSettings], env: Mapping[str, str]
) -> list[ProviderCheck]:
    return list(await asyncio.gather(*(_check(p, env) for p in providers)))


def locate_workspace(cwd: Path, override: Path | None) -> Workspace:
    """``--workspace`` as given, else the root an editor would open for ``cwd``."""
    if override is not None:
        return Workspace(override.resolve(), "--workspace")
    root = find_workspace_root(cwd)
    if root is None:
        return Workspace(cwd.resolve(), "no root marker: the current directory")
    for group in WORKSPACE_MARKERS:
        for marker in group:
            if os.path.lexists(root / marker):
                return Workspace(root, marker)
    return Workspace(root, "a root marker")


# -- words ------------------------------------------------------------------------------------


def _key_problem(settings: ProviderSettings) -> str:
    if settings.api_key_env:
        return (
            f"the environment variable {settings.api_key_env} (api_key_env) is not set:"
            " export it in the environment the editor starts crucible-lsp from"
        )
    return (
        f"{settings.kind} needs an API key: set api_key_env to the NAME of the environment"
        " variable holding it"
    )


def _probe_problem(settings: ProviderSettings, detail: str) -> str:
    """The probe's words plus what to do about them."""
    low = detail.lower()
    url = mask_url(settings.base_url)
    if "connection refused" in low:
        server = {
            ProviderKind.OLLAMA: "Is `ollama serve` running?",
            ProviderKind.LLAMACPP: "Is llama-server running?",
        }.get(settings.kind, "Is the server running?")
        return f"{detail}: nothing listens at {url}. {server} Otherwise correct base_url."
    if "timeout" in low or "no answer" in low:
        return f"{detail}: check base_url ({url}) and the network, or whether it is overloaded"
    if "cannot connect" in low:
        return f"{detail}: check the host name in base_url ({url})"
    if ("http 401" in low or "http 403" in low) and "api_key_env" not in low:
        env = settings.api_key_env
        what = f"check the key in {env}" if env else "set api_key_env to the variable's NAME"
        return f"{detail}: the server refused the API key; {what}"
    if "not found" in low and settings.kind is ProviderKind.OLLAMA:
        return f"{detail}: run `ollama pull {settings.model}`, or set model to one listed"
    if "not found" in low:
        return f"{detail}: set model to one the server has"
    return detail


def verdict(checks: Sequence[ProviderCheck]) -> tuple[str, str]:
    """``(state, one line)``; state is ready, degraded or not ready."""
    completion = [c for c in checks if c.serves_completion]
    serving = [c.settings.name for c in completion if c.can_serve]
    if not completion:
        return "not ready", "Not ready: no provider has the completion role."
    if not serving:
        return "not ready", "Not ready: no completion provider can serve; see the problems above."
    shown = ", ".join(serving)
    if len(serving) == len(completion):
        return (
            "ready",
            f"Ready: {len(serving)} of {len(completion)} completion providers can serve ({shown}).",
        )
    return (
        "degraded",
        f"Degraded: {len(serving)} of {len(completion)} completion providers can serve ({shown}).",
    )


def _key_line(check: ProviderCheck) -> str:
    env = check.settings.api_key_env
    if env is None:
        return "needed, none configured (api_key_env)" if check.key_needed else "not needed"
    return f"{env} is set" if check.key_present else f"{env} is NOT set"


def _latency_line(check: ProviderCheck) -> str:
    if check.first_token_ms is not None and check.total_ms is not None:
        return f"{check.first_token_ms:.0f} ms (whole 4-token answer {check.total_ms:.0f} ms)"
    if check.total_ms is not None:
        return f"no text; the answer took {check.total_ms:.0f} ms"
    return check.latency_error or check.latency_note or "not measured"


# -- output -----------------------------------------------------------------------------------


def _text(
    checks: Sequence[ProviderCheck],
    workspace: Workspace,
    result: LoadResult,
    view: dict[str, Any],
) -> list[str]:
    lines = ["Providers:"]
    for check in checks:
        s = check.settings
        mark = "ok  " if check.can_serve else ("FAIL" if check.serves_completion else "--  ")
        lines.append(
            f"  [{mark}] {s.name}: {s.kind} {s.model} at {mask_url(s.base_url)}"
            f" (roles: {', '.join(str(r) for r in s.roles) or 'none'})"
        )
        # A failed probe's words are in the problem line below.
        reach = "yes" if check.reachable else "no"
        reach += f" ({check.probe.detail})" if check.probe.ok else ""
        lines.append(f"         reachable:   {reach}")
        lines.append(f"         model:       {_model_line(check)}")
        lines.append(f"         API key:     {_key_line(check)}")
        lines.append(f"         first token: {_latency_line(check)}")
        lines.extend(f"         problem:     {problem}" for problem in check.problems())
    lines += ["", verdict(checks)[1], "", f"Workspace: {workspace.path} ({workspace.found_by})"]
    lines.append("Configuration files, in order (later wins):")
    for source in result.sources:
        if source.path is not None:
            state = f"error: {source.error}" if source.state == "error" else source.state
            lines.append(f"  {source.label:<15} {source.path}: {state}")
    if result.errors:
        lines += ["", "Configuration problems (these keys use their defaults):"]
        lines.extend(f"  - {error}" for error in result.errors)
    lines += ["", "Effective configuration (secrets masked):", ""]
    lines.append(to_toml(_toml_view(view)).rstrip("\n"))
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


def _source_json(source: ConfigSource) -> dict[str, Any]:
    return {
        "source": source.label,
        "path": str(source.path) if source.path is not None else None,
        "state": source.state,
        "error": source.error,
    }


def _provider_json(check: ProviderCheck) -> dict[str, Any]:
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
        "total_ms": _rounded(check.total_ms),
        "latency_note": check.latency_error or check.latency_note or None,
        "problems": check.problems(),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def mask_secrets(text: str, keys: Sequence[str]) -> str:
    """``text`` with each key masked (``providers.http.mask_key``), and with every key-like
    run that starts like one of them masked too: servers echo keys half-masked, such as
    OpenAI's ``sk-proj-****abcd``, and even a prefix of a key must not be printed."""
    for key in keys:
        text = mask_key(text, key)
        if len(key) >= 8:
            text = re.sub(re.escape(key[:4]) + r"[\w\-*.]*", "***", text)
    return text


def _keys_in(providers: Sequence[ProviderSettings], env: Mapping[str, str]) -> list[str]:
    """The keys of the configured providers that the environment holds."""
    values = [env.get(p.api_key_env) for p in providers if p.api_key_env]
    return [value for value in values if value]


def run_doctor(
    *,
    config_path: Path | None,
    cwd: Path,
    workspace: Path | None = None,
    as_json: bool = False,
    env: Mapping[str, str] = os.environ,
) -> int:
    """Check, print, and return the exit code (0 can serve, 1 cannot)."""
    where = locate_workspace(cwd, workspace)
    result = load_settings(workspace_root=where.path, config_path=config_path, env=env)
    checks = asyncio.run(_check_all(result.settings.providers, env))
    view = describe(result.settings, env)
    keys = _keys_in(result.settings.providers, env)
    state, line = verdict(checks)
    if as_json:
        problems = [str(e) for e in result.errors] + [
            f"{c.settings.name}: {p}" for c in checks for p in c.problems()
        ]
        report = {
            "verdict": state,
            "summary": line,
            "workspace": {"path": str(where.path), "found_by": where.found_by},
            "config_files": [_source_json(s) for s in result.sources if s.path is not None],
            "providers": [_provider_json(c) for c in checks],
            "settings": view,
            "problems": problems,
        }
        print(mask_secrets(json.dumps(report, indent=2), keys))
    else:
        print(mask_secrets("\n".join(_text(checks, where, result, view)), keys))
    return 0 if state != "not ready" else 1
