#!/bin/sh
# Measures one medic agent supervising 50 demoapp instances with startup +
# liveness + readiness http probes every second (bench/harness's footprint
# configuration) and prints RSS, anonymous and file-backed memory, its CPU
# ticks and context switches over 10 s, goroutines, heap and stacks; with
# SECTIONS=1 also which pages of the binary are resident, per ELF section,
# before (25 s) and after (45 s) the trim of start-up pages at 30 s.
# With AT="60 600 1800" (seconds after start) it also prints RssAnon, RssFile
# and the heap in use at each of those times, before the 10 s window (the
# signal store grew for an hour before it kept only what conditions read).
# Usage: bench/footprint/agent.sh BIN [TAG]   (MEDIC_TRIM_EXEC=0 turns the trim off)
# Needs: curl, python3 (for SECTIONS=1), readelf.
set -eu
bin=$(realpath "$1"); tag=${2:-agent}; wait=${WAIT:-40}
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cp "$bin" "$d/demoapp" # the instances run a copy: they must not share the agent's pages
port=$((40000 + $(od -An -N2 -tu2 /dev/urandom) % 20000)); api=$((port + 100))
cat > "$d/medic.yaml" <<Y
data_dir: "$d/data"
api:
  listen: "127.0.0.1:$api"
services:
  demo:
    command: [$d/demoapp, demoapp, --listen, "127.0.0.1:\${PORT}"]
    instances: 50
    port: $port
    restart: {policy: always, reset_after: 1s}
    stop: {signal: TERM, grace: 2s}
    probes:
      startup:   {http: {path: /healthz/live}, period: 1s, timeout: 500ms, failure_threshold: 30}
      liveness:  {http: {path: /healthz/live}, period: 1s, timeout: 500ms, failure_threshold: 3}
      readiness: {http: {path: /healthz/ready}, period: 1s, timeout: 500ms}
Y
"$bin" run -c "$d/medic.yaml" > "$d/out.log" 2>&1 &
pid=$!
if [ -n "${SECTIONS:-}" ]; then
	sleep 25
	echo "$tag at 25 s:"; grep -E '^(RssAnon|RssFile)' /proc/$pid/status | tr '\n' ' '; echo
	python3 "$here/sections.py" $pid "$bin"
	sleep $((wait - 25))
	echo "$tag at $wait s:"; grep -E '^(RssAnon|RssFile)' /proc/$pid/status | tr '\n' ' '; echo
	python3 "$here/sections.py" $pid "$bin"
elif [ -n "${AT:-}" ]; then
	start=$(date +%s)
	for at in $AT; do
		sleep $((start + at - $(date +%s)))
		h=$(curl -s 127.0.0.1:$api/metrics | awk '/^go_memstats_heap_inuse_bytes/{printf "%.1f", $2/1048576}')
		echo "$tag at ${at} s: $(grep -E '^(RssAnon|RssFile)' /proc/$pid/status | awk '{printf "%s%.1f ", $1, $2/1024}')(MiB) heap_inuse=${h}MiB"
	done
else
	sleep "$wait"
fi
cs() { cat /proc/$pid/task/*/status | awk '/ctxt_switches/{n+=$2} END{print n}'; }
t0=$(awk '{print $14+$15}' /proc/$pid/stat); c0=$(cs)
sleep 10
t1=$(awk '{print $14+$15}' /proc/$pid/stat); c1=$(cs)
r=$(grep -E '^(Rss|Pss_Anon|Pss_File)' /proc/$pid/smaps_rollup | awk '{printf "%s%.1f ", $1, $2/1024}')
st=$(grep -E '^RssAnon|^RssFile|^Threads' /proc/$pid/status | awk '{printf "%s%s ", $1, $2}')
gr=$(curl -s 127.0.0.1:$api/metrics | grep -E '^go_goroutines|^go_memstats_heap_inuse_bytes|^go_memstats_stack_inuse' | tr '\n' ' ')
db=$(du -sk "$d/data" | cut -f1)
echo "$tag: ${r}(MiB) $st ticks10s=$((t1 - t0)) cswitch10s=$((c1 - c0)) data_dir=${db}KiB $gr"
kill -TERM $pid
wait $pid || true
