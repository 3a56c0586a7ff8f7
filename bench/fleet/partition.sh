#!/usr/bin/env bash
# One host partitioned, repeated: 3 hosts (network namespaces), a real
# 3-member etcd, web placed 6 instances spread by host, GETs at RATE/s
# through h1 and h2; each run cuts h3's link for CUT (default 30s) and
# reports the most instances of web that ran at once across the three
# namespaces (sampled every 50 ms; the bound is instances 6 + surge 1),
# that h3 stood down and came back, the take-over and rebalance times, and
# the failed GETs. Needs root, etcd-server and iproute2.
#
#   bench/fleet/partition.sh [RUNS] [CUT] [RATE]   # default 20 runs, 30s, 100 GETs/s
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
cut=${2:-30s}
rate=${3:-100}
out=bench/results/fleet-partition-$(date -u +%Y%m%d-%H%M%S).txt
mkdir -p bench/results
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out"
MEDIC_REQUIRE_INTEGRATION=1 MEDIC_FLEET_RATE=$rate MEDIC_FLEET_CUT_FOR=$cut nice -n 10 go test -count="$runs" -timeout 90m \
  -run 'TestFleetHostPartition$' -v ./e2e 2>&1 |
  grep --line-buffered -E 'fleet_hosts_test.go:[0-9]+: (h3|load|at most|[0-9]+ instances of web ran)|^--- ' | tee -a "$out" || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "runs over the bound: $(grep -c 'above instances 6' "$out" || true); runs passed: $(grep -c '^--- PASS' "$out" || true) of $runs"
echo "written: $out"
