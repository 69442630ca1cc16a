"""config/loader.py and config/validate.py: sources, their order, merging, validation, masking."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from crucible.config import (
    CompletionSettings,
    LoadResult,
    Multiline,
    ProviderKind,
    ProviderSettings,
    Role,
    Settings,
    build_settings,
    default_base_url,
    describe,
    file_layers,
    find_workspace_root,
    load_settings,
    merge_layers,
    read_toml,
    unwrap_client_settings,
)
from crucible.config.settings import CLIENT_KEYS, FIM_TEMPLATE_NAMES, CompletionItems

FAKE_KEY = "sk-proj-Zq8Xw3Vt9Ks2Lm4Np6Rb1Yc5Hd7Jf0Ga"


def keys(result: LoadResult) -> list[str]:
    return [e.key for e in result.errors]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose user config directory is inside tmp_path."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


# --- defaults -------------------------------------------------------------------------------------


def test_no_configuration_gives_the_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    result = load_settings(workspace_root=tmp_path / "ws", env=env)
    assert (result.settings, result.errors) == (Settings(), ())
    (provider,) = result.settings.providers
    assert (provider.kind, provider.base_url) == (ProviderKind.OLLAMA, "http://127.0.0.1:11434")


def test_an_empty_table_gives_the_defaults() -> None:
    assert build_settings({}) == LoadResult(Settings(), ())


def test_every_number_field_documents_its_bounds() -> None:
    for cls in (ProviderSettings, CompletionSettings):
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"], f.name
            if f.type in ("int", "float"):
                lo, hi = f.metadata["bounds"]
                assert lo <= getattr(cls(), f.name) <= hi, f.name


def test_fim_template_names_match_context_fim() -> None:
    fim = pytest.importorskip("crucible.context.fim")
    templates = getattr(fim, "TEMPLATES", None)
    if templates is None:
        pytest.skip("context/fim.py has no TEMPLATES yet")
    assert set(FIM_TEMPLATE_NAMES) == set(templates)


# --- sources and their order ----------------------------------------------------------------------

USER = "[completion]\ndebounce_ms = 10\nmax_lines = 1\n"
WORKSPACE = "[completion]\ndebounce_ms = 20\n"
CONFIG = "[completion]\ndebounce_ms = 30\n"


@pytest.mark.parametrize(
    ("sources", "debounce_ms"),
    [
        pytest.param((), 150, id="defaults"),
        pytest.param(("user",), 10, id="user-file"),
        pytest.param(("user", "workspace"), 20, id="workspace-over-user"),
        pytest.param(("user", "workspace", "config"), 30, id="config-over-workspace"),
        pytest.param(("user", "config", "init"), 40, id="init-options-over-files"),
        pytest.param(("workspace", "init", "change"), 50, id="didchange-over-init"),
        pytest.param(("user", "change"), 50, id="didchange-over-user"),
    ],
)
def test_later_sources_win(
    tmp_path: Path, env: dict[str, str], sources: tuple[str, ...], debounce_ms: int
) -> None:
    if "user" in sources:
        write(tmp_path / "xdg" / "crucible" / "config.toml", USER)
    if "workspace" in sources:
        write(tmp_path / "ws" / "crucible.toml", WORKSPACE)
    config = write(tmp_path / "c.toml", CONFIG) if "config" in sources else None
    result = load_settings(
        workspace_root=tmp_path / "ws",
        config_path=config,
        initialization_options={"completion": {"debounce_ms": 40}} if "init" in sources else None,
        client_settings={"crucible": {"completion": {"debounce_ms": 50}}}
        if "change" in sources
        else None,
        env=env,
    )
    assert result.errors == ()
    assert result.settings.completion.debounce_ms == debounce_ms
    # Keys a later layer leaves alone keep the earlier layer's value (deep merge).
    assert result.settings.completion.max_lines == (1 if "user" in sources else 16)


def test_file_layers_names_each_file_in_order(tmp_path: Path, env: dict[str, str]) -> None:
    user = write(tmp_path / "xdg" / "crucible" / "config.toml", USER)
    ws = write(tmp_path / "ws" / "crucible.toml", WORKSPACE)
    config = write(tmp_path / "c.toml", CONFIG)
    layers, errors = file_layers(workspace_root=tmp_path / "ws", config_path=config, env=env)
    assert errors == []
    assert [name for name, _ in layers] == [
        f"user file {user}",
        f"workspace file {ws}",
        f"--config {config}",
    ]
    assert [t["completion"]["debounce_ms"] for _, t in layers] == [10, 20, 30]


@pytest.mark.parametrize(
    ("env_vars", "where"),
    [
        pytest.param({"XDG_CONFIG_HOME": "{tmp}/xdg"}, "xdg", id="xdg-config-home"),
        pytest.param({"HOME": "{tmp}/home"}, "home/.config", id="xdg-unset-uses-home"),
        pytest.param({"XDG_CONFIG_HOME": "", "HOME": "{tmp}/home"}, "home/.config", id="empty"),
        pytest.param(
            {"XDG_CONFIG_HOME": "relative/dir", "HOME": "{tmp}/home"},
            "home/.config",
            id="relative-xdg-ignored",
        ),
    ],
)
def test_user_file_location(tmp_path: Path, env_vars: dict[str, str], where: str) -> None:
    write(tmp_path / where / "crucible" / "config.toml", USER)
    env = {k: v.format(tmp=tmp_path) for k, v in env_vars.items()}
    result = load_settings(env=env)
    assert result.errors == ()
    assert result.settings.completion.debounce_ms == 10


def test_missing_config_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.toml"
    layers, errors = file_layers(workspace_root=None, config_path=missing, env=env)
    assert layers == []
    assert [e.key for e in errors] == [str(missing)]
    assert "does not exist" in errors[0].message


def test_sources_say_what_became_of_each_file(tmp_path: Path, env: dict[str, str]) -> None:
    user = tmp_path / "xdg" / "crucible" / "config.toml"
    ws = write(tmp_path / "ws" / "crucible.toml", "[completion\n")
    config = write(tmp_path / "c.toml", CONFIG)
    result = load_settings(
        workspace_root=tmp_path / "ws", config_path=config, initialization_options={}, env=env
    )
    assert [(s.label, s.path, s.state) for s in result.sources] == [
        ("user file", user, "not found"),
        ("workspace file", ws, "error"),
        ("--config", config, "loaded"),
        ("initializationOptions", None, "loaded"),
    ]
    assert "not valid TOML" in (result.sources[1].error or "")


@pytest.mark.parametrize(
    ("layout", "start", "root"),
    [
        pytest.param(["p/crucible.toml", "p/.git/"], "p/src/pkg", "p", id="crucible-toml"),
        pytest.param(["p/.git/"], "p/src/pkg", "p", id="git"),
        pytest.param(["p/.git"], "p/src", "p", id="git-file-of-a-worktree"),
        # crucible.toml wins over a nearer repository root, as Neovim's root_markers order does.
        pytest.param(["crucible.toml", "p/.git/"], "p/src", ".", id="crucible-toml-first"),
        pytest.param(["p/src/.hg/"], "p/src", "p/src", id="start-itself"),
    ],
)
def test_find_workspace_root_walks_up_to_the_markers(
    tmp_path: Path, layout: list[str], start: str, root: str
) -> None:
    for entry in layout:
        path = tmp_path / "t" / entry
        if entry.endswith("/"):
            path.mkdir(parents=True)
        else:
            write(path, "")
    (tmp_path / "t" / start).mkdir(parents=True, exist_ok=True)
    found = find_workspace_root(tmp_path / "t" / start)
    assert found == (tmp_path / "t" / root).resolve()


def test_find_workspace_root_without_markers(tmp_path: Path) -> None:
    assert find_workspace_root(tmp_path, markers=(("no-such-marker-here",),)) is None


def test_missing_optional_files_are_not_errors(tmp_path: Path, env: dict[str, str]) -> None:
    assert file_layers(workspace_root=tmp_path, config_path=None, env=env) == ([], [])
    assert read_toml(tmp_path / "absent.toml") == ({}, [])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(b"[completion]\ndebounce_ms = = 3\n", "line 2", id="invalid-toml"),
        pytest.param(b"a = 1\nb = \xff\xfe\n", "line 2", id="not-utf8"),
        pytest.param(b"[completion\n", "line 1", id="unclosed-table"),
    ],
)
def test_broken_file_is_an_error_naming_file_and_line(
    tmp_path: Path, env: dict[str, str], content: bytes, fragment: str
) -> None:
    path = tmp_path / "ws" / "crucible.toml"
    path.parent.mkdir()
    path.write_bytes(content)
    table, errors = read_toml(path)
    assert table == {}
    assert [e.key for e in errors] == [str(path)]
    assert fragment in errors[0].message
    # The rest of the configuration still loads.
    write(tmp_path / "xdg" / "crucible" / "config.toml", USER)
    result = load_settings(workspace_root=path.parent, env=env)
    assert keys(result) == [str(path)]
    assert result.settings.completion.debounce_ms == 10


def test_unreadable_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    table, errors = read_toml(tmp_path / "dir.toml")
    assert table == {}
    assert [e.key for e in errors] == [str(tmp_path / "dir.toml")]


# --- client payloads ----------------------------------------------------------------------------

BARE = {"completion": {"debounce_ms": 7}}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(BARE, BARE, id="bare"),
        pytest.param({"crucible": BARE}, BARE, id="wrapped"),
        pytest.param({"crucible": BARE, "editor": {"x": 1}}, BARE, id="wrapped-among-sections"),
        pytest.param({"crucible": None}, None, id="wrapped-null"),
        pytest.param({"crucible": [1]}, None, id="wrapped-not-object"),
        pytest.param(None, None, id="absent"),
        pytest.param([BARE], None, id="array"),
        pytest.param("crucible", None, id="string"),
        pytest.param({}, {}, id="empty-object"),
    ],
)
def test_unwrap_client_settings(payload: Any, expected: dict[str, Any] | None) -> None:
    assert unwrap_client_settings(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [pytest.param(BARE, id="bare"), pytest.param({"crucible": BARE}, id="wrapped")],
)
def test_bare_and_wrapped_json_load_the_same(payload: dict[str, Any], env: dict[str, str]) -> None:
    for result in (
        load_settings(initialization_options=payload, env=env),
        load_settings(client_settings=payload, env=env),
    ):
        assert result.errors == ()
        assert result.settings.completion.debounce_ms == 7


# --- merging --------------------------------------------------------------------------------------


def test_arrays_are_replaced_never_concatenated() -> None:
    user = {"providers": [{"name": "a"}, {"name": "b", "roles": ["completion", "chat"]}]}
    workspace = {"providers": [{"name": "c", "roles": ["chat"]}]}
    merged = merge_layers([user, workspace])
    assert merged == {"providers": [{"name": "c", "roles": ["chat"]}]}
    settings = build_settings(merged).settings
    assert [(p.name, p.roles) for p in settings.providers] == [("c", (Role.CHAT,))]


def test_merge_is_deep_skips_null_and_leaves_inputs_alone() -> None:
    first: dict[str, Any] = {"completion": {"debounce_ms": 1, "max_lines": 2}, "providers": []}
    second: dict[str, Any] = {"completion": {"debounce_ms": None, "max_lines": 3}}
    third: dict[str, Any] = {"completion": None, "providers": None}
    snapshot = json.dumps([first, second, third])
    merged = merge_layers([first, second, third])
    assert merged == {"completion": {"debounce_ms": 1, "max_lines": 3}, "providers": []}
    merged["completion"]["debounce_ms"] = 99
    merged["providers"].append({})
    assert json.dumps([first, second, third]) == snapshot


def test_a_table_replaces_a_scalar_below_it() -> None:
    assert merge_layers([{"completion": 5}, {"completion": {"enabled": False}}]) == {
        "completion": {"enabled": False}
    }


def test_null_means_default() -> None:
    raw = {"completion": {"debounce_ms": None}, "providers": [{"name": "x", "model": None}]}
    result = build_settings(raw)
    assert result.errors == ()
    assert result.settings.completion.debounce_ms == 150
    assert result.settings.providers[0].model == ProviderSettings().model


# --- validation -----------------------------------------------------------------------------------

DEFAULT_COMPLETION = CompletionSettings()


def completion(**fields: Any) -> dict[str, Any]:
    return {"completion": fields}


def provider(**fields: Any) -> dict[str, Any]:
    return {"providers": [{"name": "p", **fields}]}


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        pytest.param(completion(debounce_ms=0), "debounce_ms", 0, id="debounce-low-bound"),
        pytest.param(completion(debounce_ms=5000), "debounce_ms", 5000, id="debounce-high-bound"),
        pytest.param(completion(debounce_ms=200.0), "debounce_ms", 200, id="integral-float-is-int"),
        pytest.param(completion(temperature=1), "temperature", 1.0, id="int-is-a-float"),
        pytest.param(completion(multiline="never"), "multiline", Multiline.NEVER, id="enum-value"),
        pytest.param(completion(enabled=False), "enabled", False, id="bool"),
    ],
)
def test_valid_completion_values(raw: dict[str, Any], field: str, value: Any) -> None:
    result = build_settings(raw)
    assert result.errors == ()
    got = getattr(result.settings.completion, field)
    assert (got, type(got)) == (value, type(value))


@pytest.mark.parametrize(
    ("raw", "key", "fragments"),
    [
        pytest.param(
            completion(debounce_ms="fast"), "completion.debounce_ms", ['"fast"'], id="str"
        ),
        pytest.param(completion(debounce_ms=True), "completion.debounce_ms", ["true"], id="bool"),
        pytest.param(completion(debounce_ms=1.5), "completion.debounce_ms", ["whole"], id="frac"),
        pytest.param(completion(debounce_ms=-1), "completion.debounce_ms", ["0 to 5000"], id="neg"),
        pytest.param(completion(debounce_ms=5001), "completion.debounce_ms", ["5000"], id="high"),
        pytest.param(completion(timeout_ms=99), "completion.timeout_ms", ["100 to"], id="timeout"),
        pytest.param(completion(max_tokens=0), "completion.max_tokens", ["1 to 8192"], id="tokens"),
        pytest.param(
            completion(max_tokens=10**5000), "completion.max_tokens", ["large"], id="huge"
        ),
        pytest.param(completion(temperature=2.5), "completion.temperature", ["2.0"], id="temp"),
        pytest.param(completion(temperature=float("nan")), "completion.temperature", [], id="nan"),
        pytest.param(completion(enabled="yes"), "completion.enabled", ["true or false"], id="bool"),
        pytest.param(
            completion(multiline="sometimes"),
            "completion.multiline",
            ['"sometimes"', "auto, always, never"],
            id="enum",
        ),
        pytest.param(completion(max_lines=[3]), "completion.max_lines", ["array"], id="array"),
        pytest.param(
            completion(completion_items="sometimes"),
            "completion.completion_items",
            ['"sometimes"', '"auto", true or false'],
            id="completion-items-word",
        ),
        pytest.param(
            completion(completion_items=1),
            "completion.completion_items",
            ["got 1"],
            id="completion-items-number",
        ),
    ],
)
def test_bad_completion_value_names_its_key_and_falls_back(
    raw: dict[str, Any], key: str, fragments: list[str]
) -> None:
    # A sibling field in the same section still applies: never the whole section.
    raw["completion"]["max_lines"] = raw["completion"].get("max_lines", 3)
    result = build_settings(raw)
    assert keys(result) == [key]
    for fragment in fragments:
        assert fragment in result.errors[0].message
    assert "using the default" in result.errors[0].message
    field = key.split(".")[1]
    assert getattr(result.settings.completion, field) == getattr(DEFAULT_COMPLETION, field)
    if field != "max_lines":
        assert result.settings.completion.max_lines == 3


@pytest.mark.parametrize(
    ("raw", "key", "attribute", "value"),
    [
        pytest.param(
            provider(kind="gpt"), "providers[0].kind", "kind", ProviderKind.OLLAMA, id="kind"
        ),
        pytest.param(
            provider(kind="openai", base_url="localhost:8000"),
            "providers[0].base_url",
            "base_url",
            "http://127.0.0.1:8000/v1",
            id="url-no-scheme-kind-default",
        ),
        pytest.param(
            provider(base_url="ftp://host/x"),
            "providers[0].base_url",
            "base_url",
            "http://127.0.0.1:11434",
            id="url-scheme",
        ),
        pytest.param(
            provider(base_url="http:///v1"), "providers[0].base_url", "base_url", None, id="no-host"
        ),
        pytest.param(
            provider(base_url="http://h:port/"),
            "providers[0].base_url",
            "base_url",
            None,
            id="port",
        ),
        pytest.param(
            provider(base_url="http://a b/"), "providers[0].base_url", "base_url", None, id="space"
        ),
        pytest.param(
            provider(base_url="http://[::1"), "providers[0].base_url", "base_url", None, id="ipv6"
        ),
        pytest.param(provider(base_url=8080), "providers[0].base_url", "base_url", None, id="int"),
        pytest.param(
            provider(fim_template="qwen2"),
            "providers[0].fim_template",
            "fim_template",
            "auto",
            id="fim-template",
        ),
        pytest.param(provider(roles=[]), "providers[0].roles", "roles", None, id="roles-empty"),
        pytest.param(provider(roles="chat"), "providers[0].roles", "roles", None, id="roles-str"),
        pytest.param(
            provider(roles=["completion", "chta"]),
            "providers[0].roles[1]",
            "roles",
            (Role.COMPLETION, Role.CHAT),
            id="roles-unknown-entry",
        ),
        pytest.param(
            provider(api_key_env="MY-KEY"),
            "providers[0].api_key_env",
            "api_key_env",
            None,
            id="api-key-env-not-a-name",
        ),
        pytest.param(provider(priority=1.5), "providers[0].priority", "priority", 0, id="priority"),
        pytest.param(
            provider(max_connections=0),
            "providers[0].max_connections",
            "max_connections",
            4,
            id="max-connections",
        ),
        pytest.param(
            provider(connect_timeout_ms=-5),
            "providers[0].connect_timeout_ms",
            "connect_timeout_ms",
            1000,
            id="connect-timeout",
        ),
        pytest.param(provider(model=""), "providers[0].model", "model", None, id="empty-model"),
    ],
)
def test_bad_provider_value_names_its_key_and_falls_back(
    raw: dict[str, Any], key: str, attribute: str, value: Any
) -> None:
    raw["providers"][0]["model"] = raw["providers"][0].get("model", "m")
    result = build_settings(raw)
    assert keys(result) == [key]
    (p,) = result.settings.providers
    expected = getattr(ProviderSettings(), attribute) if value is None else value
    assert getattr(p, attribute) == expected
    assert p.name == "p"  # the rest of the provider table still applies
    if attribute != "model":
        assert p.model == "m"


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        pytest.param("ollama", "http://127.0.0.1:11434", id="ollama"),
        pytest.param("llamacpp", "http://127.0.0.1:8080", id="llamacpp"),
        pytest.param("openai", "http://127.0.0.1:8000/v1", id="openai"),
        pytest.param("anthropic", "https://api.anthropic.com", id="anthropic"),
        pytest.param("codestral", "https://codestral.mistral.ai/v1", id="codestral"),
    ],
)
def test_base_url_defaults_to_the_kind_default(kind: str, url: str) -> None:
    result = build_settings({"providers": [{"kind": kind}]})
    assert result.errors == ()
    assert result.settings.providers[0].base_url == url == default_base_url(ProviderKind(kind))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param("https://api.example.com/v1/", "https://api.example.com/v1", id="slash"),
        pytest.param(" http://[::1]:8000 ", "http://[::1]:8000", id="ipv6-trimmed"),
        pytest.param("HTTP://host", "HTTP://host", id="scheme-case"),
    ],
)
def test_good_base_url_is_kept_without_trailing_slash(given: str, kept: str) -> None:
    result = build_settings(provider(base_url=given))
    assert result.errors == ()
    assert result.settings.providers[0].base_url == kept


def test_every_bad_value_is_reported_not_just_the_first() -> None:
    raw = {
        "completion": {"debounce_ms": -1, "timeout_ms": "x", "multiline": 3},
        "providers": [{"kind": "x", "base_url": "y", "roles": []}],
    }
    assert sorted(keys(build_settings(raw))) == [
        "completion.debounce_ms",
        "completion.multiline",
        "completion.timeout_ms",
        "providers[0].base_url",
        "providers[0].kind",
        "providers[0].roles",
    ]


@pytest.mark.parametrize(
    ("raw", "key", "suggestion"),
    [
        pytest.param(completion(debounce=3), "completion.debounce", "debounce_ms", id="completion"),
        pytest.param({"provider": []}, "provider", "providers", id="top-level"),
        pytest.param(provider(modle="m"), "providers[0].modle", "model", id="provider"),
        pytest.param({"zzz": 1}, "zzz", None, id="no-suggestion"),
        pytest.param(provider(api_key=FAKE_KEY), "providers[0].api_key", "api_key_env", id="key"),
    ],
)
def test_unknown_keys_are_reported_with_the_nearest_known_key(
    raw: dict[str, Any], key: str, suggestion: str | None
) -> None:
    result = build_settings(raw)
    assert keys(result) == [key]
    assert "unknown key" in result.errors[0].message
    if suggestion is not None:
        assert f'"{suggestion}"' in result.errors[0].message
    assert FAKE_KEY not in result.errors[0].message


def test_unknown_key_does_not_stop_the_rest_applying() -> None:
    result = build_settings({"completion": {"debounce_ms": 9, "debounse_ms": 8}, "cachez": {}})
    assert keys(result) == ["cachez", "completion.debounse_ms"]
    assert result.settings.completion.debounce_ms == 9


@pytest.mark.parametrize(
    ("raw", "error_keys", "names"),
    [
        pytest.param({"providers": [{}]}, [], ["provider0"], id="generated-name"),
        pytest.param(
            {"providers": [{}, {"name": "provider0"}]},
            [],
            ["provider0_1", "provider0"],
            id="generated-name-avoids-explicit",
        ),
        pytest.param(
            {"providers": [{"name": "a"}, {"name": "a", "kind": "bad"}, {"name": "b"}]},
            ["providers[1].name"],
            ["a", "b"],
            id="duplicate-later-dropped",
        ),
        pytest.param(
            {"providers": [{"name": 5}]}, ["providers[0].name"], ["provider0"], id="name-not-text"
        ),
        pytest.param(
            {"providers": [1, {"name": "a"}, "x"]},
            ["providers[0]", "providers[2]"],
            ["a"],
            id="non-table-entries-dropped",
        ),
        pytest.param({"providers": []}, ["providers"], ["local"], id="empty-gives-default"),
        pytest.param({"providers": [None]}, ["providers[0]", "providers"], ["local"], id="none"),
        pytest.param({"providers": {"name": "a"}}, ["providers"], ["local"], id="table-not-array"),
    ],
)
def test_provider_list_rules(raw: dict[str, Any], error_keys: list[str], names: list[str]) -> None:
    result = build_settings(raw)
    assert keys(result) == error_keys
    assert [p.name for p in result.settings.providers] == names
    if names == ["local"]:
        assert result.settings.providers == Settings().providers


def test_section_of_wrong_type_falls_back_alone() -> None:
    result = build_settings({"completion": "fast", "providers": [{"name": "a"}]})
    assert keys(result) == ["completion"]
    assert result.settings.completion == DEFAULT_COMPLETION
    assert result.settings.providers[0].name == "a"


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(FAKE_KEY, id="openai-style"),
        pytest.param("sk-ant-api03-abc", id="anthropic-prefix"),
        pytest.param("ghp_" + "a1B2" * 9, id="github-token-matches-name-pattern"),
        pytest.param("xK9#mP2$vL5@nQ8&wR3!", id="random-punctuation"),
        pytest.param("aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY", id="long-mixed-alnum"),
    ],
)
def test_a_key_in_api_key_env_is_rejected_and_never_echoed(value: str) -> None:
    raw = {
        "providers": [{"api_key_env": value, "base_url": value, "fim_template": value}],
        "completion": {"multiline": value, "max_lines": value},
    }
    result = build_settings(raw)
    (error,) = [e for e in result.errors if e.key == "providers[0].api_key_env"]
    assert "looks like a key" in error.message
    assert result.settings.providers[0].api_key_env is None
    for e in result.errors:
        assert value not in str(e), e.key
    assert value not in json.dumps(describe(result.settings, {"OPENAI_API_KEY": value}))


@pytest.mark.parametrize(
    ("name", "env", "expected"),
    [
        pytest.param("OPENAI_API_KEY", {"OPENAI_API_KEY": FAKE_KEY}, True, id="set"),
        pytest.param("OPENAI_API_KEY", {}, False, id="unset"),
        pytest.param("OPENAI_API_KEY", {"OPENAI_API_KEY": ""}, False, id="empty"),
    ],
)
def test_describe_shows_the_variable_name_and_whether_it_is_set(
    name: str, env: dict[str, str], expected: bool
) -> None:
    result = build_settings(provider(api_key_env=name))
    assert result.errors == ()
    view = describe(result.settings, env)
    assert view["providers"][0]["api_key_env"] == {"name": name, "set": expected}
    assert FAKE_KEY not in json.dumps(view)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://user:hunter2@api.example.com/v1", "https://***@api.example.com/v1"),
        pytest.param("http://tok3n@h:1/", "http://***@h:1/"),
        pytest.param("https://h/v1?key=hunter2&x=1", "https://h/v1?key=***&x=***"),
    ],
)
def test_a_url_carrying_credentials_is_refused_and_never_echoed(url: str, shown: str) -> None:
    # httpx would send user:password as Basic auth and log the URL; a query string swallows
    # the API paths appended to it. Keys go in the variable api_key_env names.
    result = build_settings(provider(base_url=url))
    assert keys(result) == ["providers[0].base_url"]
    assert shown in result.errors[0].message
    view = describe(result.settings, {})
    assert view["providers"][0]["base_url"] == "http://127.0.0.1:11434"
    everything = json.dumps(view) + str(result.errors)
    assert "hunter2" not in everything and "tok3n" not in everything


def test_describe_shows_a_plain_url() -> None:
    result = build_settings(provider(base_url="http://127.0.0.1:11434"))
    assert result.errors == ()
    assert describe(result.settings, {})["providers"][0]["base_url"] == "http://127.0.0.1:11434"


def test_bad_url_error_masks_its_userinfo() -> None:
    result = build_settings(provider(base_url="ftp://user:hunter2@host"))
    assert keys(result) == ["providers[0].base_url"]
    assert "hunter2" not in str(result.errors[0])
    assert "ftp://***@host" in result.errors[0].message


def test_describe_is_plain_json() -> None:
    view = describe(Settings(), {})
    assert json.loads(json.dumps(view)) == view
    assert view["completion"]["multiline"] == "auto"
    assert view["providers"][0]["roles"] == ["completion", "chat"]
    assert view["providers"][0]["api_key_env"] is None


# --- never raises ---------------------------------------------------------------------------------


def names(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


ODD_KEYS: list[Any] = ["crucible", "zz", "", 1, None]
STRINGS = ["", " ", "http://h", "http://[::1", "http://h:x", "https://u:p@h/", "sk-x", "\x00"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON/TOML-ish value, nested a few levels, biased towards edge cases."""
    choice = rng.randrange(10 if depth < 3 else 7)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False, 0, -1, 1, 150, 10**30, -(10**400), 2**63])
    if choice == 2:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("nan"), 3.0])
    if choice == 3:
        return rng.choice([m.value for enum in (ProviderKind, Role, Multiline) for m in enum])
    if choice == 4:
        return rng.choice([*STRINGS, "é" * 50, "A_B", *FIM_TEMPLATE_NAMES])
    if choice == 5:
        return rng.choice([[], {}, ()])
    if choice == 6:
        return rng.choice(["completion", "chat", "x"])
    if choice == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return random_table(rng, [*names(Settings), *ODD_KEYS], depth + 1)


