#!/usr/bin/env bash
# bench/canary.sh: the canary figures of issue 16 with the real binary. One
# agent runs web (2 demoapp instances, ~20 ms log-normal latency) behind its
# proxy under 100 req/s and deploys, one after the other: BAD canaries
# answering 5 % 500s, one crash-looping canary, SLOW canaries 20 % slower,
# and GOOD canaries (the same binary): the summary gives the medians of the
# time from the canary's first traffic to its rollback (or promotion), the
# client failures, and the false rollbacks of the good ones.
#
#   bench/canary.sh                    # 10 bad, 10 slow, 20 good (~10 min)
#   BAD=3 SLOW=3 GOOD=5 bench/canary.sh
#   TAIL_TOLERANCE=1.0 bench/canary.sh   # another tail slack (default 0.25, the verdict's, as in CI)
#
# The e2e test TestCanary is the short form CI runs (one of each).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/canary-$(date +%Y%m%d-%H%M%S).log
uptime | tee "$out"
MEDIC_CANARY_TAIL_TOLERANCE=${TAIL_TOLERANCE:-0.25} MEDIC_CANARY_BAD_RUNS=${BAD:-10} MEDIC_CANARY_SLOW_RUNS=${SLOW:-10} MEDIC_CANARY_GOOD_RUNS=${GOOD:-20} \
	go test -count=1 -timeout 60m -run 'TestCanary$' -v ./e2e/ 2>&1 |
	grep -v 'level=INFO' | tee -a "$out"
uptime | tee -a "$out"
echo "written to $out"
