"""The composition root: builds every component from Settings and wires them together.

``App`` is the LSP layer's ``Backend``. It owns the configuration sources (files, the editor's
initializationOptions, its later settings) and rebuilds what a change affects: providers whose
settings did not change keep their connection pools; the others are replaced and the old ones
closed in the background.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import crucible
from crucible.completion.service import CompletionService
from crucible.config.loader import LoadResult, load_settings
from crucible.config.settings import ProviderSettings, Role, Settings
from crucible.lsp.handlers import register_all
from crucible.lsp.server import CrucibleLanguageServer
from crucible.providers.base import Provider
from crucible.providers.openai import OpenAIProvider
from crucible.providers.registry import create_provider, ordered_for_role
from crucible.runtime.memory import rss_mb
from crucible.runtime.tasks import BackgroundTasks
from crucible.runtime.telemetry import Telemetry

logger = logging.getLogger(__name__)


class App:
    """Settings -> components; the LSP layer reaches everything through this object."""

    def __init__(self, *, config_path: Path | None = None, env: Mapping[str, str] = os.environ):
        self._config_path = config_path
        self._env = env
        self._workspace_root: Path | None = None
        self._init_options: object = None
        self._client_settings: object = None
        self.telemetry = Telemetry()
        self._tasks = BackgroundTasks()
        self._providers: dict[ProviderSettings, Provider] = {}
        self.settings = Settings()
        self.completion = CompletionService(self.settings.completion, (), self.telemetry)
        self._apply(self._load())

    # -- configuration ---------------------------------------------------------------------

    def initialize(self, workspace_root: str | None, init_options: object) -> list[str]:
        self._workspace_root = Path(workspace_root) if workspace_root else None
        self._init_options = init_options
        return self._apply(self._load())

    def change_configuration(self, client_settings: object) -> list[str]:
        self._client_settings = client_settings
        return self._apply(self._load())

    def _load(self) -> LoadResult:
        return load_settings(
            workspace_root=self._workspace_root,
            config_path=self._config_path,
            initialization_options=self._init_options,
            client_settings=self._client_settings,
            env=self._env,
        )

    def _apply(self, result: LoadResult) -> list[str]:
        self.settings = result.settings
        wanted = result.settings.providers
        stale = [p for s, p in self._providers.items() if s not in wanted]
        self._providers = {s: self._providers.get(s) or self._create(s) for s in wanted}
        for provider in stale:
            self._close_later(provider)
        completion_providers = [
            self._providers[s] for s in ordered_for_role(wanted, Role.COMPLETION)
        ]
        self.completion.reconfigure(result.settings.completion, completion_providers)
        logger.info(
            "configuration applied: completion providers %s",
            [p.name for p in completion_providers] or "none",
        )
        return [str(error) for error in result.errors]

    def _create(self, settings: ProviderSettings) -> Provider:
        provider = create_provider(settings)
        if isinstance(provider, OpenAIProvider):
            # Counted here, not on the provider: a configuration change replaces providers,
            # but the server's counters live as long as the server.
            provider.on_batch = self._count_batch
        return provider

    def _count_batch(self, waits_ms: tuple[float, ...]) -> None:
        for waited in waits_ms:
            self.telemetry.stage("queue", waited)
        if len(waits_ms) > 1:
            self.telemetry.mark("batched", len(waits_ms))

    def _close_later(self, provider: Provider) -> None:
        try:
            self._tasks.spawn(provider.aclose(), name=f"close {provider.name}")
        except RuntimeError:  # no running loop (start-up): nothing can be open yet
            pass

    # -- status and lifetime ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        telemetry = self.telemetry.snapshot()
        return {
            "version": crucible.__version__,
            **telemetry,
            "scheduling": self.completion.scheduling_snapshot(),
            # Filled by the response cache (a later issue); honest zeros until it exists.
            "cache": {
                "enabled": False,
                "hits": 0,
                "misses": 0,
                "levels": {"l1": {"entries": 0, "bytes": 0}, "l2": {"entries": 0, "bytes": 0}},
            },
            "providers": [
                {
                    "name": s.name,
                    "kind": str(s.kind),
                    "model": s.model,
                    "roles": [str(r) for r in s.roles],
                    # No circuit breaker yet (provider pool issue): every provider is in use.
                    "state": "closed",
                    **self.telemetry.provider_snapshot(s.name),
                }
                for s in self.settings.providers
            ],
            # Limits and pressure come with the memory supervisor; RSS is real now.
            "memory": {
                "rss_mb": rss_mb(),
                "soft_limit_mb": None,
                "hard_limit_mb": None,
                "pressure": "none",
            },
        }

    async def aclose(self) -> None:
        providers = list(self._providers.values())
        self._providers = {}
        for provider in providers:
            await provider.aclose()
        await self._tasks.aclose()


def build_server(app: App) -> CrucibleLanguageServer:
    server = CrucibleLanguageServer(app)
    register_all(server)
    return server
