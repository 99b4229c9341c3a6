#!/usr/bin/env bash
# Start / stop a private Docker daemon for the sandbox tests (no bridge, no iptables, own data root).
#
#   eval "$(bash .ci/dockerd.sh start [DIR])"  # prints: export DOCKER_HOST=unix://DIR/docker.sock; export KGOT_DOCKERD_DIR=DIR
#   bash .ci/dockerd.sh stop [DIR]             # kills it by its pidfile (DIR, else KGOT_DOCKERD_DIR, else the last one)
#
# DIR (default: a new mktemp dir under /tmp) holds the data root, exec root, socket, pidfile and log.
# Works from scratch on Debian as root: installs docker.io when dockerd is missing. Storage driver:
# overlay2, else vfs. Only progress goes to stderr; stdout carries the export lines.
set -euo pipefail

STATE_FILE=/tmp/kgot-dockerd.last

log() { echo "dockerd.sh: $*" >&2; }

ensure_dockerd() {
    if command -v dockerd >/dev/null 2>&1 && command -v containerd >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 \
        && command -v docker >/dev/null 2>&1; then
        return 0
    fi
    log "dockerd not found: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq docker.io >&2
}

start_one() {  # $1 = dir, $2 = storage driver; returns 0 when the daemon answers
    local dir=$1 driver=$2 i
    mkdir -p "$dir/data" "$dir/exec"
    : >"$dir/dockerd.log"
    setsid dockerd \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
        -H "unix://$dir/docker.sock" --storage-driver "$driver" \
        --userland-proxy=false --log-level warn \
        </dev/null >>"$dir/dockerd.log" 2>&1 &
    echo $! >"$dir/launcher.pid"
    for i in $(seq 1 120); do
        if DOCKER_HOST="unix://$dir/docker.sock" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then
            return 1
        fi
        sleep 0.5
    done
    return 1
}

stop_dir() {
    local dir=$1 pid i
    for f in "$dir/dockerd.pid" "$dir/launcher.pid"; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # dockerd's own containerd and shims were started by it; end them by pid file / parentage
    for f in "$dir"/exec/containerd/containerd.pid "$dir"/exec/containerd/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done
    umount -R "$dir/data" 2>/dev/null || true
    for m in $(awk -v d="$dir" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

cmd_start() {
    [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
    ensure_dockerd
    local dir=${1:-} driver
    if [ -n "$dir" ]; then mkdir -p "$dir"; dir=$(cd "$dir" && pwd); else dir=$(mktemp -d /tmp/kgot-dockerd-XXXXXX); fi
    for driver in overlay2 vfs; do
        if start_one "$dir" "$driver"; then
            log "dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,) up with $driver at unix://$dir/docker.sock"
            echo "$dir" >"$STATE_FILE"
            echo "export DOCKER_HOST=unix://$dir/docker.sock"
            echo "export KGOT_DOCKERD_DIR=$dir"
            return 0
        fi
        log "dockerd with storage driver $driver did not come up:"
        tail -n 5 "$dir/dockerd.log" >&2 || true
        stop_dir "$dir"
        rm -rf "$dir/data" "$dir/exec"
    done
    log "dockerd cannot run on this machine; log: $dir/dockerd.log"
    exit 1
}

cmd_stop() {
    local dir=${1:-${KGOT_DOCKERD_DIR:-}}
    [ -n "$dir" ] || dir=$(cat "$STATE_FILE" 2>/dev/null || true)
    [ -n "$dir" ] && [ -d "$dir" ] || { log "no dockerd started by this script"; return 0; }
    stop_dir "$dir"
    rm -rf "$dir" 2>/dev/null || log "left $dir behind (busy mounts?)"
    if [ "$(cat "$STATE_FILE" 2>/dev/null || true)" = "$dir" ]; then rm -f "$STATE_FILE"; fi
    log "stopped"
}

case "${1:-}" in
    start) cmd_start "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    *) echo "usage: $0 start [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
