"""Privacy rules: which files never reach a provider, and how a file's path is shown to one.

A file is excluded when any of three lists matches it, each in gitignore syntax (matched by
``pathspec``'s ``GitIgnoreSpec``, which follows git's own rules: ``!`` negation, ``/``
anchoring, ``dir/``, ``**``):

* ``BUILTIN_EXCLUDES``: files that hold secrets (dotenv files, private keys and key stores,
  the credential files of common tools), version-control internals, and files not worth
  sending (lock files, minified code, source maps);
* ``[privacy] exclude`` from the configuration;
* ``.crucibleignore`` at the workspace root.

The lists are a union: a ``!pattern`` re-includes only what its own list excluded. So a
repository's ``.crucibleignore`` (which comes with the code, and is not trusted) can add
exclusions but never re-include a ``.env`` the built-in list keeps back. Paths inside the
workspace are matched relative to its root; a file outside it (``~/.ssh/id_rsa``) is matched by
the built-in and configured lists against its absolute path, so patterns without a ``/`` and
``**/`` patterns apply anywhere. A symbolic link is excluded when its target is.

Paths shown to a model (``prompt_path``) are relative to the workspace root, or only the file's
name outside it: a prompt never carries ``/home/<user>/…``.

Nothing here raises on input: an unreadable ``.crucibleignore`` counts as empty (and is logged).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from pathspec import GitIgnoreSpec

logger = logging.getLogger(__name__)

IGNORE_FILE = ".crucibleignore"

# How often (seconds) WorkspacePrivacy looks at IGNORE_FILE again: one ``stat`` a second at
# most, however fast requests come, and an edit to the file applies within a second.
_CHECK_INTERVAL_S = 1.0

# Sources: gitleaks's default configuration (its global path allowlist: lock files, minified
# vendor code, .git), Continue's DEFAULT_IGNORE_FILETYPES (*.env, *.lock, *-lock.json), and the
# credential files each tool documents as holding a token or password.
BUILTIN_EXCLUDES: tuple[str, ...] = (
    # dotenv and friends: .env, .env.local, .env.production, prod.env, direnv's .envrc
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    # private keys, certificates with keys, key stores
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.ppk",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "**/.ssh/",
    "**/.gnupg/",
    # credential files of common tools
    ".npmrc",
    ".yarnrc.yml",
    ".pypirc",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".htpasswd",
    ".git-credentials",
    ".gitcookies",
    ".vault-token",
    "**/.aws/credentials",
    "**/.docker/config.json",
    "**/.kube/config",
    "kubeconfig",
    "**/.config/gh/hosts.yml",
    "*.tfvars",
    "*.tfstate",
    "*.tfstate.backup",
    "secrets.*",
    "credentials.json",
    "client_secret*.json",
    # version-control internals
    ".git/",
    ".hg/",
    ".svn/",
    # generated, not worth sending: lock files, minified code, source maps
    "*.lock",
    "*.lockb",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "go.sum",
    "*.min.js",
    "*.min.css",
    "*.map",
)

_CACHE_LIMIT = 1024  # paths whose verdict is remembered (open documents, a few times over)


class PrivacyRules:
    """The exclusion lists of one workspace, and its root for showing paths."""

    def __init__(
        self,
        root: Path | None,
        exclude: Sequence[str] = (),
        ignore_lines: Sequence[str] = (),
    ) -> None:
        self._root = root
        self._root_text = os.path.normpath(str(root)) if root is not None else None
        self._everywhere = (_spec(BUILTIN_EXCLUDES), _spec(exclude))  # inside and outside root
        self._workspace_only = _spec(ignore_lines)
        self._verdicts: dict[str, bool] = {}

    def excludes(self, path: str) -> bool:
        """Whether the document at ``path`` (a file-system path, or a URI when it has none)
        must never be sent to a provider, as the file completed or as context."""
        verdict = self._verdicts.get(path)
        if verdict is None:
            verdict = self._matches(path)
            real = _real_path(path)
            if not verdict and real is not None and real != path:
                verdict = self._matches(real)
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[path] = verdict
        return verdict

    def prompt_path(self, path: str) -> str:
        """``path`` as a model may see it: relative to the root, else the file's name."""
        relative = self._relative(path)
        if relative is not None:
            return relative
        name = path.replace("\\", "/").rstrip("/").rpartition("/")[2]
        return name or path

    def _relative(self, path: str) -> str | None:
        if self._root_text is None or not os.path.isabs(path):
            return None
        normal = os.path.normpath(path)
        if normal == self._root_text or not normal.startswith(
            self._root_text.rstrip(os.sep) + os.sep
        ):
            return None
        return PurePosixPath(*Path(os.path.relpath(normal, self._root_text)).parts).as_posix()

    def _matches(self, path: str) -> bool:
        relative = self._relative(path)
        if relative is not None:
            return self._workspace_only.match_file(relative) or any(
                spec.match_file(relative) for spec in self._everywhere
            )
        # Outside the workspace (or no workspace): the absolute path, without its root, so
        # "**/.aws/credentials" and "*.pem" match anywhere.
        anywhere = path.replace("\\", "/").lstrip("/")
        return any(spec.match_file(anywhere) for spec in self._everywhere)


def _spec(lines: Iterable[str]) -> GitIgnoreSpec:
    return GitIgnoreSpec.from_lines(list(lines))


def _real_path(path: str) -> str | None:
    """Where a symbolic link at ``path`` leads (None for a path that is no file path)."""
    if not os.path.isabs(path):
        return None
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def read_ignore_file(root: Path | None) -> tuple[str, ...]:
    """The lines of ``root/.crucibleignore``; none when there is no such readable file."""
    if root is None:
        return ()
    try:
        text = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        logger.warning("%s: cannot read it (%s); no extra exclusions", IGNORE_FILE, exc)
        return ()
    return tuple(text.splitlines())


class WorkspacePrivacy:
    """``PrivacyRules`` kept in step with ``.crucibleignore``: the file is looked at (one
    ``stat``) at most once per ``_CHECK_INTERVAL_S``, and re-read when it changed."""

    def __init__(
        self,
        root: Path | None,
        exclude: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = root
        self._exclude = tuple(exclude)
        self._clock = clock
        self._checked_at = clock()
        self._stamp = self._file_stamp()
        self._rules = PrivacyRules(root, self._exclude, read_ignore_file(root))

    def rules(self) -> PrivacyRules:
        now = self._clock()
        if now - self._checked_at >= _CHECK_INTERVAL_S:
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._rules = PrivacyRules(self._root, self._exclude, read_ignore_file(self._root))
                logger.info("%s changed: exclusions reloaded", IGNORE_FILE)
        return self._rules

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._root is None:
            return None
        try:
            info = (self._root / IGNORE_FILE).stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size
