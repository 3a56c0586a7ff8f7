#!/usr/bin/env bash
# bench/flood.sh: the full form of the flood figure (issue 12). Against each
# listener in turn (the API, the HTTP proxy, the TCP proxy): IDLE idle plus
# SLOW slowloris connections from 127.0.0.2-5, while a client sends RATE
# req/s through the HTTP proxy to 3 demoapp instances from 127.0.0.1.
# Reports the client's error rate and p99 against its p99 before the flood,
# the slowest `medic status`, and fails on any restart or ejection.
#
#   bench/flood.sh                      # 30 000 idle + 2 000 slow, 200 req/s, 20 s per listener
#   IDLE=5000 SLOW=500 bench/flood.sh   # smaller
#   NOFILE=4096 bench/flood.sh          # medic under a smaller descriptor limit (prlimit)
#   FLOOD_NICE=0 bench/flood.sh         # the flood's processes at normal priority (default nice 19:
#                                       # the flood is the attacker, not what is measured)
#   AGENT_NICE=-5 bench/flood.sh        # medic and its instances at nice -5 (a unit's Nice=-5)
#   TARGETS="proxy tcp" bench/flood.sh  # only the listeners named (api, proxy http, proxy tcp, control)
#   CONTROL= bench/flood.sh             # without the control (default haproxy: HAProxy in front of
#                                       # the same 3 instances, flooded in its own phase; the client
#                                       # measures medic's proxy, HAProxy and one instance straight
#                                       # in every phase, and prints FLOODSUMMARY with the ratios)
#   NORMAL=10 bench/flood.sh            # seconds of the normal p99, before and after the floods
#   FLOODER_CPU=0.5 bench/flood.sh      # the flood's processes in their own cgroup with this many
#                                       # cores of CPU (default 0.5; cgroup v2 cpu.max or v1
#                                       # cpu.cfs_quota_us; needs root). On a real network the
#                                       # attacker is another machine; here it shares the cores
#                                       # with all it floods. FLOODER_CPU=none: no cgroup. Report
#                                       # both forms: the control (HAProxy) is flooded by the same
#                                       # limited flooder in the same run.
#
# The test process holds every flood connection, so it raises its own
# RLIMIT_NOFILE (root, or a hard limit above IDLE+SLOW+2048). The e2e test
# TestFloodNeverHarmsInstances is the short form CI runs (600 + 100
# connections against medic under a 512-descriptor limit).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/flood-$(date +%Y%m%d-%H%M%S).log
FLOODER_CPU=${FLOODER_CPU:-0.5}
cgroup=
if [ "$FLOODER_CPU" != none ]; then
	period=100000
	quota=$(awk -v c="$FLOODER_CPU" 'BEGIN { q = int(c * 100000); if (q < 1000) exit 1; print q }') ||
		{ echo "FLOODER_CPU=$FLOODER_CPU: want a number of cores (at least 0.01) or none" >&2; exit 2; }
	if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
		cgroup=/sys/fs/cgroup/medic-flooder-$$ # v2
		mkdir "$cgroup"
		echo "$quota $period" >"$cgroup/cpu.max"
	elif [ -d /sys/fs/cgroup/cpu ]; then
		cgroup=/sys/fs/cgroup/cpu/medic-flooder-$$ # v1
		mkdir "$cgroup"
		echo "$period" >"$cgroup/cpu.cfs_period_us"
		echo "$quota" >"$cgroup/cpu.cfs_quota_us"
	else
		echo "FLOODER_CPU=$FLOODER_CPU: no cgroup cpu controller (v2 or v1) here; FLOODER_CPU=none runs without" >&2
		exit 2
	fi
	# The flood's processes are stopped by PID by the test; the cgroup is removed once they are gone.
	trap 'for i in $(seq 50); do rmdir "$cgroup" 2>/dev/null && break; sleep 0.2; done' EXIT
fi
{ echo "flooder: FLOODER_CPU=$FLOODER_CPU${cgroup:+ (cgroup $cgroup, quota $quota/$period us)}, nice ${FLOOD_NICE:-19}; start $(date -u +%H:%M:%S) UTC; $(uptime)"; } | tee "$out"
rc=0
MEDIC_FLOOD_IDLE=${IDLE:-30000} MEDIC_FLOOD_SLOW=${SLOW:-2000} MEDIC_FLOOD_NOFILE=${NOFILE:-0} \
MEDIC_FLOOD_NICE=${FLOOD_NICE:-19} MEDIC_FLOOD_AGENT_NICE=${AGENT_NICE:-} MEDIC_FLOOD_TARGETS=${TARGETS:-} MEDIC_FLOOD_RATE=${RATE:-200} MEDIC_FLOOD_SECONDS=${DURATION:-20} MEDIC_FLOOD_P99_FLOOR_MS=${P99_FLOOR_MS:-0} \
MEDIC_FLOOD_CONTROL=${CONTROL-haproxy} MEDIC_FLOOD_NORMAL_SECONDS=${NORMAL:-10} MEDIC_FLOOD_CGROUP=$cgroup \
	go test -count=1 -timeout 20m -run TestFloodNeverHarmsInstances -v ./e2e/ 2>&1 |
	grep -v 'level=INFO' | tee -a "$out" || rc=$?
echo "end $(date -u +%H:%M:%S) UTC; $(uptime)" | tee -a "$out"
echo "written to $out"
exit $rc
