"""A hostile repository's crucible.toml gets nothing: no request to a host the user did not
configure, no environment variable sent anywhere, no limit raised, no file written elsewhere.

The decision itself (``config/trust.py``) is tested as pure logic first; then the real server
runs with the user's provider on one loopback fake and the "attacker" on another, and the
attacker must see no request at all, whatever variant of the attack the file tries. Last, a
file at the disk-cache path that is not Crucible's is left byte for byte as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from crucible.cache.disk import DiskCache
from crucible.config import load_settings
from crucible.config.settings import (
    CacheSettings,
    CompletionSettings,
    PrivacySettings,
    ProviderSettings,
    ResilienceSettings,
    Settings,
)
from crucible.config.trust import (
    ALLOWED,
    PATH_KEYS,
    Screened,
    WorkspaceTrust,
    decide_trust,
    screen_workspace,
)
from tests.e2e.conftest import Editor, Session, end_of, inline, open_document, server_status
from tests.fakes.provider import FakeProvider

TEXT = "def add(a, b):\n    "
MODEL = "qwen2.5-coder:1.5b-base"
SECRET = "hunter2-not-a-key-but-a-secret-0123456789"
UNTRUSTED = WorkspaceTrust(False, "not listed")
TRUSTED = WorkspaceTrust(True, "listed")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a TOML basic string


# -- the pure decision -------------------------------------------------------------------------


def screen(
    table: dict[str, Any],
    user: Settings | None = None,
    trust: WorkspaceTrust = UNTRUSTED,
    cache_dir: Path = Path("/nonexistent/cache/crucible"),
) -> Screened:
    return screen_workspace(table, user or Settings(), trust, cache_dir)


def refused_keys(screened: Screened) -> list[str]:
    return [r.key for r in screened.refused]


def test_a_workspace_may_only_add_exclusions_and_never_turn_redaction_off() -> None:
    user = dataclasses.replace(Settings(), privacy=PrivacySettings(exclude=("secrets/**",)))
    screened = screen({"privacy": {"exclude": ["fixtures/*.json"], "redact": False}}, user)
    assert screened.table == {"privacy": {"exclude": ["secrets/**", "fixtures/*.json"]}}
    assert refused_keys(screened) == ["privacy.redact"]


def test_every_allow_listed_key_exists_in_the_schema() -> None:
    sections = {
        "completion": CompletionSettings,
        "cache": CacheSettings,
        "privacy": PrivacySettings,
    }
    for section, name in ALLOWED:
        assert name in {f.name for f in dataclasses.fields(sections[section])}, (section, name)
    assert not PATH_KEYS & set(ALLOWED)


SCHEMA_SECTIONS = {
    "completion": CompletionSettings,
    "cache": CacheSettings,
    "resilience": ResilienceSettings,
    "privacy": PrivacySettings,
}


@pytest.mark.parametrize(
    ("section", "name"),
    [
        pytest.param(section, f.name, id=f"{section}.{f.name}")
        for section, cls in SCHEMA_SECTIONS.items()
        for f in dataclasses.fields(cls)
        if (section, f.name) not in ALLOWED
    ],
)
def test_deny_by_default_every_other_key_is_refused_even_at_its_default(
    section: str, name: str
) -> None:
    """A key not on the list is refused whatever its value, so a key added to the schema
    later is refused until someone decides it is safe."""
    default = getattr(getattr(Settings(), section), name)
    value = default.value if hasattr(default, "value") else default
    screened = screen({section: {name: value}})
    assert refused_keys(screened) == [f"{section}.{name}"]
    assert screened.table == {}


@pytest.mark.parametrize(
    "table",
    [
        pytest.param({"providers": [{"name": "x", "base_url": "http://evil"}]}, id="providers"),
        pytest.param({"trust_workspace_config": True}, id="trust-flag"),
        pytest.param({"trusted_workspaces": ["/"]}, id="trust-list"),
        pytest.param({"completion": 3}, id="section-not-a-table"),
    ],
)
def test_top_level_keys_that_redirect_or_trust_are_refused(table: dict[str, Any]) -> None:
    screened = screen(table)
    assert refused_keys(screened) == list(table)
    assert screened.table == {}


@pytest.mark.parametrize(
    ("key", "user", "workspace", "applies"),
    [
        # Lower-only: more of it costs more, or sends more code.
        ("completion.max_tokens", 160, 64, True),
        ("completion.max_tokens", 160, 160, True),
        ("completion.max_tokens", 160, 161, False),
        ("completion.max_tokens", 100, 160, False),  # judged against the user's, not the default
        ("completion.alternatives", 1, 3, False),
        ("completion.timeout_ms", 4000, 120_000, False),
        ("completion.timeout_ms", 4000, 1000, True),
        ("completion.max_prefix_chars", 6000, 200_000, False),
        ("completion.max_prefix_chars", 6000, 1000, True),
        ("completion.max_suffix_chars", 2000, 50_000, False),
        ("completion.neighbour_files", 3, 32, False),
        ("completion.neighbour_chars", 1200, 800, True),
        ("completion.max_lines", 16, 100, False),
        ("completion.max_lines", 16, 1, True),
        ("completion.enabled", True, False, True),
        ("completion.enabled", False, True, False),  # the user turned it off
        ("completion.completion_items", "auto", "on", False),
        ("completion.completion_items", "auto", False, True),
        ("cache.prefetch", "off", "on", False),
        ("cache.prefetch", "off", "auto", False),
        ("cache.prefetch", "auto", "on", False),
        ("cache.prefetch", "on", "off", True),
        # Not below: a shorter wait after a keystroke means more provider calls.
        ("completion.debounce_ms", 150, 300, True),
        ("completion.debounce_ms", 150, 0, False),
        ("completion.debounce_min_ms", 40, 10, False),
        ("completion.debounce_max_ms", 600, 100, False),
        # Any value: how a suggestion looks, at no cost of its own.
        ("completion.multiline", "auto", "always", True),
        ("completion.temperature", 0.2, 1.5, True),
        ("completion.debounce_mode", "adaptive", "fixed", True),
    ],
)
def test_limits_a_workspace_may_only_move_the_cheap_way(
    key: str, user: Any, workspace: Any, applies: bool
) -> None:
    section, name = key.split(".")
    mine = load_settings(initialization_options={section: {name: user}}, env={}).settings
    screened = screen({section: {name: workspace}}, mine)
    assert (screened.table == {section: {name: workspace}}) is applies
    assert refused_keys(screened) == ([] if applies else [key])
    assert screened.errors == ()


def test_a_refusal_says_what_the_users_value_is() -> None:
    mine = load_settings(initialization_options={"completion": {"max_tokens": 100}}, env={})
    (refusal,) = screen({"completion": {"max_tokens": 4000}}, mine.settings).refused
    assert refusal.reason == "4000 is above your 100: a workspace may only lower it"


@pytest.mark.parametrize("bad", ["lots", 99_999, -1, True, [1]])
def test_an_invalid_value_for_a_guarded_key_keeps_the_users_value_not_the_default(
    tmp_path: Path, bad: Any
) -> None:
    """Validation alone falls back to the default (160), which is above the user's 100."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    write(tmp_path / "xdg" / "crucible" / "config.toml", "[completion]\nmax_tokens = 100\n")
    write(tmp_path / "ws" / "crucible.toml", f"[completion]\nmax_tokens = {json.dumps(bad)}\n")
    result = load_settings(workspace_root=tmp_path / "ws", env=env)
    assert result.settings.completion.max_tokens == 100
    assert [e.key for e in result.errors] == ["completion.max_tokens"]
    assert "workspace file" in result.errors[0].message


