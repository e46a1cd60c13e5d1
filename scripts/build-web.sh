#!/usr/bin/env bash
# Build the patient portal and auditor explorer (node/web/src) into node/web/static, which
# is committed: the node serves it without Node.js. Needs the npm packages (setup.sh --dev).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-}"
if [[ -n "$out" ]]; then
  exec npx --no-install vite build --config node/web/vite.config.mjs --outDir "$out" --emptyOutDir
fi
exec npx --no-install vite build --config node/web/vite.config.mjs
