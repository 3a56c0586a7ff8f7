#!/usr/bin/env bash
# Long form of the self-healing figures (issue 13), against the real binary:
#   - CYCLES SIGKILLs of medic at random moments under RPS req/s through the
#     proxy to 3 demoapp instances that each fork a grandchild and a setsid
#     escapee; each kill followed by a restart: same pids, 0 restarts, every
#     instance supervised again < 1 s, no process outside the instances;
#   - `medic upgrade` under load: 0 client errors, p99 before vs during.
# Needs root and a writable cgroup2 hierarchy (the tests say why otherwise).
# Usage: bench/selfheal.sh [CYCLES] [RPS]     (defaults 20 and 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-20}
rps=${2:-200}
MEDIC_SELFHEAL_CYCLES=$cycles MEDIC_SELFHEAL_RPS=$rps MEDIC_UPGRADE_WARMUP_MS=3000 \
  go test -count=1 -timeout 20m -run 'TestKilledMedicIsAdoptedNotReplaced|TestUpgradeUnderLoad' -v ./e2e |
  grep -E 'figures|^(---|ok|FAIL)'
