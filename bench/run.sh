#!/bin/sh
# Benchmarks medic against supervisord and runit in one run; see bench/README.md.
# Usage: bench/run.sh [harness flags], e.g. bench/run.sh -runs 40 -scenarios crash
# Needs: go, supervisord and runsv/runsvdir (apt-get install -y supervisor runit).
set -eu
cd "$(dirname "$0")/.."

for tool in supervisord runsv runsvdir; do
	command -v "$tool" >/dev/null 2>&1 || echo "bench/run.sh: $tool not found; that peer will be reported as not measured" >&2
done

mkdir -p bin
go build -o bin/medic ./cmd/medic
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
go build -o "$work/harness" ./bench/harness
"$work/harness" -medic bin/medic -out bench/results "$@"
