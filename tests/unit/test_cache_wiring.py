"""How the composition root builds the cache from settings: the prefetch default (local
providers only), what goes into keys, where the disk file lives, and turning levels off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from crucible.app import App
from crucible.config.settings import ProviderKind, ProviderSettings
from crucible.providers.registry import identity, is_local


@pytest.mark.parametrize(
    ("base_url", "local"),
    [
        ("http://127.0.0.1:11434", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8000/v1", True),
        ("http://127.0.0.2:8000", True),
        ("https://api.openai.com/v1", False),
        ("http://192.168.1.20:11434", False),  # a shared GPU box on the LAN is not "free"
        ("https://codestral.mistral.ai/v1", False),
    ],
)
def test_local_means_a_loopback_address(base_url: str, local: bool) -> None:
    assert is_local(ProviderSettings(base_url=base_url)) is local


def test_identity_changes_with_everything_that_changes_an_answer() -> None:
    base = ProviderSettings()
    variants = [
        ProviderSettings(model="another-model"),
        ProviderSettings(base_url="http://127.0.0.1:9999"),
        ProviderSettings(kind=ProviderKind.OPENAI, base_url=base.base_url),
        ProviderSettings(fim_template="qwen"),
    ]
    assert len({identity(base), *(identity(v) for v in variants)}) == 1 + len(variants)
    # Knobs that do not change the text do not change the key, nor does the user's own label
    # for the provider (teammates naming one model differently share its answers in L3).
    assert identity(ProviderSettings(max_connections=9, priority=3)) == identity(base)
    assert identity(ProviderSettings(name="other")) == identity(base)


def app_with(tmp_path: Path, toml: str) -> App:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return App(config_path=config, env=env)


def test_prefetch_auto_is_on_for_a_local_provider_and_off_for_a_hosted_one(
    tmp_path: Path,
) -> None:
    local = app_with(tmp_path, '[[providers]]\nbase_url = "http://127.0.0.1:11434"\n')
    hosted = app_with(
        tmp_path,
        '[[providers]]\nkind = "openai"\nbase_url = "https://api.openai.com/v1"\n'
        'model = "gpt-4o-mini"\n',
    )
    forced = app_with(
        tmp_path,
        '[[providers]]\nkind = "openai"\nbase_url = "https://api.openai.com/v1"\n'
        '[cache]\nprefetch = "on"\n',
    )
    off = app_with(tmp_path, '[cache]\nprefetch = "off"\n')
    assert local.status()["scheduling"]["prefetch"] is True
    assert hosted.status()["scheduling"]["prefetch"] is False
    assert forced.status()["scheduling"]["prefetch"] is True
    assert off.status()["scheduling"]["prefetch"] is False


def test_the_disk_file_defaults_under_xdg_cache_home_and_can_be_moved(tmp_path: Path) -> None:
    default = app_with(tmp_path, "")
    moved = app_with(tmp_path, f'[cache]\ndisk_path = "{tmp_path / "elsewhere.db"}"\n')
    assert default.cache is not None and moved.cache is not None
    assert default.status()["cache"]["levels"]["l2"]["path"] == str(
        tmp_path / "cache" / "crucible" / "completions.sqlite3"
    )
    assert moved.status()["cache"]["levels"]["l2"]["path"] == str(tmp_path / "elsewhere.db")


def test_levels_can_be_turned_off(tmp_path: Path) -> None:
    no_disk = app_with(tmp_path, "[cache]\ndisk = false\n")
    no_cache = app_with(tmp_path, "[cache]\nenabled = false\n")
    assert no_disk.status()["cache"]["levels"]["l2"]["enabled"] is False
    assert no_disk.status()["cache"]["enabled"] is True
    assert no_cache.cache is None
    assert no_cache.status()["cache"]["enabled"] is False
    assert no_cache.status()["scheduling"]["prefetch"] is False


def test_nothing_needs_a_loop_before_start_and_start_runs_what_waited_for_it(
    tmp_path: Path,
) -> None:
    """Built and configured before any event loop exists (as the process does); ``start`` on
    the serving loop opens the disk cache and closes what the configuration replaced."""
    app = app_with(tmp_path, "")
    replaced_provider = next(iter(app._providers.values()))
    replaced_cache = app.cache
    other = {"name": "other", "kind": "ollama", "base_url": "http://127.0.0.1:9"}
    app.initialize(str(tmp_path), {"providers": [other], "cache": {"memory_mb": 2}})
    assert app.cache is not replaced_cache and not app.started
    assert app.status()["cache"]["levels"]["l2"]["enabled"] is False  # not opened yet
    assert not replaced_provider._client.is_closed  # waits for the loop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await app.start()
        await app.start()  # once
        assert app.started and app._tasks is not None and app._tasks._loop is loop
        assert app.cache is not None
        await app.cache.open()  # the opening start() began
        assert app.status()["cache"]["levels"]["l2"]["enabled"] is True
        await asyncio.sleep(0)  # the closes run in the background
        assert replaced_provider._client.is_closed
        await app.aclose()

    asyncio.run(serve())


def test_an_app_that_never_started_closes_what_waited_in_aclose(tmp_path: Path) -> None:
    app = app_with(tmp_path, "")
    replaced_provider = next(iter(app._providers.values()))
    other = {"name": "other", "kind": "ollama", "base_url": "http://127.0.0.1:9"}
    app.initialize(str(tmp_path), {"providers": [other]})
    asyncio.run(app.aclose())
    assert replaced_provider._client.is_closed and not app.started
