"""What doctor finds out about each provider, in words a user can act on, and the verdict.

Checks run for all providers at once, each with its own connection pool: ``probe()`` (5 s),
then, when it passed and a key is there if one is needed, ONE tiny real completion through
the provider's own ``stream_fim`` (4 tokens, greedy), timed to its first chunk and its end.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path

from crucible.config.loader import WORKSPACE_MARKERS, find_workspace_root
from crucible.config.settings import ProviderKind, ProviderSettings, Role
from crucible.config.validate import mask_url
from crucible.providers.base import FimRequest, ProbeResult, Provider
from crucible.providers.errors import ProviderError
from crucible.providers.http_provider import HttpProvider
from crucible.providers.local import LocalProvider
from crucible.providers.registry import create_provider

_PROBE_TIMEOUT_S = 5.0
# The local kind's probe starts its server: loading a 1.5 B model from a cold disk takes
# seconds (local/process.py gives a start 120 s).
_LOCAL_PROBE_TIMEOUT_S = 120.0
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
_NO_FIM = (
    "the model cannot fill in the middle, so suggestions only continue the code before the"
    " cursor; use a code model with FIM tokens (e.g. a Qwen2.5-Coder base model)"
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
    notices: tuple[str, ...] = ()  # degradations the provider worked around (no FIM)
    slow_after_ms: float | None = None  # the failover cut-off: a first token past it is slow

    @property
    def slow(self) -> bool:
        first, cut_off = self.first_token_ms, self.slow_after_ms
        return first is not None and cut_off is not None and first > cut_off

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
        found.extend(self.notices)
        return found


# -- checking --------------------------------------------------------------------------------


async def _check(
    settings: ProviderSettings, env: Mapping[str, str], slow_after_ms: float | None
) -> ProviderCheck:
    named = settings.api_key_env
    key_present = bool(env.get(named)) if named else None
    needed = named is not None or settings.kind in _KEYED_KINDS
    provider = create_provider(settings)
    notices: list[str] = []
    if isinstance(provider, HttpProvider | LocalProvider):
        # e.g. a model without fill-in-the-middle: the test completion falls back and works,
        # but the user should hear why suggestions will be worse.
        provider.on_notice = lambda error: notices.append(error.message)
    try:
        local = settings.kind is ProviderKind.LOCAL
        probe_timeout_s = _LOCAL_PROBE_TIMEOUT_S if local else _PROBE_TIMEOUT_S
        try:
            async with asyncio.timeout(probe_timeout_s):
                probe = await provider.probe()
        except TimeoutError:
            probe = ProbeResult(False, f"no answer within {probe_timeout_s:.0f} s")
        except ProviderError as exc:
            probe = ProbeResult(False, exc.message)
        check = ProviderCheck(settings, probe, needed, key_present, slow_after_ms=slow_after_ms)
        if Role.COMPLETION not in settings.roles:
            return replace(check, latency_note="not measured: not a completion provider")
        if not probe.ok:
            return replace(check, latency_note="not measured: the probe failed")
        if not check.key_ok:
            return replace(check, latency_note="not measured: no API key")
        measured = await _measure(check, provider)
        return replace(measured, notices=tuple(f"{n}: {_NO_FIM}" for n in notices))
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


async def check_all(
    providers: Sequence[ProviderSettings],
    env: Mapping[str, str],
    slow_after_ms: float | None = None,
) -> list[ProviderCheck]:
    """``slow_after_ms``: the failover cut-off (``resilience.first_byte_timeout_ms``)."""
    return list(await asyncio.gather(*(_check(p, env, slow_after_ms) for p in providers)))


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
