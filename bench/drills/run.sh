#!/bin/sh
# Runs the same faults against medic, supervisord, runit, Monit, HAProxy and
# nginx in one run and writes the table; see bench/drills/README.md.
# Usage: bench/drills/run.sh [flags], e.g. bench/drills/run.sh -tools medic,haproxy -faults kill,hang
# Needs: go; the peers from Debian: apt-get install -y monit supervisor runit haproxy nginx
set -eu
cd "$(dirname "$0")/../.."
mkdir -p bin
go build -o bin/medic ./cmd/medic
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
go build -o "$work/drills" ./bench/drills
"$work/drills" -medic bin/medic -out bench/drills/results "$@"
