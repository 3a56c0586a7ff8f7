#!/usr/bin/env bash
# bench/flood-summary.sh LOG...: the client's p99 ratios (flood / quiet interval before it) of
# bench/flood.sh logs, one row per phase and path with every run's ratio and the median, plus
# each run's flooder form (FLOODER_CPU), load average, restarts/ejections and pass/fail.
#   bench/flood-summary.sh bench/results/flood-20261207-14*.log
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 LOG..." >&2; exit 2; }
awk '
FNR == 1 { run++; form[run] = "?"; verdict[run] = "?"; FILENAME_[run] = FILENAME; sub(/.*\//, "", FILENAME_[run]) }
/^flooder: / { f = $2; sub(/,$/, "", f); sub(/^FLOODER_CPU=/, "", f); form[run] = f; l = $0; sub(/.*load average: /, "", l); load[run] = l }
/^--- PASS/ { verdict[run] = "PASS" }
/^--- FAIL/ { verdict[run] = "FAIL" }
/flood_test.go:[0-9]+: (instance .* restarted during|proxy .* ejected .* times)/ { harm[run]++ }
/flood_test.go:[0-9]+: .*(medic status took|error rate|medic status failed)/ { other[run]++ }
/^ +(api|proxy http|proxy tcp|control) +\|/ {
	n = split($0, cols, "|")
	phase = cols[1]; gsub(/^ +| +$/, "", phase)
	for (i = 2; i <= n; i++) {
		c = cols[i]
		if (c !~ /×/) continue
		name = c; sub(/^ +/, "", name); sub(/ p99.*/, "", name)
		r = c; sub(/×.*/, "", r); sub(/.*= /, "", r)
		key = phase " / " name
		if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
		v[key, run] = r
	}
}
END {
	printf "%-26s", "phase / path"
	for (r = 1; r <= run; r++) printf " %7s", "run" r
	printf "  median\n"
	for (k = 1; k <= nk; k++) {
		key = keys[k]; m = 0
		printf "%-26s", key
		for (r = 1; r <= run; r++) {
			x = ((key, r) in v) ? v[key, r] : "-"
			printf " %7s", x
			if (x != "-") a[++m] = x + 0
		}
		# median of a[1..m]
		for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
		med = m == 0 ? "-" : (m % 2 ? a[(m+1)/2] : (a[m/2] + a[m/2+1]) / 2)
		printf "  %s\n", med
	}
	for (r = 1; r <= run; r++)
		printf "run%d (%s): FLOODER_CPU=%s, %s, restarts/ejections reported %d, status/error failures %d, load at start %s\n", r, FILENAME_[r], form[r], verdict[r], harm[r] + 0, other[r] + 0, load[r]
}' "$@"
