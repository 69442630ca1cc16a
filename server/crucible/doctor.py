"""``crucible-lsp doctor``: the effective configuration and whether each provider answers.

Prints to stdout (this is a command for people, not the protocol). Exits 0 when at least one
provider answered, 1 when none did, so scripts can use it as a health check.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from crucible.config.loader import describe, load_settings
from crucible.config.settings import ProviderSettings
from crucible.providers.base import ProbeResult
from crucible.providers.errors import ProviderError
from crucible.providers.registry import create_provider

_PROBE_TIMEOUT_S = 5.0


async def _probe(settings: ProviderSettings) -> ProbeResult:
    provider = create_provider(settings)
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            return await provider.probe()
    except TimeoutError:
        return ProbeResult(False, f"no answer within {_PROBE_TIMEOUT_S:.0f} s")
    except ProviderError as exc:
        return ProbeResult(False, exc.message)
    finally:
        await provider.aclose()


async def _probe_all(providers: tuple[ProviderSettings, ...]) -> list[ProbeResult]:
    return list(await asyncio.gather(*(_probe(p) for p in providers)))


def run_doctor(*, config_path: Path | None, workspace_root: Path | None) -> int:
    result = load_settings(workspace_root=workspace_root, config_path=config_path)
    print("Effective configuration (secrets masked):")
    print(json.dumps(describe(result.settings, os.environ), indent=2))
    if result.errors:
        print("\nConfiguration problems (these keys use their defaults):")
        for error in result.errors:
            print(f"  - {error}")
    print("\nProviders:")
    probes = asyncio.run(_probe_all(result.settings.providers))
    for settings, probe in zip(result.settings.providers, probes, strict=True):
        mark = "ok  " if probe.ok else "FAIL"
        print(f"  [{mark}] {settings.name} ({settings.kind}, {settings.model}): {probe.detail}")
    answered = sum(probe.ok for probe in probes)
    print(f"\n{answered} of {len(probes)} providers answered.")
    return 0 if answered else 1
