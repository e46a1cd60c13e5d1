#!/usr/bin/env bash
# SoftHSM2: a software PKCS#11 token for tests, benchmarks and trials of the HSM key store.
#
#   scripts/softhsm.sh install          # apt-get install softhsm2 if softhsm2-util is missing
#   scripts/softhsm.sh init DIR LABEL   # private config DIR/softhsm2.conf, token LABEL in DIR/tokens
#   scripts/softhsm.sh env DIR          # print the exports that point the node at that token
#
# init reads the PINs from EMR_HSM_SO_PIN and EMR_HSM_PIN. softhsm2-util only takes PINs on
# its command line, so they are briefly visible in the process list: this is a setup tool for
# test tokens, never for a production HSM (initialise those with the vendor's tooling).
set -euo pipefail

MODULE=${EMR_HSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

log() { echo "softhsm: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
  if (( EUID == 0 )); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"
  fi
}

install() {
  if command -v softhsm2-util >/dev/null && [[ -e $MODULE ]]; then
    return 0
  fi
  log "installing softhsm2"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q softhsm2 >/dev/null \
    || { as_root apt-get update -q >/dev/null \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q softhsm2 >/dev/null; }
}

init() {
  local dir=${1:?usage: softhsm.sh init DIR LABEL} label=${2:?usage: softhsm.sh init DIR LABEL}
  [[ -n ${EMR_HSM_SO_PIN:-} ]] || die "set EMR_HSM_SO_PIN"
  [[ -n ${EMR_HSM_PIN:-} ]] || die "set EMR_HSM_PIN"
  mkdir -p "$dir/tokens"
  chmod 700 "$dir" "$dir/tokens"
  dir=$(cd "$dir" && pwd)
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir" >"$dir/softhsm2.conf"
  export SOFTHSM2_CONF=$dir/softhsm2.conf
  if softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *$"; then
    log "token $label already exists in $dir"
    return 0
  fi
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$EMR_HSM_SO_PIN" --pin "$EMR_HSM_PIN" >/dev/null
  log "token $label initialised in $dir/tokens"
}

env_of() {
  local dir=${1:?usage: softhsm.sh env DIR}
  dir=$(cd "$dir" && pwd)
  echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
  echo "export EMR_HSM__BACKEND=pkcs11"
  echo "export EMR_HSM__PKCS11_MODULE=$MODULE"
}

case ${1:-} in
  install) install ;;
  init) shift; init "$@" ;;
  env) shift; env_of "$@" ;;
  *) die "usage: softhsm.sh install | init DIR LABEL | env DIR" ;;
esac
