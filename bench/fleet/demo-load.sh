#!/usr/bin/env bash
# `medic demo --fleet` repeated under load, to see how long the fleet takes
# to be placed (three hosts up, 2 of web ready on each: the demo's first
# bound, 90 s) and what holds it when it does not make it. Needs etcd
# (etcd-server).
#
#   bench/fleet/demo-load.sh [RUNS] [LOAD...]      # default: 6 runs, LOAD cpu:6
#
# LOAD, any of (together):
#   cpu:N     N busy loops (sh), niced 0 like the demo
#   fsync:N   N writers, each writing 1 MiB in 4 KiB synchronous writes in a loop (the disk etcd fsyncs to)
#   test      `go test -race ./internal/...` over and over (what the CI machine runs beside it)
#   none      nothing
# MEDIC_BIN=path runs that binary instead of building this tree's.
# Per run: pass or fail, the wall time, the time to placed (from the
# demo's etcd line, when the agents start, to its "h1, h2, h3 up" line)
# and the recovery line; a failed run's whole output
# (with the demo's diagnosis) is kept in bench/results/. The load average
# is printed before and after. Every process it starts is stopped by its
# process group id at the end (also on ^C).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-6}
shift || true
loads=("$@")
[ ${#loads[@]} -eq 0 ] && loads=(cpu:6)
stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p bench/results
out=bench/results/fleet-demo-load-$stamp.txt
tmp=$(mktemp -d)
bin=${MEDIC_BIN:-$tmp/medic} # MEDIC_BIN: a binary built before (to compare two versions)
[ -n "${MEDIC_BIN:-}" ] || go build -o "$bin" ./cmd/medic

pgids=()
cleanup() {
	for g in "${pgids[@]}"; do kill -- "-$g" 2>/dev/null || true; done
	for g in "${pgids[@]}"; do while kill -0 -- "-$g" 2>/dev/null; do sleep 0.1; done; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

for l in "${loads[@]}"; do
	case $l in
	cpu:*)
		for _ in $(seq "${l#cpu:}"); do
			setsid sh -c 'while :; do :; done' & pgids+=($!)
		done ;;
	fsync:*)
		for i in $(seq "${l#fsync:}"); do
			setsid sh -c "while :; do dd if=/dev/zero of=$tmp/fsync-$i bs=4k count=256 oflag=dsync 2>/dev/null; done" & pgids+=($!)
		done ;;
	test)
		setsid sh -c 'while :; do go test -race -count=1 ./internal/... >/dev/null 2>&1; done' & pgids+=($!) ;;
	none) ;;
	*) echo "unknown load $l (cpu:N, fsync:N, test, none)" >&2; exit 2 ;;
	esac
done
[ ${#pgids[@]} -gt 0 ] && sleep 20 # let the load average rise

{
	echo "medic demo --fleet × $runs, load: ${loads[*]}"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out"
for i in $(seq "$runs"); do
	start=$(date +%s.%N)
	rc=0
	timeout 300 "$bin" demo --fleet >"$tmp/run.txt" 2>&1 || rc=$?
	wall=$(echo "$(date +%s.%N) - $start" | bc)
	# placed: from etcd healthy (the agents start then) to the "h1, h2, h3 up" line
	etcd=$(grep -oE '^ *[0-9.]+s +etcd ' "$tmp/run.txt" | grep -oE '[0-9.]+' | head -1 || true)
	up=$(grep -oE '^ *[0-9.]+s +fleet +h1, h2, h3 up' "$tmp/run.txt" | grep -oE '^ *[0-9.]+' | head -1 || true)
	placed=-
	[ -n "$etcd" ] && [ -n "$up" ] && placed=$(printf '%.2f' "$(echo "$up - $etcd" | bc)")
	rec=$(grep -E '^recovery:' "$tmp/run.txt" || true)
	if [ $rc -eq 0 ]; then
		printf 'run %d: pass  wall %.1fs  placed %ss after etcd  %s  (load %s)\n' "$i" "$wall" "$placed" "$rec" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
	else
		keep=bench/results/fleet-demo-load-$stamp-run$i.txt
		cp "$tmp/run.txt" "$keep"
		printf 'run %d: FAIL  wall %.1fs  exit %d  placed %ss after etcd  (load %s)  output: %s\n' "$i" "$wall" "$rc" "$placed" "$(cut -d' ' -f1 /proc/loadavg)" "$keep" | tee -a "$out"
	fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "written: $out"
