"""The servers the peers benchmark starts: how each is installed, launched and isolated.

- **crucible**: ``python -m crucible --stdio``, configuration and cache in a scratch directory
  (``XDG_CONFIG_HOME``, ``XDG_CACHE_HOME``), one Ollama provider (the loopback fake) given in
  ``initializationOptions``, every other setting at its default;
- **tabby-agent** (npm ``tabby-agent``, :data:`TABBY_AGENT`): ``node dist/cli.js --lsp --stdio``
  with ``HOME`` in a scratch directory holding ``~/.tabby-client/agent/config.toml``: the
  server endpoint is the fake (which speaks the Tabby API), a token is set (without one the
  agent signs in through app.tabbyml.com) and anonymous usage tracking is off;
- **copilot** (npm ``@github/copilot-language-server``, :data:`COPILOT`): the package's
  ``copilot-language-server --stdio``, signed out, ``HOME`` and the XDG folders in a scratch
  directory. On Node older than 22.13 its launcher runs the bundled native binary as a child
  process, so it is two processes. Start-up and memory only: completions need a GitHub account;
- **pygls**: ``benchmarks/_peer_pygls.py``, a bare pygls server (the framework alone);
- **floor**: ``benchmarks/_peer_floor.py``, a stdlib-only JSON-RPC server.

The npm packages are installed once, pinned, into a cache folder outside the checkout
(``$CRUCIBLE_PEERS_CACHE``, else ``$XDG_CACHE_HOME/crucible/peers``, else
``~/.cache/crucible/peers``), one folder per package and version. Installing is setup, not the
benchmark. While it runs, the Node servers get a minimal environment (``PATH``, ``LANG`` and
the scratch ``HOME``, nothing of the user's) with ``HTTP(S)_PROXY`` pointing at a closed port on
127.0.0.1 and ``NO_PROXY`` for 127.0.0.1: what Copilot tries to reach (its telemetry endpoint,
signed out) fails on the loopback interface instead of leaving the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
_INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def folder(self, cache: Path) -> Path:
        return cache / f"{self.name.replace('@', '').replace('/', '-')}-{self.version}"

    def installed(self, cache: Path) -> bool:
        manifest = self.folder(cache) / "node_modules" / self.name / "package.json"
        return manifest.is_file() and f'"version": "{self.version}"' in manifest.read_text()


TABBY_AGENT = NpmPackage("tabby-agent", "1.5.0")
COPILOT = NpmPackage("@github/copilot-language-server", "1.539.0")


def cache_root() -> Path:
    explicit = os.environ.get("CRUCIBLE_PEERS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crucible" / "peers"


def install(package: NpmPackage, cache: Path, *, allowed: bool) -> str | None:
    """Make sure ``package`` is in the cache; None when it is, else why it is not."""
    if package.installed(cache):
        return None
    if not allowed:
        return f"{package.spec} is not installed in {cache} and --no-install was given"
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH"
    folder = package.folder(cache)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true}\n')
    command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", package.spec]
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"npm install {package.spec} took longer than {_INSTALL_TIMEOUT_S} s"
    if done.returncode != 0 or not package.installed(cache):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"npm install {package.spec} failed: " + " / ".join(tail)
    return None


def node_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or None


@dataclass(frozen=True)
class Launch:
    """How to start one server: command, environment, folder, initialize options."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    initialization_options: Any = None
    notes: list[str] = field(default_factory=list)


def _scratch(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "workspace").mkdir(parents=True, exist_ok=True)
    return folder


def _node_env(home: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = CLOSED_PORT_PROXY
    return env


def crucible(
    root: Path,
    provider_url: str,
    model: str,
    log_level: str = "INFO",
    *,
    name: str = "crucible",
    checkout: Path | None = None,
) -> Launch:
    """Crucible as installed, or, with ``checkout``, the server of another checkout of it (its
    ``server/`` and root on ``PYTHONPATH``: before/after in one run), as system ``name``."""
    folder = _scratch(root, name)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(folder / "config"),
        "XDG_CACHE_HOME": str(folder / "cache"),
    }
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join((str(checkout / "server"), str(checkout)))
    log = folder / "server.log"
    argv = [sys.executable, "-m", "crucible", "--stdio", "--log-file", str(log)]
    argv += ["--log-level", log_level]
    # The fake as its one provider; every other setting at its default, as a user gets it.
    provider = {"name": "bench", "kind": "ollama", "base_url": provider_url, "model": model}
    return Launch(name, argv, env, folder / "workspace", {"providers": [provider]})


def tabby_agent(root: Path, cache: Path, provider_url: str) -> Launch:
    folder = _scratch(root, "tabby-agent")
    home = folder / "home"
    config = home / ".tabby-client" / "agent" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[server]\n"
        f'endpoint = "{provider_url}"\n'
        'token = "crucible-peers-benchmark"\n'
        "[logs]\n"
        'level = "silent"\n'
        "[anonymousUsageTracking]\n"
        "disable = true\n"
    )
    script = TABBY_AGENT.folder(cache) / "node_modules" / "tabby-agent" / "dist" / "cli.js"
    node = shutil.which("node") or "node"
    return Launch("tabby-agent", [node, str(script), "--lsp", "--stdio"], _node_env(home), home)


def copilot(root: Path, cache: Path) -> Launch:
    folder = _scratch(root, "copilot")
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    binary = COPILOT.folder(cache) / "node_modules" / ".bin" / "copilot-language-server"
    options = {
        "editorInfo": {"name": "crucible-peers", "version": "1"},
        "editorPluginInfo": {"name": "crucible-peers", "version": "1"},
    }
    return Launch(
        "copilot", [str(binary), "--stdio"], _node_env(home), folder / "workspace", options
    )


def bare_pygls(root: Path) -> Launch:
    folder = _scratch(root, "pygls")
    argv = [sys.executable, str(BENCHMARKS / "_peer_pygls.py")]
    return Launch("pygls", argv, dict(os.environ), folder / "workspace")


def stdlib_floor(root: Path) -> Launch:
    folder = _scratch(root, "floor")
    argv = [sys.executable, str(BENCHMARKS / "_peer_floor.py")]
    return Launch("floor", argv, dict(os.environ), folder / "workspace")
