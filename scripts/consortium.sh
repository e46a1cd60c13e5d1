#!/usr/bin/env bash
# N hospitals on one chain, on this machine, for trials and demos (issue 14).
#
#   scripts/consortium.sh start N    start N >= 3 hospitals (default 3) on one hardhat node
#   scripts/consortium.sh status     each hospital's address, processes and membership
#   scripts/consortium.sh stop       stop every hospital, its IPFS daemon and the chain
#   scripts/consortium.sh purge      stop, then drop the MySQL databases, flush the Redis
#                                    databases and delete the state dir
#
# The hardhat node keeps its chain in memory: after `stop` the contracts are gone, so the
# state dir is stale and `start` refuses it until `purge`.
#
# Each hospital i has its own data directory, MySQL database (emr_consortium_<i>), Redis
# database number (8+i), js-ipfs daemon and key store (hospital 0's in SoftHSM2, the others
# passphrase-encrypted files), and runs `emr-node worker` + `emr-node api`. Hospital 0 deploys
# the contracts; the others get copies of its deployment manifests and are admitted by
# governance votes through the node API (`emr-node governance propose` / `vote`).
#
# Addresses: where `ip netns` works (root, CAP_SYS_ADMIN), hospital i runs in network
# namespace emr-h<i> and its API listens on 10.77.<i>.2:8700; the shared services (MariaDB,
# Redis, the chain) are reached through socat forwarders on the host side, 10.77.<i>.1.
# Otherwise (or with EMR_CONSORTIUM_NETNS=0) hospital i listens on 127.0.0.1:<8700+i>.
#
# Environment:
#   EMR_CONSORTIUM_STATE     state dir (default .tools/consortium)
#   EMR_CONSORTIUM_NETNS     auto (default) | 1 | 0
#   EMR_CONSORTIUM_CHAIN_PORT  hardhat JSON-RPC port (default 8645)
#   EMR_HSM_PIN, EMR_HSM_SO_PIN  hospital 0's SoftHSM2 PINs (default: development PINs)
# The passphrases and PINs here are development values: this is a trial setup, not a
# production deployment (see docs/consortium.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=$(realpath -m "${EMR_CONSORTIUM_STATE:-.tools/consortium}")
chain_port=${EMR_CONSORTIUM_CHAIN_PORT:-8645}
emr=$root/.venv/bin/emr-node
network=consortium
api_port=8700

log() { echo "consortium: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  echo "usage: $0 start [N] | stop | status | purge" >&2
  exit 2
}

# -- addresses ----------------------------------------------------------------------------
netns_mode() {
  local wanted=${EMR_CONSORTIUM_NETNS:-auto}
  if [[ -f $state/netns ]]; then cat "$state/netns"; return; fi
  case $wanted in
    0) echo 0 ;;
    1) echo 1 ;;
    *)
      if command -v ip >/dev/null && command -v socat >/dev/null \
        && ip netns add emr-probe-$$ 2>/dev/null; then
        ip netns del emr-probe-$$
        echo 1
      else
        echo 0
      fi
      ;;
  esac
}

ns() { echo "emr-h$1"; }
# Run a command in hospital $1's namespace (or here, without namespaces).
in_ns() {
  local i=$1; shift
  if [[ $(cat "$state/netns") == 1 ]]; then ip netns exec "$(ns "$i")" "$@"; else "$@"; fi
}
api_host() { if [[ $(cat "$state/netns") == 1 ]]; then echo "10.77.$1.2"; else echo 127.0.0.1; fi; }
api_url() {
  if [[ $(cat "$state/netns") == 1 ]]; then echo "http://10.77.$1.2:$api_port"
  else echo "http://127.0.0.1:$((api_port + $1))"; fi
}
# Where hospital $1 reaches MariaDB, Redis and the chain.
service_host() { if [[ $(cat "$state/netns") == 1 ]]; then echo "10.77.$1.1"; else echo 127.0.0.1; fi; }

