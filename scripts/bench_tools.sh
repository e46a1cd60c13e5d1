#!/usr/bin/env bash
# Tools the HTTP benchmarks need (scripts/bench_http.py): wrk from Debian, and py-spy and
# psutil in .venv (both are in the dev extra: `bash scripts/setup.sh --dev` installs them).
#
#   bash scripts/bench_tools.sh          # idempotent: what is there is left alone
#
# wrk comes from apt-get (as root, or via sudo); run `apt-get update` first on a fresh
# machine if the package is not found.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "bench_tools: $*" >&2; }

as_root() {
  if (( EUID == 0 )); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; then
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
  fi
fi
wrk --version 2>&1 | head -1 || true   # wrk prints its version and exits 1

[[ -x .venv/bin/python ]] || { log "no .venv: run scripts/setup.sh --dev first"; exit 1; }
if ! .venv/bin/python -c 'import psutil' 2>/dev/null || [[ ! -x .venv/bin/py-spy ]]; then
  log "installing py-spy and psutil into .venv"
  .venv/bin/pip install -q "py-spy>=0.4,<0.5" "psutil>=7,<8"
fi
.venv/bin/py-spy --version
