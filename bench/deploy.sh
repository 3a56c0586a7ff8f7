#!/usr/bin/env bash
# bench/deploy.sh: the rolling-with-surge and blue-green figures of issue 16
# with the real binary. Each run starts an agent with web (3 demoapp
# instances) behind its proxy under 200 req/s and deploys 3 → 3: rolling
# (max_surge 2, min_ready 300ms) or blue-green (the switch, a rollback to the
# warm blue set, a second deploy through its window and promotion). A run
# fails on any client error. The summary gives, per strategy, the runs that
# passed, and the median and max of the p99 during the deploy over the normal p99
# (the same estimator over windows of as many requests before it, docs/deploys.md),
# and for blue-green the time until the last request sent to
# green after a rollback began; then the cold rollback from history after a
# restart of medic (TestColdRollbackFromHistory): when the old release first
# answered and when the new one last did, after the rollback began.
#
#   bench/deploy.sh            # 10 runs of each (~4 min)
#   RUNS=3 bench/deploy.sh
#   START_NICE=0 bench/deploy.sh   # deploy.start_nice (default 10; 0: off)
#   MEDIC_AGENT_GOMAXPROCS=8 bench/deploy.sh   # the agent's GOMAXPROCS only (not the clients')
#   CONTROL=0 bench/deploy.sh      # without the control (default 1: a second
#                                  # client at 200 req/s straight to a demoapp
#                                  # outside medic, over the same windows)
#   ATTRIBUTE=1 bench/deploy.sh    # log each slow request of a deploy's window
#                                  # beside the audit's records and the agent's
#                                  # GC cycles (gctrace) in it
#   STAGGER=100ms bench/deploy.sh  # deploy.stagger (default 0: all at once)
#   VIA=api bench/deploy.sh        # start each deploy with a POST to the API from
#                                  # the test process (as a CI runner on another
#                                  # machine would) instead of the medic CLI on
#                                  # this one (default cli)
#   MEDIC_BIN=/tmp/medic-a bench/deploy.sh   # that medic binary instead of
#                                  # this tree's (an A/B of two builds)
#   TRACE=/tmp/traces bench/deploy.sh   # the agent's runtime trace of each
#                                  # deploy (its flight recorder, written on
#                                  # SIGUSR1 after the window) into that
#                                  # directory; read one with
#                                  # bench/deploytrace.py FILE [FROM TO [STEP]]
#
# After the per-deploy medians, the pooled form: the p99 of all requests
# sent during the run's deploys against the p99 of all sent in the 5 s
# before each (and the same for the control).
#
# A deploy longer than the 5 s of load before it (~1 000 requests) has no
# "normal" window of its size: its ratio is left out of the summary (the
# log line says "0 windows").
#
# The e2e tests TestRollingSurgeDeployUnderLoad and TestBlueGreenDeployUnderLoad
# are the short form CI runs (one of each).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/deploy-$(date +%Y%m%d-%H%M%S).log
uptime | tee "$out"
echo "binary: ${MEDIC_BIN:-built from this tree}; start_nice: ${START_NICE:-default}; stagger: ${STAGGER:-default}; agent GOMAXPROCS: ${MEDIC_AGENT_GOMAXPROCS:-default}; control: ${CONTROL:-1}; attribute: ${ATTRIBUTE:-0}; deploys via: ${VIA:-cli}" | tee -a "$out"
godebug=
[ "${ATTRIBUTE:-0}" = 1 ] && godebug=gctrace=1
[ -n "${TRACE:-}" ] && mkdir -p "$TRACE" && TRACE=$(cd "$TRACE" && pwd)
samples=$out.samples
rm -f "$samples"
MEDIC_DEPLOY_VIA="${VIA:-cli}" MEDIC_DEPLOY_SAMPLES="$(pwd)/$samples" MEDIC_E2E_BIN="${MEDIC_BIN:-}" MEDIC_AGENT_RUNTIME_TRACE="${TRACE:-}" MEDIC_DEPLOY_CONTROL="${CONTROL:-1}" MEDIC_DEPLOY_ATTRIBUTE="${ATTRIBUTE:-0}" MEDIC_AGENT_GODEBUG="$godebug" \
MEDIC_DEPLOY_STAGGER="${STAGGER:-}" MEDIC_DEPLOY_START_NICE="${START_NICE:-}" go test -count="${RUNS:-10}" -timeout 60m -run 'TestRollingSurgeDeployUnderLoad|TestBlueGreenDeployUnderLoad|TestColdRollbackFromHistory' -v ./e2e/ 2>&1 |
	grep -E '^(=== RUN|--- |\s+\w+_test.go|ok|FAIL)' | tee -a "$out" || true
uptime | tee -a "$out"
awk '
function ms(s) { # a Go duration to milliseconds
	if (s ~ /µs$/) { sub(/µs$/, "", s); return s / 1000 }
	if (s ~ /ms$/) { sub(/ms$/, "", s); return s + 0 }
	if (s ~ /s$/)  { sub(/s$/, "", s);  return s * 1000 }
	return s + 0
}
function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
/--- PASS: TestRollingSurge/ { rp++ } /--- FAIL: TestRollingSurge/ { rf++ }
/--- PASS: TestBlueGreen/ { bp++ } /--- FAIL: TestBlueGreen/ { bf++ }
/--- PASS: TestColdRollback/ { cp++ } /--- FAIL: TestColdRollback/ { cf++ }
/cold rollback from history:/ { match($0, /first answer [^ ]+ after/); split(substr($0, RSTART, RLENGTH), w, " "); cu[++nc] = ms(w[3]); if (cu[nc] > cumax) cumax = cu[nc]
	match($0, /last [^ ]+ after/); split(substr($0, RSTART, RLENGTH), v, " "); cb[nc] = ms(v[2]); if (cb[nc] > cbmax) cbmax = cb[nc] }
