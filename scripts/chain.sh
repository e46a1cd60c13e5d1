#!/usr/bin/env bash
# A local development chain for the external-chain mode: `npx hardhat node` (EDR) on
# 127.0.0.1, chain id 31337, the fixed mnemonic of hardhat.config.js, automine.
#
#   scripts/chain.sh start    start in the background, wait until eth_chainId answers
#   scripts/chain.sh stop     stop it (and every process it spawned)
#   scripts/chain.sh status   exit 0 if it runs and answers, 3 if stopped, 1 if not answering
#
# Environment:
#   EMR_CHAIN_PORT           JSON-RPC port (default 8545); each port is a separate node
#   EMR_CHAIN_DIR            state directory: pid and log files (default .tools/chain)
#   EMR_CHAIN_START_TIMEOUT  seconds to wait for the node to answer (default 60)
#   EMR_CHAIN_QBFT=1         mimic the consortium's QBFT chain (hardhat.config.js): zero base
#                            fee and gas price, no automine, a block every period
#   EMR_CHAIN_BLOCK_PERIOD   with EMR_CHAIN_QBFT=1: seconds between blocks (default 1)
#
# Idempotent: `start` on a running node and `stop` on a stopped one succeed and do nothing.
# The chain lives in memory: a restarted node is a fresh chain without the contracts.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${EMR_CHAIN_PORT:-8545}
host=127.0.0.1
url="http://$host:$port"
state=${EMR_CHAIN_DIR:-.tools/chain}
timeout=${EMR_CHAIN_START_TIMEOUT:-60}
pidfile="$state/hardhat-$port.pid"
logfile="$state/hardhat-$port.log"
expected_chain_id=0x7a69 # 31337, networks.hardhat.chainId in hardhat.config.js

usage() {
  echo "usage: $0 start|stop|status   (env: EMR_CHAIN_PORT, EMR_CHAIN_DIR)" >&2
  exit 2
}

# The chain id (0x-hex) the node at $url answers with, empty if none answers.
chain_id() {
  local request='{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
  local reply
  if command -v curl >/dev/null; then
    reply=$(curl -s -m 2 -H 'Content-Type: application/json' --data "$request" "$url" || true)
  else # Node.js is here anyway (it runs Hardhat) and has fetch from v18
    reply=$(node -e '
      fetch(process.argv[1], {method: "POST", headers: {"Content-Type": "application/json"},
        body: process.argv[2], signal: AbortSignal.timeout(2000)})
        .then((r) => r.text()).then((t) => console.log(t)).catch(() => {});
    ' "$url" "$request" 2>/dev/null || true)
  fi
  sed -n 's/.*"result" *: *"\(0x[0-9a-fA-F]*\)".*/\1/p' <<<"$reply"
}

# The pid in the pid file if that process is alive and is our Hardhat node (a stale pid
# file may name a recycled pid: never signal a process we did not start).
running_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  ps -o args= -p "$pid" 2>/dev/null | grep -q "hardhat node" || return 1
  echo "$pid"
}

start() {
  mkdir -p "$state"
  # Keep pid and log files out of git without touching the repository's .gitignore.
  [[ -f "$state/.gitignore" ]] || echo '*' >"$state/.gitignore"
  local pid
  if pid=$(running_pid); then
    wait_ready "$pid"
    echo "hardhat node already running (pid $pid) at $url"
    return 0
  fi
  rm -f "$pidfile"
  if [[ -n "$(chain_id)" ]]; then
    echo "something else already answers JSON-RPC at $url: stop it or set EMR_CHAIN_PORT" >&2
    exit 1
  fi
  if [[ ! -x node_modules/.bin/hardhat ]]; then
    echo "node_modules missing: running npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error
  fi
  # Own process group (setsid, or job control as a fallback): npx spawns a shell and
  # then node, and `stop` must end all of them, not only npx.
  echo "--- $(date -u +%FT%TZ) start on $url" >>"$logfile"
  if command -v setsid >/dev/null; then
    HARDHAT_DISABLE_TELEMETRY_PROMPT=true setsid npx --no-install hardhat node \
      --hostname "$host" --port "$port" </dev/null >>"$logfile" 2>&1 &
  else
    set -m
    HARDHAT_DISABLE_TELEMETRY_PROMPT=true npx --no-install hardhat node \
      --hostname "$host" --port "$port" </dev/null >>"$logfile" 2>&1 &
    set +m
  fi
  pid=$!
  echo "$pid" >"$pidfile"
  wait_ready "$pid"
  local mode=""
  [[ "${EMR_CHAIN_QBFT:-}" == 1 ]] && mode=", QBFT-like (zero gas, block every ${EMR_CHAIN_BLOCK_PERIOD:-1} s)"
  echo "hardhat node started (pid $pid) at $url, chain id 31337$mode, log $logfile"
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + timeout)) id
  while ((SECONDS < deadline)); do
    id=$(chain_id)
    if [[ -n "$id" ]]; then
      if [[ "$id" != "$expected_chain_id" ]]; then
        echo "the node at $url answers chain id $id, expected $expected_chain_id" >&2
        exit 1
      fi
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      echo "hardhat node exited during start-up; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "hardhat node (pid $pid) did not answer at $url within ${timeout}s; see $logfile" >&2
  exit 1
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pidfile"
    echo "hardhat node on port $port is not running"
    return 0
  fi
  # The pid is its process group's id (see start): signal the whole group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "hardhat node on port $port stopped"
}

status() {
  local pid id
  if ! pid=$(running_pid); then
    echo "hardhat node on port $port: stopped"
    return 3
  fi
  id=$(chain_id)
  if [[ -z "$id" ]]; then
    echo "hardhat node on port $port: pid $pid but $url does not answer"
    return 1
  fi
  echo "hardhat node on port $port: running (pid $pid) at $url, chain id $((id))"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
