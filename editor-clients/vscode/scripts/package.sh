#!/usr/bin/env bash
# Builds the extension's platform packages, each carrying the server and its Python libraries
# (scripts/bundle.py): co-sidecar-<target>-<version>.vsix for every target given, default all.
#   npm run package                    # linux-x64 linux-arm64 darwin-arm64 win32-x64
#   npm run package -- linux-x64       # just one
# PYTHON (default: the repository's .venv/bin/python, else python3) runs pip for the bundle.
set -euo pipefail
ext="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$ext/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(linux-x64 linux-arm64 darwin-arm64 win32-x64)
cd "$ext"
[ -f node_modules/.package-lock.json ] || npm ci --no-audit --no-fund
version="$(node -p 'require("./package.json").version')"
node scripts/build.mjs --production  # out/extension.js, once for every target
for target in "${targets[@]}"; do
  "$python" scripts/bundle.py --target "$target"
  out="co-sidecar-$target-$version.vsix"
  rm -f "$out"
  npx --no-install vsce package --no-dependencies --allow-missing-repository --target "$target" --out "$out"
done
