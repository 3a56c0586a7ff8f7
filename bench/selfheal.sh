#!/usr/bin/env bash
# Long form of the self-healing figures (issue 13), against the real binary:
#   - CYCLES SIGKILLs of `medic run --supervise-self` at random moments under
#     RPS req/s through the proxy to 3 demoapp instances that each fork 2
#     grandchildren (demoapp --fork 2) and one that starts a setsid child
#     (demoapp --setsid): processes left over, instances restarted (same pids
#     before and after), time from the next agent's start to every instance
#     supervised again, the client-visible gap against the time the
#     self-supervisor took to start the next agent (bound: +100 ms);
#   - the same with the test restarting medic itself (no self-supervisor);
#   - `medic upgrade` under load: 0 client errors, p99 before vs during;
#   - `medic upgrade` with an idle and an active TCP-proxied connection.
# Needs root and a writable cgroup hierarchy (the tests say why otherwise).
# Usage: bench/selfheal.sh [CYCLES] [RPS]     (defaults 20 and 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-20}
rps=${2:-200}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
MEDIC_SELFHEAL_CYCLES=$cycles MEDIC_SELFHEAL_RPS=$rps MEDIC_UPGRADE_WARMUP_MS=3000 \
  go test -count=1 -timeout 20m \
    -run 'TestSelfSupervisedSIGKILLsUnderLoad|TestKilledMedicIsAdoptedNotReplaced|TestUpgradeUnderLoad|TestUpgradeKeepsEstablishedConnections' -v ./e2e |
  grep -E 'figures|^(---|ok|FAIL)'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
