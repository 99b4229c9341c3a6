#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL for the tests: loopback only, own port, own socket dir.
#   eval "$(bash .ci/postgres.sh start DIR)"   # prints: export KGOT_TEST_POSTGRES_URL=...
#   bash .ci/postgres.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?state directory}

pg_bin() {
  local found
  found=$(command -v initdb || true)
  if [ -z "$found" ]; then
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$found" ] && found="$found/initdb"
  fi
  if [ -z "$found" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/initdb
  fi
  dirname "$(readlink -f "$found")"
}

case "$cmd" in
start)
  bin=$(pg_bin)
  mkdir -p "$dir"
  user=postgres
  id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home "$user"
  chown "$user" "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u "$user" -- "$bin/initdb" -D "$dir/data" -U kgot --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { tail -n 20 "$dir/initdb.log" >&2; exit 1; }
  runuser -u "$user" -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
    start >&2
  runuser -u "$user" -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U kgot kgot_test >&2
  echo "$port" >"$dir/port"
  echo "export KGOT_TEST_POSTGRES_URL=postgresql://kgot@127.0.0.1:$port/kgot_test"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    bin=$(pg_bin)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
