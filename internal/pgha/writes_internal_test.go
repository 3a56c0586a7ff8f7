package pgha

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The moments a database drill's load notes: a write in flight when the
// primary died may still be acknowledged, which is no recovery; the first
// write sent after the failure and acknowledged is. A switchover without a
// failure shows as a move to another server.
func TestWriteLoadMoments(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var notes []string
	w := &WriteLoad{Note: func(kind, reason string, fields map[string]string) {
		notes = append(notes, kind+" "+fields["server"])
	}}
	down := errors.New("connection refused")
	w.observe(at(0), at(5), 1, "a:1", nil)
	w.observe(at(10), at(15), 2, "a:1", nil)
	w.observe(at(20), at(30), 3, "", down)       // the primary died
	w.observe(at(18), at(40), 4, "a:1", nil)     // sent before: a late acknowledgment
	w.observe(at(50), at(60), 5, "", down)       // still down
	w.observe(at(4000), at(4010), 6, "b:1", nil) // the new primary
	w.observe(at(4010), at(4020), 7, "b:1", nil)
	w.observe(at(5000), at(5005), 8, "c:1", nil) // a switchover: another server, no failure
	w.observe(at(4990), at(5010), 9, "b:1", nil) // an older write, late: no move back
	got := strings.Join(notes, ", ")
	want := "db.writes.failing , db.writes.resumed b:1, db.writes.resumed c:1"
	if got != want {
		t.Fatalf("notes %q, want %q", got, want)
	}
	if len(w.acked) != 7 {
		t.Fatalf("%d acknowledged, want 7", len(w.acked))
	}
}
