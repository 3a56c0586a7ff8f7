package drill

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

// Writes is a component's own load, driven in place of HTTP load: the
// database component's single-row transactions through its primary
// listeners. Run reports every outcome until ctx ends; Verify, after the
// load ended, reads back what was acknowledged.
type Writes interface {
	Run(ctx context.Context, onSample func(load.Sample)) error
	Verify(ctx context.Context) (acked, lost int, err error)
}

// WriteRequest asks a component for the write load of one drill.
type WriteRequest struct {
	Database string
	Drill    int64
	Rate     float64 // transactions per second
	// Note records a moment of the load (db.writes.failing,
	// db.writes.resumed) as an event of the drill.
	Note func(kind, reason string, fields map[string]string)
}

// WriteLoad is what the component answers.
type WriteLoad struct {
	Writes
	// Describe is the load line of the report ("100 writes/s through …").
	Describe string
	// Lossless: an acknowledged write that cannot be read back afterwards
	// fails the drill (synchronous replication promises none is lost).
	Lossless bool
}

// WriteFigures are the write load's figures in a drill's result.
type WriteFigures struct {
	Acked int `json:"acked"`
	Lost  int `json:"lost"`
	// RTO is the longest time without an acknowledgment that ended after
	// the injection: the last acknowledged write before the outage to the
	// first one after it, as clients see it.
	RTO      *float64 `json:"rto_seconds"`
	Lossless bool     `json:"lossless"`
	Error    string   `json:"error,omitempty"`
}

// writeRTO is the longest time clients went without an acknowledgment,
// counting only gaps that end after inject: between consecutive
// acknowledgments, and, when writes were still failing after the last one,
// from it to end (the load stopped before it recovered). nil without any
// acknowledgment or failure after inject.
func writeRTO(samples []load.Sample, inject, end time.Time) *float64 {
	var acks []time.Time
	var lastFail time.Time
	for _, s := range samples {
		if s.OK {
			acks = append(acks, s.Done())
		} else if s.Done().After(lastFail) {
			lastFail = s.Done()
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	var best time.Duration
	found := false
	for i := 1; i < len(acks); i++ {
		if acks[i].After(inject) {
			found = true
			best = max(best, acks[i].Sub(acks[i-1]))
		}
	}
	if n := len(acks); n > 0 && lastFail.After(acks[n-1]) && lastFail.After(inject) {
		found = true
		best = max(best, end.Sub(acks[n-1]))
	}
	if !found {
		return nil
	}
	v := best.Seconds()
	return &v
}

// writeReasons are the failures the write figures show.
func writeReasons(f *WriteFigures) []string {
	switch {
	case f.Error != "":
		return []string{"the acknowledged writes could not be read back: " + f.Error}
	case f.Lost > 0 && f.Lossless:
		return []string{fmt.Sprintf("%d of %d acknowledged writes lost in synchronous mode", f.Lost, f.Acked)}
	}
	return nil
}
