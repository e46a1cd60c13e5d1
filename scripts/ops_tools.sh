#!/usr/bin/env bash
# Tools the operations tests need (tests/node/observability/test_rules.py): promtool, to
# load and unit-test the alert rules in scripts/deploy/prometheus. Debian ships it in the
# `prometheus` package (there is no separate promtool package); on a machine with systemd
# the package also enables a Prometheus service, which this script leaves stopped.
#
#   bash scripts/ops_tools.sh          # idempotent: what is there is left alone
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "ops_tools: $*" >&2; }

as_root() {
  if (( EUID == 0 )); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

if ! command -v promtool >/dev/null; then
  log "installing promtool (Debian package prometheus)"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      prometheus >/dev/null; then
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      prometheus >/dev/null
  fi
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
promtool --version 2>&1 | head -1
