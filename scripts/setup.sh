#!/usr/bin/env bash
# Install emr-node and its tools into this checkout: a Python venv (.venv) and, with
# --dev, the test tools and the npm packages that compile the contracts (Hardhat, solc).
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "emr-node needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
stamp=.venv/.emr-installed
want="$(sha256sum pyproject.toml | cut -c1-16)-$dev"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if (( dev )); then .venv/bin/pip install -q --only-binary groth16py -e ".[dev]"
  else .venv/bin/pip install -q --only-binary groth16py -e .; fi
  echo "$want" > "$stamp"
fi

if (( dev )); then
  if ! command -v npm >/dev/null; then
    echo "the contract tests need Node.js >= 20 and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
  lock="$(sha256sum package-lock.json | cut -c1-16)"
  if [[ "$(cat node_modules/.emr-installed 2>/dev/null)" != "$lock" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock" > node_modules/.emr-installed
  fi
fi
