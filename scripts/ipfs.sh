#!/usr/bin/env bash
# A local cluster of js-ipfs daemons for the IPFS blob store (dev machines, tests, CI).
#
#   scripts/ipfs.sh install          install npm ipfs@0.66.1 into .tools/ipfs (cached)
#   scripts/ipfs.sh start [N]        init (first time) and start N daemons (default 2), peer them
#   scripts/ipfs.sh stop             stop every daemon of the state dir
#   scripts/ipfs.sh status [N]       print each daemon's state and API URL
#   scripts/ipfs.sh stop-node I      stop daemon I (0-based)
#   scripts/ipfs.sh wipe-node I      stop daemon I and delete its repo; `start` re-inits it
#                                    with a new identity on the same ports
#
# Kubo cannot be installed here (its installers download binaries); js-ipfs from npm serves
# the same Kubo RPC API once the dependency overrides in scripts/ipfs/package.json are
# applied (see /work/shared/RECIPES.md, IPFS). Environment:
#   EMR_IPFS_TOOLS   install dir          (default .tools/ipfs)
#   EMR_IPFS_STATE   repos, pids and logs (default .tools/ipfs-data)
#   EMR_IPFS_PORTS   "auto": free ports chosen at init; otherwise API 5001+i, swarm 4001+i
#                    (bases EMR_IPFS_API_PORT, EMR_IPFS_SWARM_PORT)
# Relative paths are taken from the repository root. Every address is bound to 127.0.0.1;
# a node keeps its ports for the life of the state dir (wipe-node included).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
support=$root/scripts/ipfs
tools=$(realpath -m "${EMR_IPFS_TOOLS:-.tools/ipfs}")
state=$(realpath -m "${EMR_IPFS_STATE:-.tools/ipfs-data}")
jsipfs=$tools/node_modules/.bin/jsipfs
version=0.66.1

die() { echo "ipfs.sh: $*" >&2; exit 1; }
helper() { node "$support/helper.cjs" "$@"; }
# js-ipfs 0.66.1's dependencies call Promise.withResolvers, which Node 20 lacks.
export NODE_OPTIONS="--require \"$support/promise-with-resolvers.cjs\"${NODE_OPTIONS:+ $NODE_OPTIONS}"