def random_table(rng: random.Random, keys: list[Any], depth: int = 1) -> dict[Any, Any]:
    def value() -> Any:
        return rng.choice(STRINGS) if rng.random() < 0.3 else random_value(rng, depth)

    return {rng.choice(keys): value() for _ in range(rng.randrange(8))}


def random_config(rng: random.Random) -> Any:
    """Mostly schema-shaped tables with random values, so that every checker is reached."""
    if rng.random() < 0.2:
        return random_value(rng)
    provider_keys = [*names(ProviderSettings), *ODD_KEYS]
    providers = [
        random_table(rng, provider_keys) if rng.random() < 0.8 else random_value(rng, 2)
        for _ in range(rng.randrange(4))
    ]
    completion = random_table(rng, [*names(CompletionSettings), *ODD_KEYS])
    return {"providers": providers, "completion": completion, rng.choice(ODD_KEYS): 1}


def test_fuzz_never_raises() -> None:
    rng = random.Random(20240611)
    for _ in range(500):
        raw, later = random_config(rng), random_config(rng)
        merged = merge_layers([r for r in (raw, later) if isinstance(r, dict)])
        # Deliberately not only mappings: build_settings must survive whatever a client sends.
        candidates: tuple[Any, ...] = (raw, merged, unwrap_client_settings(raw))
        for candidate in candidates:
            result = build_settings(candidate)
            assert isinstance(result.settings, Settings)
            assert result.settings.providers
            assert all(isinstance(e.key, str) and e.message for e in result.errors)
            json.dumps(describe(result.settings, {}))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("auto", CompletionItems.AUTO),
        (True, CompletionItems.ON),
        (False, CompletionItems.OFF),
        ("true", CompletionItems.ON),
        ("On", CompletionItems.ON),
        (" off ", CompletionItems.OFF),
        ("false", CompletionItems.OFF),
    ],
)
def test_completion_items_takes_auto_or_a_switch(given: Any, expected: CompletionItems) -> None:
    result = build_settings(completion(completion_items=given))
    assert result.errors == ()
    assert result.settings.completion.completion_items is expected


