"""Which files never reach a provider, and which paths a prompt shows (``context/privacy.py``),
and how the plan of a completion applies both with redaction (``completion/plan.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.completion.plan import PromptPrivacy, plan_completion
from crucible.config.settings import CompletionSettings
from crucible.context.privacy import PrivacyRules, WorkspacePrivacy
from crucible.context.snapshot import DocumentSnapshot
from crucible.context.window import cut_window
from tests.fakes.documents import open_file

ROOT = Path("/home/alice/project")


@pytest.mark.parametrize(
    "relative",
    [
        ".env",
        "deploy/.env.production",
        "prod.env",
        ".envrc",
        "id_rsa",
        "keys/id_ed25519",
        "certs/server.pem",
        "tls/x.key",
        "store.p12",
        "store.pfx",
        "android.keystore",
        ".npmrc",
        ".pypirc",
        ".netrc",
        ".git-credentials",
        ".aws/credentials",
        "infra/.docker/config.json",
        ".kube/config",
        "prod.tfvars",
        "terraform.tfstate",
        "secrets.yaml",
        ".git/config",
        "sub/.git/HEAD",
        "poetry.lock",
        "Cargo.lock",
        "package-lock.json",
        "pnpm-lock.yaml",
        "static/app.min.js",
        "static/app.min.css",
        "static/app.js.map",
    ],
)
def test_the_builtin_list_excludes_secret_and_generated_files(relative: str) -> None:
    assert PrivacyRules(ROOT).excludes(str(ROOT / relative))


@pytest.mark.parametrize(
    "relative",
    ["main.py", "src/env.py", "docs/keys.md", "settings.py", "src/app.js", "lockfile.py"],
)
def test_ordinary_source_files_are_not_excluded(relative: str) -> None:
    assert not PrivacyRules(ROOT).excludes(str(ROOT / relative))


@pytest.mark.parametrize(
    "path", ["/home/alice/.ssh/id_rsa", "/home/alice/.aws/credentials", "/etc/ssl/private/x.pem"]
)
def test_files_outside_the_workspace_are_matched_by_the_builtin_list(path: str) -> None:
    assert PrivacyRules(ROOT).excludes(path)
    assert PrivacyRules(None).excludes(path)


def test_configured_globs_and_the_ignore_file_add_exclusions_in_gitignore_syntax() -> None:
    rules = PrivacyRules(
        ROOT,
        exclude=("*.secret.py", "vendor/**"),
        ignore_lines=("# comment", "private/", "!private/public.py", "/top.py"),
    )
    assert rules.excludes(str(ROOT / "config.secret.py"))
    assert rules.excludes(str(ROOT / "vendor/lib/x.py"))
    assert rules.excludes(str(ROOT / "private/notes.py"))
    assert rules.excludes(str(ROOT / "top.py"))
    assert not rules.excludes(str(ROOT / "sub/top.py"))  # "/top.py" is anchored to the root
    assert not rules.excludes(str(ROOT / "private/public.py"))
    assert not rules.excludes(str(ROOT / "main.py"))


def test_the_ignore_file_cannot_re_include_what_the_builtin_list_excludes() -> None:
    # .crucibleignore comes with the repository: it may only add exclusions.
    rules = PrivacyRules(ROOT, ignore_lines=("!.env", "!*.pem", "!id_rsa"))
    assert rules.excludes(str(ROOT / ".env"))
    assert rules.excludes(str(ROOT / "x.pem"))
    assert rules.excludes(str(ROOT / "id_rsa"))


def test_a_symbolic_link_to_an_excluded_file_is_excluded(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TOKEN=x\n")
    (tmp_path / "settings.txt").symlink_to(tmp_path / ".env")
    assert PrivacyRules(tmp_path).excludes(str(tmp_path / "settings.txt"))


def test_prompt_paths_are_relative_or_only_the_name() -> None:
    rules = PrivacyRules(ROOT)
    assert rules.prompt_path(str(ROOT / "src/pkg/main.py")) == "src/pkg/main.py"
    assert rules.prompt_path("/home/alice/elsewhere/helper.py") == "helper.py"
    assert rules.prompt_path("/home/alice/project-other/x.py") == "x.py"  # not inside ROOT
    assert rules.prompt_path("untitled:Untitled-1") == "untitled:Untitled-1"
    assert PrivacyRules(None).prompt_path("/home/alice/project/main.py") == "main.py"


def test_the_ignore_file_is_re_read_when_it_changes(tmp_path: Path) -> None:
    now = [0.0]
    privacy = WorkspacePrivacy(tmp_path, clock=lambda: now[0])
    target = str(tmp_path / "notes.py")
    assert not privacy.rules().excludes(target)
    (tmp_path / ".crucibleignore").write_text("notes.py\n")
    assert not privacy.rules().excludes(target)  # not looked at again within the interval
    now[0] = 1.5
    assert privacy.rules().excludes(target)


# -- the plan: what is sent ----------------------------------------------------------------------

GITHUB = "ghp_" + "a1B2c3D4e5" * 4


def _doc(path: str, text: str, language: str = "python") -> DocumentSnapshot:
    return DocumentSnapshot(f"file://{path}", path, language, 1, text)


def _plan(text: str, neighbours: tuple[DocumentSnapshot, ...] = (), *, redact: bool = True):  # type: ignore[no-untyped-def]
    snapshot = _doc(str(ROOT / "src/main.py"), text)
    window = cut_window(snapshot, len(text), max_prefix=6000, max_suffix=2000)
    privacy = PromptPrivacy(PrivacyRules(ROOT), redact)
    return plan_completion(
        CompletionSettings(),
        None,
        ["id"],
        snapshot,
        window,
        tuple(open_file(doc) for doc in neighbours),
        privacy,  # type: ignore[arg-type]
    )


def test_the_plan_sends_redacted_text_and_keys_on_it() -> None:
    plan = _plan(f"TOKEN = '{GITHUB}'\ndef f():\n    ")
    assert plan is not None
    assert GITHUB not in plan.fim.prefix and "<redacted>" in plan.fim.prefix
    assert plan.redactions == 1
    assert GITHUB in plan.window.prefix  # post-processing works on the real text
    # The key is a function of what is sent: another token gives the same prompt, same key.
    other = _plan(f"TOKEN = '{'ghp_' + 'Z9y8X7w6V5' * 4}'\ndef f():\n    ")
    assert other is not None and other.key == plan.key
    unredacted = _plan(f"TOKEN = '{GITHUB}'\ndef f():\n    ", redact=False)
    assert unredacted is not None and GITHUB in unredacted.fim.prefix


def test_the_plan_leaves_out_excluded_neighbours_and_shows_relative_paths() -> None:
    env = _doc(str(ROOT / ".env"), "OPENAI_API_KEY=sk-live-value-0123456789abcdef\n", "dotenv")
    helper = _doc(str(ROOT / "src/helper.py"), f"def helper():\n    return '{GITHUB}'\n")
    outside = _doc("/home/alice/notes/todo.py", "def todo():\n    pass\n")
    plan = _plan("import helper\n", (env, helper, outside))
    assert plan is not None
    assert [f.path for f in plan.fim.extra] == ["src/helper.py", "todo.py"]
    assert plan.fim.path == "src/main.py"
    assert GITHUB not in plan.fim.extra[0].text and plan.redactions == 1


def test_a_window_with_a_private_key_gets_no_plan() -> None:
    key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBk\n-----END EC PRIVATE KEY-----\n"
    assert _plan(f"KEY = '''\n{key}'''\nx = ") is None
    neighbour = _doc(str(ROOT / "src/keys.py"), f"KEY = '''\n{key}'''\n")
    plan = _plan("import keys\n", (neighbour,))
    assert plan is not None and plan.fim.extra == ()  # a neighbour with one is left out