/rolling control/ { match($0, /p99 [^ ]+ during vs [^ ]+ before/); split(substr($0, RSTART, RLENGTH), w, " "); if (ms(w[5]) == 0) next; rc[++nrc] = ms(w[2]) / ms(w[5]); if (rc[nrc] > rcmax) rcmax = rc[nrc] }
/blue-green control/ { match($0, /p99 [^ ]+ during vs [^ ]+ before/); split(substr($0, RSTART, RLENGTH), w, " "); if (ms(w[5]) == 0) next; bc[++nbc] = ms(w[2]) / ms(w[5]); if (bc[nbc] > bcmax) bcmax = bc[nbc] }
/rolling with surge 3→3/ { match($0, /p99 [^ ]+ during vs [^ ]+ before/); split(substr($0, RSTART, RLENGTH), w, " "); if (ms(w[5]) == 0) next; r[++nr] = ms(w[2]) / ms(w[5]); rn[nr] = ms(w[5]); if (r[nr] > rmax) rmax = r[nr]
	match($0, /3→3 in [^:]+:/); split(substr($0, RSTART, RLENGTH - 1), v, " "); rt[nr] = ms(v[3]); if (rt[nr] > rtmax) rtmax = rt[nr] }
/blue-green 3→3/ { match($0, /p99 [^ ]+ vs [^ ]+ before/); split(substr($0, RSTART, RLENGTH), w, " "); if (ms(w[4]) == 0) next; b[++nb] = ms(w[2]) / ms(w[4]); bn[nb] = ms(w[4]); if (b[nb] > bmax) bmax = b[nb]
	match($0, /switched [^ ]+ after/); split(substr($0, RSTART, RLENGTH), v, " "); bt[nb] = ms(v[2]); if (bt[nb] > btmax) btmax = bt[nb]
	match($0, /green left [^ ]+ after/); split(substr($0, RSTART, RLENGTH), v, " "); g[++ng] = ms(v[3]); if (g[ng] > gmax) gmax = g[ng] }
END {
	printf "rolling:    %d passed (0 client errors), %d failed; p99 during / normal: median %.1f×, max %.1f×; normal p99 median %.2f ms; deploy took median %.0f ms, max %.0f ms\n", rp, rf, nr ? med(r, nr) : 0, rmax, nr ? med(rn, nr) : 0, nr ? med(rt, nr) : 0, rtmax
	if (nrc) printf "rolling control (a demoapp outside medic, 200 req/s straight to it, same windows): p99 during / normal: median %.1f×, max %.1f×\n", med(rc, nrc), rcmax
	printf "cold rollback: %d passed, %d failed; old release first answered median %.0f ms (max %.0f), new release last answered median %.0f ms (max %.0f) after it began\n", cp, cf, nc ? med(cu, nc) : 0, cumax, nc ? med(cb, nc) : 0, cbmax
	printf "blue-green: %d passed (0 client errors), %d failed; p99 deploy start to 1 s after the switch / normal: median %.1f×, max %.1f×; normal p99 median %.2f ms; rollback: last request to green median %.0f ms, max %.0f ms after it began; switch median %.0f ms, max %.0f ms after the deploy began\n", bp, bf, nb ? med(b, nb) : 0, bmax, nb ? med(bn, nb) : 0, ng ? med(g, ng) : 0, gmax, nb ? med(bt, nb) : 0, btmax
	if (nbc) printf "blue-green control (same): p99 during / normal: median %.1f×, max %.1f×\n", med(bc, nbc), bcmax
}' "$out" | tee -a "$out"
# The pooled form: the p99 of every request sent during the deploys of the
# run against the p99 of every request sent in the 5 s before them (the
# same quantile of ~10 times the requests; a single deploy's p99 of ~250
# requests is its third slowest). Same for the control.
if [ -s "$samples" ]; then
	for w in rolling rolling-control blue-green blue-green-control; do
		line="$w pooled over the run's deploys:"
		for k in normal during; do
			awk -v w="$w" -v k="$k" '$1 == w && $2 == k { print $3 }' "$samples" | sort -n >"$samples.tmp"
			n=$(wc -l <"$samples.tmp")
			[ "$n" -gt 0 ] || continue
			p=$(sed -n "$((n * 99 / 100 + 1))p" "$samples.tmp")
			line="$line $k p99 $(awk -v p="$p" 'BEGIN { printf "%.3f", p / 1e6 }') ms of $n,"
			eval "p99_$k=$p"
		done
		rm -f "$samples.tmp"
		[ -n "${p99_normal:-}" ] && [ -n "${p99_during:-}" ] &&
			line="$line $(awk -v a="$p99_during" -v b="$p99_normal" 'BEGIN { printf "%.2f", a / b }')×"
		unset p99_normal p99_during
		echo "$line" | tee -a "$out"
	done
	rm -f "$samples"
fi
echo "written to $out"