def test_completion_items_defaults_to_auto() -> None:
    assert CompletionSettings().completion_items is CompletionItems.AUTO


@pytest.mark.parametrize(
    "payload",
    [
        {"crucible": {"trace": {"server": "verbose"}, "completion": {"debounce_ms": 7}}},
        {"trace": {"server": "off"}, "completion": {"debounce_ms": 7}},
        {"crucible": {"server": {"path": "/opt/crucible-lsp"}, "completion": {"debounce_ms": 7}}},
        {"client": {"statusBar": True}, "trace": "messages", "completion": {"debounce_ms": 7}},
    ],
    ids=["vscode-section", "bare", "server-path", "client-keys"],
)
def test_editor_client_keys_are_ignored_without_an_error(
    payload: dict[str, Any], env: dict[str, str]
) -> None:
    result = load_settings(client_settings=payload, env=env)
    assert result.errors == ()
    assert result.settings.completion.debounce_ms == 7


def test_client_keys_are_only_skipped_at_the_top_level() -> None:
    """``trace`` inside a server section is still a typo worth reporting."""
    assert set(CLIENT_KEYS) == {"trace", "server", "client"}
    result = build_settings({"completion": {"trace": "on"}, "tracee": 1})
    assert keys(result) == ["tracee", "completion.trace"]


def test_the_number_of_providers_is_bounded() -> None:
    from crucible.config.validate import MAX_PROVIDERS, build_settings

    tables = [
        {"name": f"p{i}", "kind": "ollama", "base_url": f"http://127.0.0.1:{11000 + i}"}
        for i in range(MAX_PROVIDERS + 5)
    ]
    result = build_settings({"providers": tables})
    settings, errors = result.settings, result.errors
    assert [p.name for p in settings.providers] == [f"p{i}" for i in range(MAX_PROVIDERS)]
    assert [e.key for e in errors] == ["providers"]
    assert f"at most {MAX_PROVIDERS}" in errors[0].message
