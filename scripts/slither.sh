#!/usr/bin/env bash
# Slither (static analysis) over the contracts, offline: Hardhat compiles them with the npm
# solc (soljson, no compiler download) into build/slither, and Slither reads that build
# (--hardhat-ignore-compile) instead of fetching a compiler of its own.
# Slither gets its own venv (.tools/slither-venv, from PyPI): it needs web3 < 8, the node 8.
# Writes the findings as JSON (default build/slither/slither.json); every one must be triaged
# in contracts/slither.triage.json (tests/contracts/test_slither.py checks, docs/security.md
# explains).
# Usage: scripts/slither.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/slither/slither.json}
version=0.11.6
venv=.tools/slither-venv
PY=${PYTHON:-python3}

if [[ "$("$venv/bin/slither" --version 2>/dev/null)" != "$version" ]]; then
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install -q "slither-analyzer==$version"
fi

export EMR_HARDHAT_ARTIFACTS=build/slither/artifacts EMR_HARDHAT_CACHE=build/slither/cache
npx hardhat compile --quiet

mkdir -p "$(dirname "$out")"
rm -f "$out"
# Slither exits non-zero whenever it reports something: the triage decides, not its status.
"$venv/bin/slither" . \
  --hardhat-ignore-compile \
  --hardhat-artifacts-directory "$EMR_HARDHAT_ARTIFACTS" \
  --hardhat-cache-directory "$EMR_HARDHAT_CACHE" \
  --exclude-dependencies \
  --json "$out" >"$out.log" 2>&1 || true
if ! "$venv/bin/python" -c 'import json, sys; sys.exit(not json.load(open(sys.argv[1]))["success"])' "$out"; then
  cat "$out.log" >&2
  echo "slither did not finish an analysis" >&2
  exit 1
fi
echo "$out"
