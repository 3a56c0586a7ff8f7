#!/bin/sh
# Runs the proxy benchmark of issue 3 (medic vs HAProxy vs nginx) and writes
# bench/proxy/results.md. Needs: go, haproxy, nginx (apt-get install -y haproxy nginx).
# Everything listens on 127.0.0.1; every process is stopped by PID; the run is
# bounded (-deadline). Extra arguments go to the harness, e.g. -scenarios events.
set -eu
cd "$(dirname "$0")/../.."
command -v haproxy >/dev/null || { echo "run.sh: haproxy not found (apt-get install -y haproxy)" >&2; exit 1; }
command -v nginx >/dev/null || { echo "run.sh: nginx not found (apt-get install -y nginx)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/bench-proxy" ./bench/proxy
go build -o "$bin/medicproxy" ./bench/proxy/medicproxy
ulimit -n 65536 2>/dev/null || true
"$bin/bench-proxy" -medicproxy "$bin/medicproxy" -out bench/proxy/results.md -deadline 15m "$@"
