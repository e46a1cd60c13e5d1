#!/usr/bin/env bash
# Debian's Chromium for the page tests (tests/node/web), driven by the npm playwright-core
# package: no browser is downloaded. Idempotent.
#
#   bash scripts/browser.sh install
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "browser: $*" >&2; }

as_root() {
  if (( EUID == 0 )); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root to run: $*"; exit 1
  fi
}

case "${1:-install}" in
  install)
    if [[ ! -x /usr/bin/chromium ]]; then
      log "installing chromium (Debian)"
      if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; then
        as_root apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
      fi
    fi
    /usr/bin/chromium --version
    ;;
  *) log "usage: browser.sh install"; exit 2 ;;
esac
