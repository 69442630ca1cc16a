"""The ``local`` kind: a llama.cpp server Crucible runs itself, spoken to as ``llamacpp``.

``LocalProvider`` owns a ``ManagedLlamaServer`` (``local/process.py``: lazy start, idle stop,
crash restart, parent-death protection) and, for each launch of it, a ``LlamaCppProvider``
pointed at that launch: its root (the port changes at every launch) and its per-launch API
key, sent by ``_headers`` as every ``HttpProvider`` sends its key. So FIM goes through the
server's native ``/infill`` with neighbour files (``input_extra``) and ``cache_prompt``, and
streaming, early stop and cancellation are ``llamacpp``'s own: there is no second client.

Every request first awaits the server (``ensure``): the first one starts it, and waits for it
within its own deadline (the start goes on if the request gives up). While a stream is open
the server is held, so the idle stop never cuts one.

Errors: ``LocalServerError`` becomes ``ProviderUnavailable`` (the pool fails over, or the
answer is empty with a log line); the rest are ``llamacpp``'s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any

from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.local.models import UnknownModel, model_source
from crucible.local.process import Launch, LaunchSpec, LocalServerError, ManagedLlamaServer
from crucible.local.sizing import machine_cpus, machine_memory_bytes, server_size
from crucible.providers.base import ChatRequest, FimRequest, ProbeResult
from crucible.providers.errors import ProviderError, ProviderUnavailable
from crucible.providers.llamacpp import LlamaCppProvider


class _LaunchedLlamaCpp(LlamaCppProvider):
    """``llamacpp`` for one launch of the managed server: its key on every request."""

    def __init__(self, settings: ProviderSettings, api_key: str) -> None:
        super().__init__(settings)
        self._api_key = api_key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}


def launch_spec(settings: ProviderSettings) -> LaunchSpec:
    """How ``settings`` runs the server on this machine (threads and context chosen here
    when the settings leave them at 0)."""
    size = server_size(
        settings.threads,
        settings.ctx_size,
        cpus=machine_cpus(),
        memory_bytes=machine_memory_bytes(),
    )
    try:
        source = model_source(settings)
    except UnknownModel as exc:  # the file cannot exist: the start says so, with the names
        return LaunchSpec(Path(settings.model), size, settings.idle_stop_s, missing_hint=str(exc))
    hint = (
        ""
        if not source.url
        else f"download it with `crucible-lsp models pull {_pull_arg(settings)}`"
    )
    return LaunchSpec(source.path, size, float(settings.idle_stop_s), missing_hint=hint)


def _pull_arg(settings: ProviderSettings) -> str:
    if settings.model_url:
        sha = f" --sha256 {settings.sha256}" if settings.sha256 else " --no-verify"
        return f"{settings.model_url}{sha}"
    return settings.model


class LocalProvider:
    """A ``local`` provider: the managed server, reached through ``llamacpp``."""

    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings
        self.server = ManagedLlamaServer(settings.name, launch_spec(settings), self._ready)
        self._launch: Launch | None = None
        self._client: LlamaCppProvider | None = None
        self._retired: list[LlamaCppProvider] = []  # clients of earlier launches, to close
        # Told of a degradation worked around (a model without FIM tokens); set by App.
        self.on_notice: Callable[[ProviderError], None] | None = None

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def model(self) -> str:
        return self._settings.model

    def stream_fim(self, request: FimRequest) -> AsyncGenerator[str, None]:
        return self._held(lambda client: client.stream_fim(request))

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[str, None]:
        return self._held(lambda client: client.stream_chat(request))

    async def probe(self) -> ProbeResult:
        """Starts the server if need be (doctor sees the start-up time), then its ``/health``."""
        self.server.hold()
        try:
            client = await self._running()
            result = await client.probe()
        except ProviderError as exc:
            missing = "no such file" in exc.message
            return ProbeResult(False, exc.message, model_present=False if missing else None)
        finally:
            self.server.release()
        state = self.server.snapshot()
        rss = f", RSS {state['rss_mb']:.0f} MB" if state["rss_mb"] is not None else ""
        detail = (
            f"{result.detail}; the local llama.cpp server started in {state['last_start_s']} s"
            f" (pid {state['pid']}, threads {state['threads']}, ctx {state['ctx_size']}{rss})"
        )
        return ProbeResult(result.ok, detail, model_present=True)

    async def aclose(self) -> None:
        await self.server.aclose()
        clients = [*self._retired, *([self._client] if self._client else [])]
        self._retired, self._client = [], None
        for client in clients:
            await client.aclose()

    def status(self) -> dict[str, Any]:
        """The managed server's health and timings, for ``crucible/status``."""
        return self.server.snapshot()

    async def _held(
        self, stream: Callable[[LlamaCppProvider], AsyncGenerator[str, None]]
    ) -> AsyncGenerator[str, None]:
        self.server.hold()
        try:
            client = await self._running()
            async with aclosing(stream(client)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self.server.release()

    async def _running(self) -> LlamaCppProvider:
        try:
            launch = await self.server.ensure()
        except LocalServerError as exc:
            raise ProviderUnavailable(self.name, str(exc)) from exc
        client = self._client_for(launch)
        while self._retired:
            await self._retired.pop().aclose()
        return client

    def _client_for(self, launch: Launch) -> LlamaCppProvider:
        if self._client is None or self._launch != launch:
            if self._client is not None:
                self._retired.append(self._client)
            settings = replace(
                self._settings,
                kind=ProviderKind.LLAMACPP,
                base_url=launch.root,
                api_key_env=None,
                model=self.server.spec.model_path.name,
            )
            self._client, self._launch = _LaunchedLlamaCpp(settings, launch.api_key), launch
            self._client.on_notice = self._notice
        return self._client

    async def _ready(self, launch: Launch) -> bool:
        return (await self._client_for(launch).probe()).ok

    def _notice(self, error: ProviderError) -> None:
        if self.on_notice is not None:
            self.on_notice(error)