make_ns() {
  local i=$1 n h
  n=$(ns "$i")
  h="$state/h$i"
  ip netns list | grep -qw "$n" || ip netns add "$n"
  if ! ip link show "emrh$i" >/dev/null 2>&1; then
    ip link add "emrh$i" type veth peer name "emrh${i}p"
    ip link set "emrh${i}p" netns "$n"
    ip addr add "10.77.$i.1/24" dev "emrh$i"
    ip link set "emrh$i" up
    ip netns exec "$n" ip addr add "10.77.$i.2/24" dev "emrh${i}p"
    ip netns exec "$n" ip link set "emrh${i}p" up
    ip netns exec "$n" ip link set lo up
  fi
  # The shared services listen on the host's loopback: forward them to this hospital.
  local port
  for port in 3306 6379 "$chain_port"; do
    if ! pid_alive "$h/socat-$port.pid"; then
      setsid socat "TCP-LISTEN:$port,bind=10.77.$i.1,reuseaddr,fork" "TCP:127.0.0.1:$port" \
        </dev/null >/dev/null 2>&1 &
      echo $! >"$h/socat-$port.pid"
    fi
  done
}

# -- processes ----------------------------------------------------------------------------
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.5
  done
}

http_ok() { # http_ok HOSPITAL URL: the URL answers below 500 (from the hospital's namespace)
  local code
  code=$(in_ns "$1" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2") || return 1
  [[ $code != 000 && $code -lt 500 ]]
}

spawn() { # spawn HOSPITAL NAME ARGS...: emr-node ARGS in the hospital's env and namespace
  local i=$1 name=$2; shift 2
  local h="$state/h$i"
  pid_alive "$h/$name.pid" && return 0
  (
    set -a
    # shellcheck disable=SC1091
    source "$h/env"
    set +a
    local cmd=("$emr" "$@")
    [[ $(cat "$state/netns") == 1 ]] && cmd=(ip netns exec "$(ns "$i")" "${cmd[@]}")
    # Not a function in the background: $! must be the node's own pid (both exec).
    setsid "${cmd[@]}" </dev/null >>"$h/$name.log" 2>&1 &
    echo $! >"$h/$name.pid"
  )
}

write_env() {
  local i=$1 h="$state/h$i" svc ipfs_url
  svc=$(service_host "$i")
  ipfs_url=$(in_ns "$i" env EMR_IPFS_STATE="$h/ipfs" EMR_IPFS_PORTS=auto \
    bash scripts/ipfs.sh status 1 | awk '/^node0/ {print $3}')
  [[ -n $ipfs_url ]] || die "hospital $i: no IPFS API URL"
  # Single-quoted values: the file is sourced (values hold spaces, no quotes).
  umask 077
  cat >"$h/env" <<EOF
EMR_MODE='production'
EMR_DATA_DIR='$h/data'
EMR_HOSPITAL_NAME='Hospital $i'
EMR_HSM__PASSPHRASE='consortium trial passphrase $i'
EMR_HSM__ALLOW_SOFTWARE_IN_PRODUCTION='true'
EMR_ZK__ALLOW_DEV_KEYS_IN_PRODUCTION='true'
EMR_ZK__KEYS_DIR='$state/zk-keys'
EMR_CHAIN__RPC_URL='http://$svc:$chain_port'
EMR_CHAIN__NETWORK='$network'
EMR_CHAIN__FUND_DEV_ACCOUNT='true'
EMR_STORAGE__IPFS_NODES='["$ipfs_url"]'
EMR_STORAGE__REPLICATION_MIN='1'
EMR_STORAGE__REPLICATION_MAX='1'
EMR_STORAGE__MYSQL_HOST='$svc'
EMR_STORAGE__MYSQL_DATABASE='emr_consortium_$i'
EMR_STORAGE__REDIS_URL='redis://$svc:6379/$((8 + i))'
EMR_API__PUBLIC_URL='$(api_url "$i")'
EMR_WORKER__PORT='$((8790 + i))'
EOF
  if ((i == 0)); then
    cat >>"$h/env" <<EOF
SOFTHSM2_CONF='$h/hsm/softhsm2.conf'
EMR_HSM__BACKEND='pkcs11'
EMR_HSM__TOKEN_LABEL='emr-consortium-0'
EMR_HSM__PIN='${EMR_HSM_PIN:-consortium-dev-pin}'
EOF
  fi
  umask 022
}

start_hospital() { # worker, then API; waits for both
  local i=$1 h="$state/h$i"
  spawn "$i" worker worker
  wait_for 300 "hospital $i's worker (see $h/worker.log)" \
    http_ok "$i" "http://127.0.0.1:$((8790 + i))/status"
  spawn "$i" api api --host "$(api_host "$i")" --port "$(api_url "$i" | sed 's/.*://')" \
    --processes 1
  wait_for 120 "hospital $i's API (see $h/api.log)" http_ok "$i" "$(api_url "$i")/health"
}

hospital_address() { curl -sf "$(api_url "$1")/info" | jq -r .hospital; }
is_member() { curl -sf "$(api_url "$1")/info" | jq -e --arg a "$2" '[.members[].address] | index($a)' >/dev/null; }

start() {
  local n=${1:-3} i j
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 3)) || die "N must be a number >= 3"
  ((n <= 200)) || die "N must be at most 200"
  [[ -x $emr ]] || die "no $emr: create the venv first (see README)"
  mkdir -p "$state"
  if [[ -f $state/size && $(cat "$state/size") != "$n" ]]; then
    die "a consortium of $(cat "$state/size") hospitals exists in $state: stop it (and remove the dir) first"
  fi
  if [[ -f $state/size ]] && ! EMR_CHAIN_DIR="$state/chain" EMR_CHAIN_PORT=$chain_port \
    bash scripts/chain.sh status >/dev/null 2>&1; then
    die "$state belongs to a chain that is gone (hardhat keeps it in memory): run purge first"
  fi
  if [[ ! -f $state/size ]]; then
    bash scripts/services.sh start >&2
    local leftover
    leftover=$(mariadb -h 127.0.0.1 -u root -N -e "SHOW DATABASES LIKE 'emr\\_consortium\\_%'")
    [[ -z $leftover ]] || die "databases of an earlier consortium exist ($(echo $leftover)): drop them or run purge"
  fi
  echo "$n" >"$state/size"
  netns_mode >"$state/netns.tmp" && mv "$state/netns.tmp" "$state/netns"
  log "network namespaces: $([[ $(cat "$state/netns") == 1 ]] && echo yes || echo "no (loopback ports)")"

  bash scripts/services.sh start >&2
  EMR_CHAIN_DIR="$state/chain" EMR_CHAIN_PORT=$chain_port bash scripts/chain.sh start >&2

  for ((i = 0; i < n; i++)); do
    mkdir -p "$state/h$i/data"
    [[ $(cat "$state/netns") == 1 ]] && make_ns "$i"
    in_ns "$i" env EMR_IPFS_STATE="$state/h$i/ipfs" EMR_IPFS_PORTS=auto \
      bash scripts/ipfs.sh start 1 >&2
    if ((i == 0)) && [[ ! -d $state/h0/hsm ]]; then
      EMR_HSM_PIN=${EMR_HSM_PIN:-consortium-dev-pin} EMR_HSM_SO_PIN=${EMR_HSM_SO_PIN:-consortium-dev-so-pin} \
        bash scripts/softhsm.sh init "$state/h0/hsm" emr-consortium-0 >&2
    fi
    write_env "$i"
  done

  # Hospital 0 founds: its worker deploys; the others start from copies of its manifests.
  start_hospital 0
  for ((i = 1; i < n; i++)); do
    mkdir -p "$state/h$i/data/deployments"
    cp -n "$state/h0/data/deployments/$network"*.json "$state/h$i/data/deployments/"
    start_hospital "$i"
  done

  for ((i = 0; i < n; i++)); do
    local tokenfile="$state/h$i/hospital-token"
    if [[ ! -s $tokenfile ]]; then
      (umask 077 && "$emr" token create hospital --name consortium --url "$(api_url "$i")" \
        --data-dir "$state/h$i/data" >"$tokenfile")
    fi
    hospital_address "$i" >"$state/h$i/address"
  done

  # Admission by vote: hospital 0 proposes, the members vote until a strict majority.
  for ((i = 1; i < n; i++)); do
    local address proposal id
    address=$(cat "$state/h$i/address")
    is_member 0 "$address" && continue
    proposal=$("$emr" governance propose admit "$address" --name "Hospital $i" \
      --url "$(api_url 0)" --token "$(cat "$state/h0/hospital-token")")
    id=$(jq -r .id <<<"$proposal")
    for ((j = 1; j < i; j++)); do
      [[ $(jq -r .executed <<<"$proposal") == true ]] && break
      proposal=$("$emr" governance vote "$id" --url "$(api_url "$j")" \
        --token "$(cat "$state/h$j/hospital-token")")
    done
    [[ $(jq -r .executed <<<"$proposal") == true ]] || die "admission of hospital $i did not pass: $proposal"
    log "hospital $i ($address) admitted by proposal $id"
  done
  status
}

