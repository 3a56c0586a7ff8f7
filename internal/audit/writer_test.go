package audit_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
)

// failing is a Log whose appends fail while full is set, as on a full disk.
type failing struct {
	log  *audit.Log
	full atomic.Bool
}

func (f *failing) Append(ctx context.Context, r audit.Record) (audit.Record, error) {
	if f.full.Load() {
		return audit.Record{}, syscall.ENOSPC
	}
	return f.log.Append(ctx, r)
}

// TestWriterFailsClosedAndFillsTheGap: an append that fails turns the
// writer degraded with the reason, holds records up to the bound (the
// oldest dropped and counted), and answers ErrDegraded; once appends work,
// a gap record names how many were lost and when, the held records follow
// in order, and the chain verifies. Before, a failed append was logged and
// forgotten: the event was published and acted on without a record.
func TestWriterFailsClosedAndFillsTheGap(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	f := &failing{log: l}
	w := audit.NewWriter(f, audit.WriterOptions{Hold: 3, Clock: clk})
	ctx := context.Background()
	if _, err := w.Append(ctx, rec("supervisor", "instance.exit", "web/0")); err != nil {
		t.Fatal(err)
	}
	f.full.Store(true)
	clk.Advance(time.Second)
	_, err := w.Append(ctx, rec("supervisor", "instance.exit", "web/0"))
	if !errors.Is(err, audit.ErrDegraded) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("append on a full disk: %v, want ErrDegraded with the reason", err)
	}
	h := w.Health()
	if !h.Degraded || !strings.Contains(h.Reason, "no space left") || !h.Since.Equal(clk.Now()) || h.Held != 1 {
		t.Fatalf("health = %+v", h)
	}
	if bad, why := w.Degraded(); !bad || !strings.HasPrefix(why, "audit degraded since") {
		t.Fatalf("Degraded() = %v, %q", bad, why)
	}
	// 5 more: the buffer holds 3, so the 3 oldest of the 6 are lost.
	for i := range 5 {
		clk.Advance(time.Second)
		if _, err := w.Append(ctx, audit.Record{Actor: "supervisor", Kind: "instance.restart", Target: "web/0", Reason: strings.Repeat("x", i+1)}); !errors.Is(err, audit.ErrDegraded) {
			t.Fatalf("append %d while degraded: %v", i, err)
		}
	}
	if h := w.Health(); h.Held != 3 || h.Lost != 3 || h.LostTotal != 3 {
		t.Fatalf("health after overflow = %+v, want 3 held, 3 lost", h)
	}
	if w.Flush(ctx) {
		t.Fatal("Flush succeeded on a full disk")
	}
	f.full.Store(false)
	clk.Advance(time.Second)
	if !w.Flush(ctx) {
		t.Fatal("Flush failed once the disk has room")
	}
	if h := w.Health(); h.Degraded || h.Held != 0 || h.Lost != 0 || h.LostTotal != 3 {
		t.Fatalf("health after recovery = %+v", h)
	}
	recs, err := l.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r.Kind)
	}
	want := "instance.exit audit.gap instance.restart instance.restart instance.restart audit.resumed"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("records: %s\nwant:    %s", got, want)
	}
	gap := recs[1]
	if gap.Fields["lost"] != "3" || gap.Fields["from"] != t0.Add(1*time.Second).UTC().Format(time.RFC3339Nano) ||
		gap.Fields["to"] != t0.Add(3*time.Second).UTC().Format(time.RFC3339Nano) || !strings.Contains(gap.Reason, "3 audit records lost") {
		t.Fatalf("gap record = %+v", gap)
	}
	// Held records keep the time they were appended at, and their order.
	if recs[2].Reason != "xxx" || !recs[2].Time.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("first held record = %+v", recs[2])
	}
	mustVerify(t, l, 6)
}

// TestWriterServeRetries: Serve leaves the degraded state on its own once
// the disk has room, within one retry period.
func TestWriterServeRetries(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	f := &failing{log: l}
	w := audit.NewWriter(f, audit.WriterOptions{Clock: clk})
	f.full.Store(true)
	w.Append(context.Background(), rec("supervisor", "instance.exit", "web/0"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	f.full.Store(false)
	clk.Advance(audit.DefaultRetry)
	deadline := time.Now().Add(5 * time.Second)
	for w.Health().Degraded {
		if time.Now().After(deadline) {
			t.Fatal("still degraded after a retry with room on the disk")
		}
		time.Sleep(time.Millisecond)
	}
	mustVerify(t, l, 2)
}
