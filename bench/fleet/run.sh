#!/usr/bin/env bash
# The fleet's host loss, repeated: 3 hosts (network namespaces), a real
# 3-member etcd, web placed 6 instances spread by host, GETs at RATE/s
# through the surviving proxies; each run kills (or partitions) h3 and
# reports the time until 6 are ready on h1 and h2, the rebalance when h3
# returns, and the failed GETs. Needs root, etcd-server and iproute2.
#
#   bench/fleet/run.sh [RUNS] [RATE]      # default 5 runs at 200 GETs/s
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
rate=${2:-200}
out=bench/results/fleet-$(date -u +%Y%m%d-%H%M%S).txt
mkdir -p bench/results
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out"
MEDIC_REQUIRE_INTEGRATION=1 MEDIC_FLEET_RATE=$rate go test -count="$runs" -timeout 60m \
  -run '^(TestFleetHostKill|TestFleetHostPartition)$' -v ./e2e 2>&1 |
  grep -E 'fleet_hosts_test.go:[0-9]+: (h3|load)|^--- ' | tee -a "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "written: $out"