status() {
  [[ -f $state/size ]] || { echo "no consortium in $state"; return 0; }
  local n i h
  n=$(cat "$state/size")
  echo "chain http://127.0.0.1:$chain_port; network namespaces: $(cat "$state/netns" 2>/dev/null || echo ?)"
  for ((i = 0; i < n; i++)); do
    h="$state/h$i"
    local worker=stopped api=stopped member=no address
    pid_alive "$h/worker.pid" && worker=running
    pid_alive "$h/api.pid" && api=running
    address=$(cat "$h/address" 2>/dev/null || echo "?")
    [[ $api == running ]] && is_member "$i" "$address" 2>/dev/null && member=yes
    echo "hospital $i  $(api_url "$i")  address $address  worker $worker  api $api  member $member  data $h/data"
  done
}

stop() {
  [[ -f $state/size ]] || { log "no consortium in $state"; return 0; }
  local n i h f
  n=$(cat "$state/size")
  for ((i = 0; i < n; i++)); do
    h="$state/h$i"
    for f in "$h/api.pid" "$h/worker.pid"; do
      if pid_alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
  done
  for ((i = 0; i < n; i++)); do
    h="$state/h$i"
    for f in "$h/api.pid" "$h/worker.pid"; do
      local k=0
      while pid_alive "$f" && ((k++ < 60)); do sleep 0.5; done
      if pid_alive "$f"; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
      rm -f "$f"
    done
    if [[ -d $h/ipfs ]]; then
      # By pid: works from the host, even once the namespace is gone.
      EMR_IPFS_STATE="$h/ipfs" bash scripts/ipfs.sh stop >&2 || true
    fi
    for f in "$h"/socat-*.pid; do
      [[ -e $f ]] || continue
      if pid_alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
      rm -f "$f"
    done
    if [[ $(cat "$state/netns" 2>/dev/null) == 1 ]]; then
      ip link del "emrh$i" 2>/dev/null || true
      ip netns del "$(ns "$i")" 2>/dev/null || true
    fi
  done
  EMR_CHAIN_DIR="$state/chain" EMR_CHAIN_PORT=$chain_port bash scripts/chain.sh stop >&2 || true
  log "stopped (the chain is gone with it: \`$0 purge\` before the next start)"
}

purge() {
  [[ -f $state/size ]] || { log "no consortium in $state"; return 0; }
  local n i
  n=$(cat "$state/size")
  stop
  for ((i = 0; i < n; i++)); do
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS emr_consortium_$i" || true
    redis-cli -h 127.0.0.1 -n $((8 + i)) FLUSHDB >/dev/null || true
  done
  rm -rf "$state"
  log "purged $state"
}

case ${1:-} in
  start) start "${2:-3}" ;;
  stop) stop ;;
  purge) purge ;;
  status) status ;;
  *) usage ;;
esac
