package api

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/medic-dev/medic"
)

// Refused requests are audited, but no client may grow the audit log faster
// than a bounded rate (issue 12: each unauthenticated denial was one fsynced
// record, ≈ 390 records/s from one client, enough to fill a disk). So they
// are aggregated per source address and reason:
const (
	// DenialWindow is the aggregation window (1 min). The first refusal of a
	// (source, reason) in a window is recorded at once, with its request;
	// the others are counted and recorded as one record when the window ends.
	DenialWindow = time.Minute
	// DenialSources bounds the (source, reason) pairs tracked in a window
	// (100); refusals beyond are counted under the source "other". So
	// refusals add at most 2×(DenialSources+1) records per window.
	DenialSources = 100
)

// denials is the aggregation state: a value without clock or I/O (the
// Server calls it under its lock with the time).
type denials struct {
	open map[denialKey]*denialCount
}

type denialKey struct{ source, reason string }

type denialCount struct {
	start       time.Time // when the window began (the first refusal)
	first, last time.Time // of the refusals counted after the first
	n           int
}

// observe counts one refusal at now; it reports whether it is the first of
// its (source, reason) in the window and must be recorded at once, and
// returns the records of windows that ended.
func (d *denials) observe(now time.Time, source, reason string) (recordNow bool, ended []medic.Event) {
	ended = d.due(now)
	if d.open == nil {
		d.open = map[denialKey]*denialCount{}
	}
	k := denialKey{source, reason}
	if _, ok := d.open[k]; !ok && len(d.open) >= DenialSources {
		k.source = "other"
	}
	c, ok := d.open[k]
	if !ok {
		d.open[k] = &denialCount{start: now}
		return true, ended
	}
	if c.n == 0 {
		c.first = now
	}
	c.last, c.n = now, c.n+1
	return false, ended
}

// due closes the windows that ended by now: one record each for those that
// counted refusals after their first, in a stable order.
func (d *denials) due(now time.Time) []medic.Event {
	var out []medic.Event
	for k, c := range d.open {
		if now.Sub(c.start) < DenialWindow {
			continue
		}
		delete(d.open, k)
		if c.n == 0 {
			continue
		}
		out = append(out, medic.Event{Time: now, Kind: medic.EventAPIDenied, Target: "api", Actor: "api:" + k.source,
			Reason: fmt.Sprintf("%d more requests denied from %s between %s and %s: %s", c.n, k.source,
				c.first.UTC().Format(time.RFC3339), c.last.UTC().Format(time.RFC3339), k.reason),
			Fields: map[string]string{"count": strconv.Itoa(c.n), "source": k.source, "reason": k.reason,
				"from": c.first.UTC().Format(time.RFC3339Nano), "to": c.last.UTC().Format(time.RFC3339Nano),
				"window": DenialWindow.String()}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Actor+out[i].Reason < out[j].Actor+out[j].Reason })
	return out
}
