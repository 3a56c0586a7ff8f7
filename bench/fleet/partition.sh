#!/usr/bin/env bash
# One host partitioned, repeated: 3 hosts (network namespaces), a real
# 3-member etcd, web placed 6 instances spread by host, GETs at RATE/s
# through h1 and h2; each run cuts h3's link for CUT (default 30s) while
# every host is sent alerts for MAX+3 targets of one singleton runbook
# (fleet-wide lock, 1h fleet-wide cooldown) under automation.fleet_rate MAX
# per hour (default 20), one target every 200 ms from 1 s before the cut.
# Each run reports the issue's three properties:
#   - singleton: never more than one run of the remediation per target
#     (from the lines its step appends) and one act decision per target
#     (from every host's audit);
#   - instances: the most instances of web that ran at once across the three
#     namespaces (sampled every 50 ms; the bound is instances 6 + surge 1);
#   - rate: the tokens taken in etcd's window and the act decisions in the
#     three audits, both exactly MAX;
# and the take-over and rebalance times, the failed GETs, and h3's
# stand-down (how long stopping all its instances at once took, and how far
# before its deadline lastSafe + grace − 250 ms it ended). Needs root,
# etcd-server and iproute2.
#
#   bench/fleet/partition.sh [RUNS] [CUT] [RATE] [MAX]   # default 20 runs, 30s, 100 GETs/s, 20/h
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
cut=${2:-30s}
rate=${3:-100}
max=${4:-20}
out=bench/results/fleet-partition-$(date -u +%Y%m%d-%H%M%S).txt
mkdir -p bench/results
echo "bench/fleet/partition.sh $runs $cut $rate $max at $(git rev-parse --short HEAD)" | tee "$out"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
MEDIC_REQUIRE_INTEGRATION=1 MEDIC_FLEET_RATE=$rate MEDIC_FLEET_CUT_FOR=$cut MEDIC_FLEET_RATE_MAX=$max \
  nice -n 10 go test -count="$runs" -timeout 120m -run 'TestFleetHostPartition$' -v ./e2e 2>&1 |
  tee "${out%.txt}.full.log" |
  grep --line-buffered -E 'fleet_hosts_test.go:[0-9]+: |^--- |instances of web across the hosts \[' | grep --line-buffered -v ': h3 partitioned$' |
  while IFS= read -r line; do echo "$line ($(cut -d' ' -f1 /proc/loadavg))"; done | tee -a "$out" || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
# One line per run with the three properties.
awk -v max="$max" '
  # grab(re): the first number in the first match of re in the line.
  function grab(re,   s) { if (!match($0, re)) return "?"; s = substr($0, RSTART, RLENGTH); gsub(/[^0-9 ]/, "", s); split(s, f, " "); return f[1] }
  /singleton remediation/ { acts = grab("[0-9]+ act decisions"); ran = grab("[0-9]+ runs on"); tokens = grab("tokens \\[[0-9 ]*\\]") }
  / ran [0-9]+ times| act decisions \(hosts/ { single = "VIOLATED" }
  /at most [0-9]+ instances/ { inst = grab("at most [0-9]+") }
  /h3: stood down: / { if (match($0, /stopped at once in [^ ]+, [^ ]+ (before|PAST)/)) sd = substr($0, RSTART + 16, RLENGTH - 16) }
  /[0-9]+ instances of web ran at once across the hosts:/ { inst = grab("[0-9]+ instances of web") " (ABOVE 7)" }
  /^--- / { n++; printf "run %d: singleton %s; instances at most %s (bound 7); rate: tokens %s, act decisions %s, runs %s (want exactly %d)%s; stand-down %s the deadline; %s\n",
              n, single == "" ? "ok" : single, inst, tokens, acts, ran, max, (tokens == max && acts == max) ? "" : " VIOLATED", sd == "" ? "?" : sd, $2
            single = ""; inst = "?"; tokens = "?"; acts = "?"; ran = "?"; sd = "" }
' "$out" | tee -a "$out"
echo "runs passed: $(grep -c '^--- PASS' "$out" || true) of $runs" | tee -a "$out"
echo "written: $out (the whole go test output: ${out%.txt}.full.log, for a failed run's details)"
