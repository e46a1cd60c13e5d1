#!/usr/bin/env bash
# Start, check or stop the MariaDB and Redis that the production storage backends and their
# integration tests use: 127.0.0.1:3306 (user root, no password) and 127.0.0.1:6379.
#
#   scripts/services.sh start    # idempotent: a service already answering is left alone
#   scripts/services.sh status   # exit 0 when both answer
#   scripts/services.sh stop     # stops only the instances this script started
#
# start installs mariadb-server / redis-server with apt-get when missing (as root, or via
# sudo), then runs private instances with their data under $EMR_SERVICES_DIR (default
# ~/.local/state/emr-node/services). EMR_MYSQL_PORT / EMR_REDIS_PORT pick other ports.
set -euo pipefail

MYSQL_PORT=${EMR_MYSQL_PORT:-3306}
REDIS_PORT=${EMR_REDIS_PORT:-6379}
DIR=${EMR_SERVICES_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/emr-node/services}

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }

# A binary on PATH or in the sbin directories a non-root PATH often lacks.
find_bin() {
  local name dir
  for name in "$@"; do
    command -v "$name" 2>/dev/null && return 0
    for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin; do
      [[ -x $dir/$name ]] && { echo "$dir/$name"; return 0; }
    done
  done
  return 1
}

as_root() {
  if (( EUID == 0 )); then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mysql_client() { find_bin mariadb mysql; }

# MariaDB answers and root logs in over TCP without a password (what the tests use).
mysql_ok() {
  local client
  client=$(mysql_client) || { port_open "$MYSQL_PORT"; return; }
  "$client" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_PORT" -u root \
    --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
}

redis_ok() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || exit 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || exit 1
    [[ $reply == "+PONG"* ]]
  ) 2>/dev/null
}

wait_for() {  # wait_for CHECK SECONDS
  local deadline=$((SECONDS + $2))
  until "$1"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.25
  done
}

install_missing() {
  local missing=() pkg
  find_bin mariadbd mysqld >/dev/null || missing+=(mariadb-server)
  find_bin redis-server >/dev/null || missing+=(redis-server)
  (( ${#missing[@]} )) || return 0
  command -v apt-get >/dev/null || die "install ${missing[*]} (no apt-get on this machine)"
  # Refresh the package lists only when they do not know a package yet.
  for pkg in "${missing[@]}"; do
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
      log "apt-get update"
      as_root apt-get update -q
      break
    fi
  done
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  JUST_INSTALLED=1
}

# The distribution's mariadb-server may start its own service on install, with root allowed
# only through the unix socket. On that fresh, empty server, let root in over TCP too.
open_fresh_packaged_root() {
  local client
  client=$(mysql_client) || return 1
  log "allowing root without password on the freshly installed MariaDB"
  as_root "$client" --no-defaults -u root -e \
    "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
}

start_mariadb() {
  if mysql_ok; then
    log "MariaDB answers on 127.0.0.1:$MYSQL_PORT"
    return
  fi
  if port_open "$MYSQL_PORT"; then
    if [[ ${JUST_INSTALLED:-0} == 1 ]] && open_fresh_packaged_root && mysql_ok; then
      log "MariaDB answers on 127.0.0.1:$MYSQL_PORT"
      return
    fi
    die "something listens on 127.0.0.1:$MYSQL_PORT but refuses root without password"
  fi
  local mariadbd install_db SETSID user_opt=() data="$DIR/mariadb"
  mariadbd=$(find_bin mariadbd mysqld) || die "mariadbd not found"
  install_db=$(find_bin mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
  # mariadbd refuses to run as root unless told to.
  (( EUID == 0 )) && user_opt=(--user=root)
  mkdir -p "$DIR"
  # Detached from this shell's session, so the server outlives the terminal.
  SETSID=$(command -v setsid || true)
  if [[ ! -d $data/mysql ]]; then
    log "initialising $data"
    # normal: root@localhost/127.0.0.1 without password (socket auth would refuse TCP).
    "$install_db" --no-defaults --auth-root-authentication-method=normal --skip-test-db \
      "${user_opt[@]}" --datadir="$data" >"$DIR/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed; see $DIR/mariadb-install.log"
  fi
  log "starting MariaDB on 127.0.0.1:$MYSQL_PORT (data $data)"
  ${SETSID:+"$SETSID"} nohup "$mariadbd" --no-defaults "${user_opt[@]}" --datadir="$data" \
    --socket="$DIR/mariadb.sock" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --pid-file="$DIR/mariadb.pid" --log-error="$DIR/mariadb.log" >/dev/null 2>&1 &
  wait_for mysql_ok 60 || die "MariaDB did not answer on 127.0.0.1:$MYSQL_PORT; see $DIR/mariadb.log"
  log "MariaDB answers on 127.0.0.1:$MYSQL_PORT"
}

start_redis() {
  if redis_ok; then
    log "Redis answers on 127.0.0.1:$REDIS_PORT"
    return
  fi
  port_open "$REDIS_PORT" && die "something listens on 127.0.0.1:$REDIS_PORT but is not Redis"
  local server
  server=$(find_bin redis-server) || die "redis-server not found"
  mkdir -p "$DIR"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  # A cache and rate limiter: nothing to persist.
  "$server" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --dir "$DIR" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  wait_for redis_ok 20 || die "Redis did not answer on 127.0.0.1:$REDIS_PORT; see $DIR/redis.log"
  log "Redis answers on 127.0.0.1:$REDIS_PORT"
}

# The pid in FILE if that process is alive and runs NAME (pids get reused).
our_pid() {  # our_pid FILE NAME
  local pid
  [[ -f $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -Eq -- "$2" || return 1
  echo "$pid"
}

stop_one() {  # stop_one LABEL PIDFILE NAME
  local pid
  if ! pid=$(our_pid "$2" "$3"); then
    log "$1: not started by this script; left alone"
    rm -f "$2"
    return
  fi
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 120); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return; }
    sleep 0.25
  done
  die "$1 (pid $pid) did not stop within 30 s"
}

status() {
  local rc=0 pid
  if mysql_ok; then
    pid=$(our_pid "$DIR/mariadb.pid" 'mariadbd|mysqld' || true)
    echo "mariadb: up on 127.0.0.1:$MYSQL_PORT, root without password${pid:+ (started here, pid $pid)}"
  elif port_open "$MYSQL_PORT"; then
    echo "mariadb: 127.0.0.1:$MYSQL_PORT answers but refuses root without password"; rc=1
  else
    echo "mariadb: down (127.0.0.1:$MYSQL_PORT)"; rc=1
  fi
  if redis_ok; then
    pid=$(our_pid "$DIR/redis.pid" redis-server || true)
    echo "redis: up on 127.0.0.1:$REDIS_PORT${pid:+ (started here, pid $pid)}"
  else
    echo "redis: down (127.0.0.1:$REDIS_PORT)"; rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  start)
    JUST_INSTALLED=0
    if ! mysql_ok || ! redis_ok; then install_missing; fi
    start_redis
    start_mariadb
    ;;
  status) status ;;
  stop)
    stop_one MariaDB "$DIR/mariadb.pid" 'mariadbd|mysqld'
    stop_one Redis "$DIR/redis.pid" redis-server
    ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