install_tools() {
  command -v npm >/dev/null || die "needs Node.js >= 20 and npm (Debian: apt-get install nodejs npm)"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  (( major >= 20 )) || die "needs Node.js >= 20 (found $(node --version))"
  mkdir -p "$tools"
  # One installer at a time (parallel test sessions share the tools dir).
  exec 9>"$tools/.install.lock"
  flock 9
  local stamp=$tools/.emr-installed want
  want="ipfs@$version $(sha256sum <"$support/package.json" | cut -c1-16) node$major"
  if [[ -x $jsipfs && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    exec 9>&-
    return
  fi
  echo "installing ipfs@$version into $tools (npm, a few minutes the first time)" >&2
  rm -f "$stamp"
  rm -rf "$tools/node_modules" "$tools/package-lock.json"
  cp "$support/package.json" "$tools/"
  # Optional deps are native modules js-ipfs can do without (and some try to download).
  (cd "$tools" && npm install --omit=optional --no-audit --no-fund --loglevel=error >&2)
  [[ -x $jsipfs ]] || die "npm did not install jsipfs"
  echo "$want" >"$stamp"
  exec 9>&-
}

node_dir() { echo "$state/node$1"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the pid of node $1's daemon if it is running, else nothing.
running_pid() {
  local dir pid
  dir=$(node_dir "$1")
  [[ -f $dir/daemon.pid ]] || return 0
  pid=$(cat "$dir/daemon.pid")
  # Guard against a recycled pid: it must still be the daemon of this repo. (js-ipfs
  # renames its process to "ipfs", so look at its environment, not its command line.)
  if kill -0 "$pid" 2>/dev/null && grep -qzx "IPFS_PATH=$dir/repo" "/proc/$pid/environ" 2>/dev/null; then
    echo "$pid"
  fi
}

api_url() { echo "http://127.0.0.1:$(cut -d' ' -f1 "$(node_dir "$1")/ports")"; }

assign_ports() {
  local i=$1 dir ports
  dir=$(node_dir "$i")
  [[ -f $dir/ports ]] && return
  if [[ ${EMR_IPFS_PORTS:-} == auto ]]; then
    ports=$(helper free-ports 2)
  else
    ports="$(( ${EMR_IPFS_API_PORT:-5001} + i )) $(( ${EMR_IPFS_SWARM_PORT:-4001} + i ))"
  fi
  echo "$ports" >"$dir/ports"
}

init_repo() {
  local i=$1 dir
  dir=$(node_dir "$i")
  mkdir -p "$dir"
  chmod 700 "$dir"
  assign_ports "$i"
  [[ -f $dir/repo/config ]] && return
  rm -rf "$dir/repo"
  IPFS_PATH=$dir/repo "$jsipfs" init --profile test >"$dir/init.log" 2>&1 \
    || { tail -n 20 "$dir/init.log" >&2; die "jsipfs init failed for node$i"; }
  # shellcheck disable=SC2046
  helper configure "$dir/repo/config" $(cat "$dir/ports")
}

start_node() {
  local i=$1 dir
  dir=$(node_dir "$i")
  [[ -n $(running_pid "$i") ]] && return
  init_repo "$i"
  local port
  for port in $(cat "$dir/ports"); do
    # js-ipfs does not always exit when a port is taken: refuse up front.
    if port_open "$port"; then
      die "node$i: port $port on 127.0.0.1 is taken by another process (state dir $state)"
    fi
  done
  # A daemon killed hard leaves its lock and api files behind; no daemon runs now.
  rm -rf "$dir/repo/repo.lock" "$dir/repo/api"
  IPFS_PATH=$dir/repo setsid nohup "$jsipfs" daemon --enable-preload=false \
    >"$dir/daemon.log" 2>&1 </dev/null &
  echo $! >"$dir/daemon.pid"
}

wait_node() {
  local i=$1 dir url want deadline
  dir=$(node_dir "$i")
  url=$(api_url "$i")
  want=$(helper peer-id "$dir/repo/config")
  deadline=$(( SECONDS + 90 ))
  # Wait for OUR daemon (same peer ID as its repo), not whatever answers on the port.
  until [[ $(helper peer-id "$url" 2>/dev/null) == "$want" ]]; do
    if [[ -z $(running_pid "$i") ]]; then
      tail -n 20 "$dir/daemon.log" >&2
      die "node$i exited during start-up (log: $dir/daemon.log)"
    fi
    if (( SECONDS >= deadline )); then
      stop_node "$i"
      die "node$i did not answer on $url within 90 s (log: $dir/daemon.log)"
    fi
    sleep 0.5
  done
}

swarm_addr() {
  local i=$1
  echo "/ip4/127.0.0.1/tcp/$(cut -d' ' -f2 "$(node_dir "$i")/ports")/p2p/$(helper peer-id "$(api_url "$i")")"
}

peer_all() {
  local n=$1 i j
  local -a addrs=()
  for (( i = 0; i < n; i++ )); do addrs[i]=$(swarm_addr "$i"); done
  for (( i = 0; i < n; i++ )); do
    for (( j = i + 1; j < n; j++ )); do
      helper rpc "$(api_url "$i")" "swarm/connect?arg=${addrs[j]}" >/dev/null \
        || echo "ipfs.sh: warning: node$i could not connect to node$j" >&2
    done
  done
}

stop_node() {
  local i=$1 pid dir
  dir=$(node_dir "$i")
  pid=$(running_pid "$i")
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/daemon.pid"
}

# Node indices present in the state dir.
known_nodes() {
  local d
  for d in "$state"/node*; do
    [[ -d $d ]] && echo "${d##*/node}"
  done | sort -n
}

status() {
  local n=${1:-} i pid url
  local -a nodes
  if [[ -n $n ]]; then mapfile -t nodes < <(seq 0 $(( n - 1 ))); else mapfile -t nodes < <(known_nodes); fi
  for i in "${nodes[@]}"; do
    if [[ ! -f $(node_dir "$i")/ports ]]; then
      echo "node$i absent"
      continue
    fi
    url=$(api_url "$i")
    pid=$(running_pid "$i")
    if [[ -n $pid && $(helper peer-id "$url" 2>/dev/null) == \
          "$(helper peer-id "$(node_dir "$i")/repo/config" 2>/dev/null)" ]]; then
      echo "node$i running $url /ip4/127.0.0.1/tcp/${url##*:}/http pid=$pid"
    else
      echo "node$i stopped $url /ip4/127.0.0.1/tcp/${url##*:}/http"
    fi
  done
}

cmd=${1:-}
case $cmd in
  install)
    install_tools
    echo "ipfs@$version installed in $tools"
    ;;
  start)
    n=${2:-2}
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "start N: N must be a positive integer"
    install_tools
    mkdir -p "$state"
    for (( i = 0; i < n; i++ )); do start_node "$i"; done
    for (( i = 0; i < n; i++ )); do wait_node "$i"; done
    peer_all "$n"
    status "$n"
    ;;
  stop)
    for i in $(known_nodes); do stop_node "$i"; done
    ;;
  status)
    status "${2:-}"
    ;;
  stop-node | wipe-node)
    [[ ${2:-} =~ ^[0-9]+$ ]] || die "$cmd I: I must be a node index"
    stop_node "$2"
    if [[ $cmd == wipe-node ]]; then rm -rf "$(node_dir "$2")/repo"; fi
    ;;
  *)
    sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
