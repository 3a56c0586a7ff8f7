#!/usr/bin/env bash
# The fleet drills with the real binary, repeated: 3 hosts (network
# namespaces), a real 3-member etcd, web placed 6 instances spread by host;
# each run sends `medic drill host-kill --host h3` (then host-partition) to
# h1's agent with RATE GETs/s of the drill's own load through h1's proxy and
# h3 gone for 10 s, and prints the drill's summary and figures (time to
# detect, time until 6 ready on h1 + h2, client errors, return and
# rebalance); then etcd-member-loss sent to h1 (a follower member stopped
# by its host for 6 s: time until h1 sees it unhealthy, until every agent
# reported it through the other members, until every agent sees it healthy
# after its start, client errors). Needs root, etcd-server and iproute2.
#
#   bench/fleet/drills.sh [RUNS] [RATE]      # default 5 runs at 100 GETs/s
#   DRILLS=TestFleetEtcdMemberLossDrill bench/fleet/drills.sh 3   # one drill only
#   MEDIC_ETCD_DRILL_LEADER=1 DRILLS=TestFleetEtcdMemberLossDrill bench/fleet/drills.sh 3   # the leader stopped
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
rate=${2:-100}
out=bench/results/fleet-drills-$(date -u +%Y%m%d-%H%M%S).txt
mkdir -p bench/results
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out"
MEDIC_REQUIRE_INTEGRATION=1 MEDIC_FLEET_DRILLS=all MEDIC_FLEET_RATE=$rate go test -count="$runs" -timeout 60m \
  -run "^(${DRILLS:-TestFleetHostKillDrill|TestFleetHostPartitionDrill|TestFleetEtcdMemberLossDrill})\$" -v ./e2e 2>&1 |
  grep -E 'fleet_drill_test.go:[0-9]+: host-|fleet_etcd_drill_test.go:[0-9]+: etcd-|^--- ' | tee -a "$out" || true # a failed run is in the file; go on to the load average
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "written: $out"
