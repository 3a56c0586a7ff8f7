#!/bin/bash
# A/B of medicproxy builds beside HAProxy on the overhead load, interleaved:
# three instances and every target start once and stay up; `bench-proxy load`
# then runs each target in turn for DURATION, ROUNDS times, rotating the
# order every round, and prints medians and per-round ratios to the first
# target. On a shared machine whose load drifts by the second this is the
# comparison that can tell a few per cent; the harness's 10 s runs cannot
# (bench/proxy/results.md: an A/A pair of the same build differs by up to 10 %).
#
#   bench/proxy/ab.sh [name=medicproxy-binary ...]   (default: this tree's build as "medic")
#   ROUNDS=16 DURATION=3s CONNS=32 PEERS=haproxy bench/proxy/ab.sh old=/tmp/old/medicproxy new=/tmp/new/medicproxy
#
# A binary may be a wrapper script that ends in exec (e.g. to set GOMAXPROCS).
# Per target it also prints, from /proc, the proxy's voluntary and involuntary
# context switches per request, and with perf installed its task-clock per
# request. Every process it starts is stopped by its PID. Needs haproxy
# (PEERS= to leave it out) and python3 (free ports).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-16} DURATION=${DURATION:-3s} CONNS=${CONNS:-32} PEERS=${PEERS-haproxy}
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
go build -o "$dir/bench-proxy" ./bench/proxy
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	go build -o "$dir/medicproxy" ./bench/proxy/medicproxy
	targets=("medic=$dir/medicproxy")
fi
for p in $PEERS; do targets+=("$p=$p"); done
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() {
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "ab.sh: port $1 never listened" >&2
	return 1
}
backs=()
for i in 0 1 2; do
	port=$(freeport)
	"$dir/bench-proxy" backend -listen 127.0.0.1:"$port" -id web-$i 2>"$dir/web-$i.log" &
	pids+=($!)
	backs+=("127.0.0.1:$port")
	waitport "$port"
done
# switches PID: voluntary and involuntary context switches of all its threads
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v+0, n+0}'; }
args=() tpids=() perfs=()
for t in "${targets[@]}"; do
	name=${t%%=*} bin=${t#*=}
	port=$(freeport)
	case $name in
	haproxy)
		{
			printf 'global\n    maxconn 8000\n    nbthread %s\ndefaults\n    mode http\n    option http-keep-alive\n' "$(nproc)"
			printf '    timeout connect 250ms\n    timeout server 250ms\n    timeout client 30s\n    timeout http-keep-alive 30s\n    timeout check 500ms\n'
			printf '    retries 3\n    option redispatch\n    retry-on all-retryable-errors\nfrontend bench\n    bind 127.0.0.1:%s\n    default_backend instances\n' "$port"
			printf 'backend instances\n    balance leastconn\n    option httpchk GET /healthz/ready\n    default-server inter 1s fall 2 rise 2 observe layer7\n'
			for i in 0 1 2; do printf '    server web-%s %s check\n' "$i" "${backs[$i]}"; done
		} >"$dir/haproxy.cfg"
		haproxy -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.log" &
		;;
	*)
		a=(-listen 127.0.0.1:"$port" -try-timeout 250ms -connect-timeout 250ms)
		for i in 0 1 2; do a+=(-backend web-$i="${backs[$i]}"); done
		"$bin" "${a[@]}" 2>"$dir/$name.log" &
		;;
	esac
	pid=$!
	pids+=($pid)
	tpids+=($pid)
	waitport "$port"
	args+=(-target "$name=127.0.0.1:$port@$pid")
done
if command -v perf >/dev/null; then
	for pid in "${tpids[@]}"; do
		perf stat -x, -e task-clock -p "$pid" -o "$dir/perf-$pid" 2>/dev/null &
		perfs+=($!)
	done
fi
sw0=()
for pid in "${tpids[@]}"; do sw0+=("$(switches "$pid")"); done
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) rounds $ROUNDS × $DURATION, $CONNS connections; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$dir/bench-proxy" load "${args[@]}" -conns "$CONNS" -d "$DURATION" -rounds "$ROUNDS" | tee "$dir/out"
for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${perfs[@]}"; do wait "$p" 2>/dev/null || true; done
for k in "${!tpids[@]}"; do
	pid=${tpids[$k]} name=${targets[$k]%%=*}
	n=$(awk -v t="$name" '$1==t{for(i=1;i<NF;i++) if($i=="requests") print $(i+1)}' "$dir/out")
	read -r v0 i0 <<<"${sw0[$k]}"
	read -r v1 i1 <<<"$(switches "$pid")"
	clock=""
	[ -f "$dir/perf-$pid" ] && clock=$(awk -F, -v n="$n" '$3=="task-clock"{printf " task-clock-us/req %.1f", $1*1000/n}' "$dir/perf-$pid")
	awk -v t="$name" -v n="$n" -v v=$((v1 - v0)) -v i=$((i1 - i0)) -v c="$clock" 'BEGIN{printf "%-10s switches/req voluntary %.3f involuntary %.3f%s\n", t, v/n, i/n, c}'
done
echo "# end $(date -u +%T); load average $(cut -d' ' -f1-3 /proc/loadavg)"