def test_unknown_keys_pass_to_validation_which_names_and_ignores_them(tmp_path: Path) -> None:
    write(tmp_path / "ws" / "crucible.toml", "[completion]\ndebounce_msx = 5\n[colour]\nx = 1\n")
    result = load_settings(workspace_root=tmp_path / "ws", env={})
    assert sorted(e.key for e in result.errors) == ["colour", "completion.debounce_msx"]
    assert result.refused == ()
    assert result.settings == Settings()


# -- trust ---------------------------------------------------------------------------------------


def trusting(*roots: Path, everything: bool = False) -> Settings:
    return Settings(
        trust_workspace_config=everything, trusted_workspaces=tuple(str(r) for r in roots)
    )


def test_trust_follows_the_users_list_and_nothing_else(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    repo = projects / "repo"
    (repo / "sub").mkdir(parents=True)
    (projects / "repo2").mkdir()
    (tmp_path / "link").symlink_to(repo)
    assert decide_trust(trusting(repo), repo).trusted
    assert decide_trust(trusting(projects), repo / "sub").trusted  # under a listed directory
    assert decide_trust(trusting(repo), tmp_path / "link").trusted  # resolved: the same place
    assert decide_trust(trusting(tmp_path / "link"), repo).trusted
    assert decide_trust(trusting(everything=True), repo).trusted
    assert not decide_trust(trusting(repo), projects / "repo2").trusted  # a prefix is not a parent
    assert not decide_trust(trusting(repo / "sub"), repo).trusted  # nor is a child
    assert not decide_trust(trusting(), repo).trusted
    assert not decide_trust(trusting(repo), None).trusted


def test_a_trusted_workspace_may_set_anything_but_trust_and_outside_paths(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache" / "crucible"
    table = {
        "providers": [{"name": "theirs", "base_url": "http://127.0.0.1:1"}],
        "completion": {"max_tokens": 4000},
        "resilience": {"hedging": True},
        "trust_workspace_config": True,
        "trusted_workspaces": ["/"],
    }
    screened = screen(table, trust=TRUSTED, cache_dir=cache_dir)
    assert refused_keys(screened) == ["trust_workspace_config", "trusted_workspaces"]
    assert screened.table == {k: v for k, v in table.items() if not k.startswith("trust")}


def test_an_untrusted_workspace_cannot_run_a_local_model() -> None:
    """The local kind runs a process on a file: the whole providers array is the user's."""
    table = {"providers": [{"kind": "local", "model_path": "/tmp/evil.gguf"}]}
    screened = screen(table)
    assert refused_keys(screened) == ["providers"]
    assert screened.table == {}


def test_a_trusted_workspace_runs_a_local_model_only_from_crucibles_directory(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache" / "crucible"
    (cache_dir / "models").mkdir(parents=True)
    table = {
        "providers": [
            {"name": "a", "kind": "local", "model_path": str(tmp_path / "elsewhere.gguf")},
            {"name": "b", "kind": "local", "model_path": "models/m.gguf"},
            {"name": "c", "kind": "local", "model_url": "https://evil.example/m.gguf"},
        ]
    }
    screened = screen(table, trust=TRUSTED, cache_dir=cache_dir)
    assert refused_keys(screened) == ["providers[0].model_path", "providers[2].model_url"]
    first, second, third = screened.table["providers"]
    assert third == {"name": "c", "kind": "local"}
    assert first == {"name": "a", "kind": "local"}
    assert second["model_path"] == str((cache_dir / "models" / "m.gguf").resolve())


@pytest.mark.parametrize(
    ("disk_path", "inside"),
    [
        pytest.param("project.sqlite3", "project.sqlite3", id="relative-in-cache-dir"),
        pytest.param("{cache}/sub/p.sqlite3", "sub/p.sqlite3", id="absolute-in-cache-dir"),
        pytest.param("../../elsewhere.sqlite3", None, id="relative-escape"),
        pytest.param("{tmp}/elsewhere.sqlite3", None, id="absolute-elsewhere"),
        pytest.param("~/.bashrc", None, id="home"),
        pytest.param("{cache}/../crucible2/x.sqlite3", None, id="dot-dot-inside-text"),
        pytest.param("{link}/x.sqlite3", None, id="symlink-out-of-cache-dir"),
    ],
)
def test_a_trusted_workspace_places_the_cache_file_only_inside_crucibles_directory(
    tmp_path: Path, disk_path: str, inside: str | None
) -> None:
    cache_dir = tmp_path / "cache" / "crucible"
    cache_dir.mkdir(parents=True)
    (cache_dir / "link").symlink_to(tmp_path)
    value = disk_path.format(cache=cache_dir, tmp=tmp_path, link=cache_dir / "link")
    screened = screen({"cache": {"disk_path": value}}, trust=TRUSTED, cache_dir=cache_dir)
    if inside is None:
        assert refused_keys(screened) == ["cache.disk_path"]
        assert screened.table == {}
    else:
        assert screened.table == {"cache": {"disk_path": str(cache_dir.resolve() / inside)}}


@pytest.mark.parametrize(
    "disk_path", ["{tmp}/elsewhere.sqlite3", "../../elsewhere.sqlite3", "project.sqlite3"]
)
def test_an_untrusted_workspace_sets_no_path_at_all(tmp_path: Path, disk_path: str) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    value = toml_str(disk_path.format(tmp=tmp_path))
    write(tmp_path / "ws" / "crucible.toml", f"[cache]\ndisk_path = {value}\n")
    result = load_settings(workspace_root=tmp_path / "ws", env=env)
    assert result.settings.cache.disk_path == ""  # the default, in Crucible's own directory
    assert [r.key for r in result.refused] == ["cache.disk_path"]


def test_the_workspace_cannot_trust_itself(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(
        root / "crucible.toml",
        f"trust_workspace_config = true\ntrusted_workspaces = [{toml_str(root)}]\n"
        '[[providers]]\nname = "evil"\nbase_url = "http://127.0.0.1:9"\n',
    )
    result = load_settings(workspace_root=root, env={"XDG_CONFIG_HOME": str(tmp_path / "x")})
    assert result.workspace_trust == WorkspaceTrust(False, "not listed in trusted_workspaces")
    assert [r.key for r in result.refused] == [
        "trust_workspace_config",
        "trusted_workspaces",
        "providers",
    ]
    assert [p.name for p in result.settings.providers] == ["local"]
    assert (result.settings.trust_workspace_config, result.settings.trusted_workspaces) == (
        False,
        (),
    )


@pytest.mark.parametrize("how", ["user-file", "--config", "initializationOptions", "didChange"])
def test_the_users_own_configuration_trusts_a_workspace_from_any_of_its_sources(
    tmp_path: Path, how: str
) -> None:
    root = tmp_path / "ws"
    write(root / "crucible.toml", '[[providers]]\nname = "theirs"\n')
    trust = f"trusted_workspaces = [{toml_str(root)}]\n"
    user = tmp_path / "xdg" / "crucible" / "config.toml"
    config = tmp_path / "c.toml"
    if how == "user-file":
        write(user, trust)
    if how == "--config":
        write(config, trust)
    client = {"trusted_workspaces": [str(root)]}
    result = load_settings(
        workspace_root=root,
        config_path=config if how == "--config" else None,
        initialization_options=client if how == "initializationOptions" else None,
        client_settings=client if how == "didChange" else None,
        env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
    )
    assert result.workspace_trust is not None and result.workspace_trust.trusted
    assert [p.name for p in result.settings.providers] == ["theirs"]
    assert result.refused == () and result.workspace_notice is None


def test_the_notice_names_each_refused_key_once_and_how_to_trust(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    user = tmp_path / "xdg" / "crucible" / "config.toml"
    write(
        root / "crucible.toml",
        '[[providers]]\nname = "evil"\n[completion]\nmax_tokens = 4000\ndebounce_ms = 900\n'
        '[cache]\nprefetch = "on"\n[resilience]\nhedging = true\n',
    )
    result = load_settings(workspace_root=root, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    notice = result.workspace_notice
    assert notice is not None
    for key in ("providers", "completion.max_tokens", "cache.prefetch", "resilience.hedging"):
        assert notice.count(key) == 1, key
    assert "debounce_ms" not in notice  # it applied
    assert result.settings.completion.debounce_ms == 900
    assert f"trusted_workspaces = [{toml_str(root.resolve())}]" in notice
    assert str(user) in notice


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge", "directory"])
def test_a_workspace_file_that_is_no_regular_small_file_is_not_read(
    tmp_path: Path, kind: str
) -> None:
    """A repository may hold a symlink to /dev/zero (never ends) or a FIFO (blocks)."""
    root = tmp_path / "ws"
    root.mkdir()
    path = root / "crucible.toml"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_text("# padding\n" * 200_000)
    else:
        path.mkdir()
    started = time.monotonic()
    result = load_settings(workspace_root=root, env={})
    assert time.monotonic() - started < 2
    assert [e.key for e in result.errors] == [str(path)]
    assert result.settings == Settings()


# -- the real server ------------------------------------------------------------------------------


@pytest.fixture
def attacker() -> Iterator[FakeProvider]:
    """Where a hostile crucible.toml would send the code: a second loopback server."""
    with FakeProvider(model=MODEL, reply="stolen") as provider:
        yield provider


def user_config(tmp_path: Path, fake: FakeProvider, extra: str = "") -> Path:
    """The user's own file: their provider on ``fake``, no debounce, no prefetch."""
    return write(
        tmp_path / "xdg" / "crucible" / "config.toml",
        f"{extra}\n"
        f'[[providers]]\nname = "mine"\nkind = "ollama"\nbase_url = "{fake.base_url}"\n'
        f'model = "{MODEL}"\n[completion]\ndebounce_ms = 0\n[cache]\nprefetch = "off"\n',
    )


def refusals(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if "Crucible ignored settings" in m.message]


def leaked(*fakes: FakeProvider) -> list[str]:
    """Every place the secret reached: any header or body of any request to any fake."""
    found = []
    for fake in fakes:
        for request in list(fake.requests):
            if any(SECRET in v for v in request.headers.values()):
                found.append(f"{fake.base_url}{request.path} headers")
            if SECRET in json.dumps(request.body):
                found.append(f"{fake.base_url}{request.path} body")
    return found


HOSTILE = {
    "adds-a-provider": (
        '[[providers]]\nname = "attacker"\nkind = "ollama"\nbase_url = "{attacker}"\n'
        'model = "{model}"\npriority = -100\napi_key_env = "SOME_SECRET_VAR"\n',
        ["providers"],
    ),
    "same-name-new-base-url": (
        '[[providers]]\nname = "mine"\nkind = "ollama"\nbase_url = "{attacker}"\n'
        'model = "{model}"\n',
        ["providers"],
    ),
    "api-key-env-names-a-secret": (
        '[[providers]]\nname = "mine"\nkind = "openai"\nbase_url = "{attacker}/v1"\n'
        'model = "{model}"\napi_key_env = "SOME_SECRET_VAR"\n',
        ["providers"],
    ),
    "kind-changed-on-the-users-server": (
        '[[providers]]\nname = "mine"\nkind = "openai"\nbase_url = "{mine}/v1"\n'
        'model = "{model}"\napi_key_env = "SOME_SECRET_VAR"\n',
        ["providers"],
    ),
    "trusts-itself-first": (
        'trust_workspace_config = true\ntrusted_workspaces = ["{root}"]\n'
        '[[providers]]\nname = "attacker"\nbase_url = "{attacker}"\nmodel = "{model}"\n',
        ["trust_workspace_config", "trusted_workspaces", "providers"],
    ),
}


@pytest.mark.parametrize("variant", list(HOSTILE))
async def test_a_hostile_workspace_file_reaches_no_other_host_and_no_secret_leaves(
    fake: FakeProvider,
    attacker: FakeProvider,
    lsp_session: Session,
    tmp_path: Path,
    variant: str,
) -> None:
    template, named = HOSTILE[variant]
    root = tmp_path / "repo"
    user_config(tmp_path, fake)
    hostile = template.format(
        attacker=attacker.base_url, mine=fake.base_url, model=MODEL, root=root
    )
    write(root / "crucible.toml", hostile)
    async with lsp_session(None, workspace=root, env={"SOME_SECRET_VAR": SECRET}) as client:
        result = await inline(client, open_document(client, TEXT), end_of(TEXT))
        status = await server_status(client)
        told = refusals(client)

    assert [item.insert_text for item in result.items] == ["return a + b"]
    assert attacker.requests == []
    assert [r.path for r in fake.generation_requests()] == ["/api/generate"]  # the user's kind
    assert leaked(fake, attacker) == []
    assert [p["name"] for p in status["providers"]] == ["mine"]
    (message,) = told
    for key in named:
        assert key in message
    assert "trusted_workspaces = [" in message


async def test_cost_limits_are_not_raised_and_the_refusal_is_said_once(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    user_config(tmp_path, fake)
    write(
        root / "crucible.toml",
        "[completion]\nmax_tokens = 4000\nalternatives = 3\ntimeout_ms = 120000\n"
        '[cache]\nprefetch = "on"\n[resilience]\nhedging = true\nmax_concurrency = 256\n',
    )
    async with lsp_session(None, workspace=root) as client:
        editor = Editor(client, open_document(client, TEXT), TEXT)
        result = await editor.request(invoked=True)  # where alternatives would sample more
        # No prefetch follows the shown suggestion, and no second sample was asked for.
        assert not await fake.wait_for_async(lambda f: len(f.generation_requests()) > 1, 1.0)
        # A configuration change reloads the files: the same refusal is not said again.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"crucible": {"completion": {}}})
        )
        await server_status(client)
        told = refusals(client)

    assert [item.insert_text for item in result.items] == ["return a + b"]
    (request,) = fake.generation_requests()
    assert request.body["options"]["num_predict"] == 160  # the user's (default) max_tokens
    (message,) = told
    for key in (
        "completion.max_tokens",
        "completion.alternatives",
        "completion.timeout_ms",
        "cache.prefetch",
        "resilience.hedging",
        "resilience.max_concurrency",
    ):
        assert key in message


async def test_safe_keys_still_apply_from_the_workspace(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    """A longer debounce and a smaller max_tokens: the cheap direction, no message."""
    root = tmp_path / "repo"
    user_config(tmp_path, fake)
    write(
        root / "crucible.toml",
        '[completion]\ndebounce_mode = "fixed"\ndebounce_ms = 700\nmax_tokens = 50\n',
    )
    async with lsp_session(None, workspace=root) as client:
        uri = open_document(client, TEXT)
        await server_status(client)
        sent = time.monotonic()
        result = await inline(client, uri, end_of(TEXT))
        told = refusals(client)

    assert [item.insert_text for item in result.items] == ["return a + b"]
    (request,) = fake.generation_requests()
    assert request.received_at - sent >= 0.6  # waited the workspace's 700 ms, not the user's 0
    assert request.body["options"]["num_predict"] == 50
    assert told == []


@pytest.mark.parametrize("how", ["listed-root", "listed-parent", "trust-everything"])
async def test_a_workspace_the_user_trusts_gets_its_file_applied(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path, how: str
) -> None:
    root = tmp_path / "projects" / "repo"
    listed = {"listed-root": root, "listed-parent": root.parent}.get(how)
    trust = (
        f"trusted_workspaces = [{toml_str(listed)}]"
        if listed is not None
        else "trust_workspace_config = true"
    )
    with FakeProvider(model=MODEL, reply="theirs") as theirs:
        user_config(tmp_path, fake, extra=trust)
        write(
            root / "crucible.toml",
            f'[[providers]]\nname = "repo-server"\nbase_url = "{theirs.base_url}"\n'
            f'model = "{MODEL}"\n[completion]\nmax_tokens = 300\n',
        )
        async with lsp_session(None, workspace=root) as client:
            result = await inline(client, open_document(client, TEXT), end_of(TEXT))
            told = refusals(client)
        served_by_theirs = theirs.generation_requests()

    assert [item.insert_text for item in result.items] == ["theirs"]
    assert served_by_theirs[0].body["options"]["num_predict"] == 300
    assert fake.generation_requests() == []  # the workspace's providers replaced the user's
    assert told == []


async def test_a_cache_path_from_the_workspace_writes_nothing_there(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    elsewhere = tmp_path / "elsewhere.sqlite3"
    user_config(tmp_path, fake)
    write(root / "crucible.toml", f"[cache]\ndisk_path = {toml_str(elsewhere)}\n")
    async with lsp_session(None, workspace=root) as client:
        await inline(client, open_document(client, TEXT), end_of(TEXT))
        status = await server_status(client)
        told = refusals(client)

    assert not elsewhere.exists()
    own = tmp_path / "xdg-cache" / "crucible" / "completions.sqlite3"
    assert status["cache"]["levels"]["l2"]["path"] == str(own)
    assert own.exists()
    (message,) = told
    assert "cache.disk_path" in message


def doctor(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucible", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_doctor_probes_no_host_from_the_workspace_and_lists_what_it_refused(
    fake: FakeProvider, attacker: FakeProvider, tmp_path: Path
) -> None:
    """doctor calls every provider it is given: a refused one must never be among them."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    user_config(tmp_path, fake)
    write(
        root / "crucible.toml",
        f'[[providers]]\nname = "attacker"\nbase_url = "{attacker.base_url}"\n'
        f'model = "{MODEL}"\n[completion]\nmax_tokens = 4000\nmax_lines = 4\n',
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path / "c")}
    text = doctor(cwd=root, env=env)
    as_json = doctor("--json", cwd=root, env=env)

    assert attacker.requests == []
    assert text.returncode == 0, text.stdout + text.stderr
    assert "Workspace file: not trusted" in text.stdout
    assert "  - providers (only your own configuration may set it)" in text.stdout
    assert "  - completion.max_tokens (4000 is above your 160" in text.stdout
    assert f"trusted_workspaces = [{toml_str(root)}]" in text.stdout
    report = json.loads(as_json.stdout)
    assert report["workspace"]["trusted"] is False
    assert [r["key"] for r in report["workspace"]["refused"]] == [
        "providers",
        "completion.max_tokens",
    ]
    assert report["settings"]["completion"]["max_lines"] == 4  # lowered: it applied
    assert [p["name"] for p in report["providers"]] == ["mine"]


# -- a file at the cache path that is not Crucible's ---------------------------------------------


def make_foreign(path: Path, kind: str, tmp_path: Path) -> Any:
    """Put something that is not a Crucible cache at ``path``; returns how to see it again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "text":
        path.write_text("my notes, not a cache\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "sqlite-of-another-program":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        sqlite3.connect(path).close()
    elif kind == "empty-sqlite":  # a database with no table yet: still not ours to take
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 7")
        conn.close()
    elif kind == "directory":
        path.mkdir()
        (path / "keep").write_text("x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-to-a-user-file":
        target = tmp_path / "precious.txt"
        target.write_text("precious")
        path.symlink_to(target)
    return snapshot(path.parent)


def snapshot(directory: Path) -> dict[str, Any]:
    """Every entry under ``directory``: its kind and its bytes."""
    seen: dict[str, Any] = {}
    for entry in sorted(directory.rglob("*")):
        if entry.is_symlink():
            seen[str(entry)] = ("link", os.readlink(entry), entry.resolve().read_bytes())
        elif entry.is_file():
            seen[str(entry)] = ("file", entry.read_bytes())
        else:
            seen[str(entry)] = ("other", entry.stat().st_mode)
    return seen


FOREIGN = [
    "text",
    "empty",
    "sqlite-of-another-program",
    "empty-sqlite",
    "directory",
    "fifo",
    "symlink-to-a-user-file",
]


@pytest.mark.parametrize("kind", FOREIGN)
async def test_a_file_at_the_cache_path_that_is_not_crucibles_is_left_byte_identical(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "cache" / "completions.sqlite3"
    before = make_foreign(path, kind, tmp_path)
    cache = DiskCache(path, max_bytes=1_000_000, ttl_s=60.0)
    await cache.open()
    cache.put("k", "v")
    await cache.flush()
    assert await cache.get("k") is None
    await cache.close()
    assert cache.stats().enabled is False
    assert snapshot(path.parent) == before


async def test_the_server_serves_without_l2_when_the_users_cache_path_is_not_a_cache(
    fake: FakeProvider, lsp_session: Session, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the user pointed cache.disk_path at their notes by mistake\n")
    before = notes.read_bytes()
    write(
        tmp_path / "xdg" / "crucible" / "config.toml",
        f"[cache]\ndisk_path = {toml_str(notes)}\n",
    )
    options = {
        "providers": [{"name": "mine", "base_url": fake.base_url, "model": MODEL}],
        "completion": {"debounce_ms": 0},
        "cache": {"prefetch": "off"},
    }
    async with lsp_session(options) as client:
        result = await inline(client, open_document(client, TEXT), end_of(TEXT))
        status = await server_status(client)

    assert [item.insert_text for item in result.items] == ["return a + b"]
    assert status["cache"]["levels"]["l2"]["enabled"] is False
    assert notes.read_bytes() == before
    assert [name for name in os.listdir(tmp_path) if name.startswith("notes")] == ["notes.txt"]


def test_provider_settings_are_all_refused_as_one_key() -> None:
    """Everything under [[providers]] (base_url, api_key_env, kind, model, …) goes with it."""
    provider = ProviderSettings()
    every_field = {f.name: getattr(provider, f.name) for f in dataclasses.fields(provider)}
    screened = screen({"providers": [json.loads(json.dumps(every_field, default=str))]})
    assert refused_keys(screened) == ["providers"] and screened.table == {}
