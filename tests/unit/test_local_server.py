"""The local kind's pure parts and its failures before any process runs: sizing from the
machine, the restart backoff, a missing model or extra (said in words to act on, then backed
off), the provider's settings (a cache identity per model file), and configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.config import ProviderKind, ProviderSettings, build_settings
from crucible.local import process
from crucible.local.process import (
    Launch,
    LaunchSpec,
    LocalServerError,
    ManagedLlamaServer,
    restart_delay,
)
from crucible.local.sizing import ServerSize, auto_ctx_size, auto_threads, server_size
from crucible.providers.base import FimRequest
from crucible.providers.errors import ProviderUnavailable
from crucible.providers.local import LocalProvider, _LaunchedLlamaCpp
from crucible.providers.registry import create_provider, identity

GIB = 1024**3


@pytest.mark.parametrize(
    ("cpus", "threads"), [(1, 1), (2, 1), (3, 2), (4, 2), (8, 4), (12, 6), (16, 8), (64, 8)]
)
def test_threads_leave_the_editor_a_core_and_stay_near_the_physical_cores(
    cpus: int, threads: int
) -> None:
    assert auto_threads(cpus) == threads


@pytest.mark.parametrize(
    ("memory", "ctx"),
    [(2 * GIB, 2048), (4 * GIB, 4096), (7 * GIB, 4096), (8 * GIB, 8192), (None, 8192)],
)
def test_context_follows_the_memory(memory: int | None, ctx: int) -> None:
    assert auto_ctx_size(memory) == ctx


def test_configured_sizes_override_the_machines_choice() -> None:
    assert server_size(0, 0, cpus=8, memory_bytes=16 * GIB) == ServerSize(4, 8192)
    assert server_size(3, 1024, cpus=8, memory_bytes=16 * GIB) == ServerSize(3, 1024)


def test_restarts_back_off_after_the_first_crash() -> None:
    assert [restart_delay(n) for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def never_ready(launch: Launch) -> bool:
    raise AssertionError("no process should have been started")


def managed(tmp_path: Path, clock: Clock, model: str = "missing.gguf") -> ManagedLlamaServer:
    spec = LaunchSpec(tmp_path / model, ServerSize(1, 2048), idle_stop_s=0)
    return ManagedLlamaServer("mine", spec, never_ready, clock=clock)


async def test_a_missing_model_is_named_and_retried_only_after_the_backoff(
    tmp_path: Path,
) -> None:
    clock = Clock()
    server = managed(tmp_path, clock)
    assert server.state == "stopped"
    with pytest.raises(LocalServerError, match=r"missing\.gguf: no such file"):
        await server.ensure()
    with pytest.raises(LocalServerError, match="no such file"):
        await server.ensure()  # the first failure is retried at once
    with pytest.raises(LocalServerError, match="in 1 s"):
        await server.ensure()  # the second waits out 1 s
    assert server.state == "backoff"
    clock.now += 1.0
    with pytest.raises(LocalServerError, match="no such file"):
        await server.ensure()
    assert server.snapshot()["starts"] == 0 and server.snapshot()["state"] == "backoff"
    await server.aclose()


async def test_without_the_extra_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "extra_installed", lambda: False)
    server = managed(tmp_path, Clock())
    with pytest.raises(LocalServerError, match=r"pip install 'crucible-lsp\[local\]'"):
        await server.ensure()
    assert server.state == "failed"
    await server.aclose()


async def test_the_provider_reports_a_server_it_cannot_start_as_unavailable(
    tmp_path: Path,
) -> None:
    settings = ProviderSettings(
        name="mine", kind=ProviderKind.LOCAL, model_path=str(tmp_path / "none.gguf")
    )
    provider = create_provider(settings)
    assert isinstance(provider, LocalProvider)
    assert provider.status()["state"] == "stopped"  # building it started nothing
    request = FimRequest(prefix="a", suffix="", language_id="python", path="a.py")
    with pytest.raises(ProviderUnavailable, match="no such file"):
        async for _ in provider.stream_fim(request):
            pass
    probe = await provider.probe()
    assert not probe.ok and "no such file" in probe.detail
    await provider.aclose()


def test_each_launch_is_asked_with_its_own_key() -> None:
    settings = ProviderSettings(name="mine", kind=ProviderKind.LLAMACPP, api_key_env=None)
    client = _LaunchedLlamaCpp(settings, "launch-key")
    assert client._headers() == {"Authorization": "Bearer launch-key"}


def test_the_model_file_is_part_of_the_cache_identity() -> None:
    one = ProviderSettings(kind=ProviderKind.LOCAL, model_path="/m/a.gguf")
    other = ProviderSettings(kind=ProviderKind.LOCAL, model_path="/m/b.gguf")
    assert identity(one) != identity(other)
    # Other kinds have no model file in theirs.
    ollama = ProviderSettings()
    assert identity(ollama) == ("ollama", ollama.base_url, ollama.model, "auto")


def test_the_local_keys_are_validated() -> None:
    table = {
        "providers": [
            {
                "kind": "local",
                "model_path": "~/m.gguf",
                "threads": 2,
                "ctx_size": 4096,
                "idle_stop_s": 60,
            },
            {"name": "bad", "kind": "local", "threads": -1, "idle_stop_s": "soon"},
        ]
    }
    result = build_settings(table)
    good, bad = result.settings.providers
    assert (good.kind, good.model_path, good.threads, good.ctx_size, good.idle_stop_s) == (
        ProviderKind.LOCAL,
        "~/m.gguf",
        2,
        4096,
        60,
    )
    assert (bad.threads, bad.idle_stop_s) == (0, 900)
    assert sorted(e.key for e in result.errors) == [
        "providers[1].idle_stop_s",
        "providers[1].threads",
    ]
