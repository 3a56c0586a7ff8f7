#!/usr/bin/env bash
# Compares two builds of the e2e tests test by test, each test run by the
# old build and then by the new one straight after (the same minute, so the
# shared machine's load falls on both alike). The builds are test binaries:
#
#   in a worktree at the old commit
#     go test -race -c -o /tmp/old.test ./e2e
#   and at the new one
#     go test -race -c -o /tmp/new.test ./e2e
#   bench/e2e-ab.sh /tmp/old.test /tmp/new.test TestDBPrimaryCutFromEtcd TestDBDrills …
#
# Prints one line per run: build, test, seconds, result, load average; then
# per build the sum and the median of the new/old ratios. ROUNDS=n (1)
# repeats the whole list. The binaries run from this checkout's e2e
# directory (their TestMain builds ../cmd/medic).
set -euo pipefail
old=$1 new=$2; shift 2
cd "$(dirname "$0")/../e2e"
rounds=${ROUNDS:-1}
out=$(mktemp)
for _ in $(seq 1 "$rounds"); do
  for t in "$@"; do
    for b in old new; do
      bin=$old; [ $b = new ] && bin=$new
      load=$(cut -d' ' -f1 /proc/loadavg)
      json=$(mktemp)
      MEDIC_REQUIRE_INTEGRATION=1 "$bin" -test.run "^$t\$" -test.count=1 -test.v=test2json 2>&1 | go tool test2json -t > "$json" || true
      python3 -c 'import json,sys
for e in map(json.loads,open(sys.argv[1])):
  if e.get("Action") in ("pass","fail","skip") and e.get("Test") == sys.argv[3]:
    print(sys.argv[2], e["Test"], e["Elapsed"], e["Action"], "load", sys.argv[4])' "$json" $b "$t" "$load" | tee -a "$out"
      rm -f "$json"
    done
  done
done
python3 - "$out" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
tot = collections.Counter()
for l in open(sys.argv[1]):
    b, t, s, res, _, load = l.split()
    tot[b] += float(s)
    runs[(t, b)].append(float(s))
ratios = [n / o for (t, b), olds in runs.items() if b == "old" for o, n in zip(olds, runs[(t, "new")]) if o > 0]
print("sum old %.1f s, new %.1f s; median new/old %.2f over %d pairs" % (tot["old"], tot["new"], statistics.median(ratios) if ratios else float("nan"), len(ratios)))
PY
rm -f "$out"
