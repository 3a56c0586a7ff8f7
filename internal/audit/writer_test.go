package audit_test

import (
	"context"
	"errors"
	"strconv"
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

// counting is a Log that counts its commits and the records in each.
type counting struct {
	log     *audit.Log
	commits atomic.Int64
	largest atomic.Int64
	gate    chan struct{} // when set, each commit waits for a token (so that appends queue)
}

func (c *counting) Append(ctx context.Context, r audit.Record) (audit.Record, error) {
	rs, err := c.AppendBatch(ctx, []audit.Record{r})
	if len(rs) == 1 {
		return rs[0], err
	}
	return audit.Record{}, err
}

func (c *counting) AppendBatch(ctx context.Context, rs []audit.Record) ([]audit.Record, error) {
	if c.gate != nil {
		<-c.gate
	}
	c.commits.Add(1)
	if n := int64(len(rs)); n > c.largest.Load() {
		c.largest.Store(n)
	}
	return c.log.AppendBatch(ctx, rs)
}

// TestWriterGroupCommit: appends that arrive while one commits are
// committed together after it, each caller answered only after its own
// record is stored (its Seq is in the log when Append returns); the chain
// stays whole and in the order of the commits; a batch takes at most
// MaxBatch records.
func TestWriterGroupCommit(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	c := &counting{log: l, gate: make(chan struct{})}
	w := audit.NewWriter(c, audit.WriterOptions{Clock: clk})
	ctx := context.Background()

	const n = 2*audit.MaxBatch + 10
	type answer struct {
		rec audit.Record
		err error
	}
	answers := make(chan answer, n+1)
	// The first append takes the lead and waits in its commit (the gate);
	// the others queue behind it.
	go func() {
		r, err := w.Append(ctx, rec("supervisor", "instance.started", "web/0"))
		answers <- answer{r, err}
	}()
	for i := range n {
		go func() {
			r, err := w.Append(ctx, rec("supervisor", "instance.ready", "web/"+strconv.Itoa(i+1)))
			answers <- answer{r, err}
		}()
	}
	// Let the queue fill before the first commit goes on: the appends are
	// in the queue once the writer's queue holds them all (bounded wait).
	deadline := time.Now().Add(10 * time.Second)
	for w.Queued() < n+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d appends queued after 10s", w.Queued(), n+1)
		}
		time.Sleep(time.Millisecond)
	}
	close(c.gate) // every commit may go on now

	seqs := map[int64]bool{}
	for range n + 1 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("append failed: %v", a.err)
		}
		if a.rec.Seq == 0 || seqs[a.rec.Seq] {
			t.Fatalf("answer %+v: no or duplicate seq", a.rec)
		}
		seqs[a.rec.Seq] = true
		// Durable when answered: the log's head is at least this record.
		if l.Head().Seq < a.rec.Seq {
			t.Fatalf("record %d answered before it was stored (head %d)", a.rec.Seq, l.Head().Seq)
		}
	}
	if got, want := len(seqs), n+1; got != want {
		t.Fatalf("%d records stored, want %d", got, want)
	}
	// The first commit held 1 record; the n queued ones took ⌈n/MaxBatch⌉
	// more commits, at most MaxBatch records each.
	if cm, lg, want := c.commits.Load(), c.largest.Load(), 1+int64((n+audit.MaxBatch-1)/audit.MaxBatch); cm != want || lg != audit.MaxBatch {
		t.Fatalf("%d commits, largest %d records: want %d, largest MaxBatch (%d)", cm, lg, want, audit.MaxBatch)
	}
	if got, err := l.Verify(ctx); err != nil || got != n+1 {
		t.Fatalf("Verify: %d records, %v", got, err)
	}
	if h := w.Health(); h.Degraded || h.Failures != 0 {
		t.Fatalf("health %+v", h)
	}
}

// batchFailing commits through log; its commits from the failFrom-th on
// fail as on a full disk while full is set; each waits at gate when set.
type batchFailing struct {
	log      *audit.Log
	gate     chan struct{}
	commits  atomic.Int64
	failFrom int64
	full     atomic.Bool
}

func (b *batchFailing) Append(ctx context.Context, r audit.Record) (audit.Record, error) {
	rs, err := b.AppendBatch(ctx, []audit.Record{r})
	if len(rs) == 1 {
		return rs[0], err
	}
	return audit.Record{}, err
}

func (b *batchFailing) AppendBatch(ctx context.Context, rs []audit.Record) ([]audit.Record, error) {
	<-b.gate
	if b.commits.Add(1) >= b.failFrom && b.full.Load() {
		return nil, syscall.ENOSPC
	}
	return b.log.AppendBatch(ctx, rs)
}

// TestWriterGroupCommitFailsClosed: a group commit that fails turns the
// writer degraded and holds every record of the batch (none is answered
// as stored), a caller of the batch that gave up is answered with its
// context's error and its record is neither stored nor held; once the disk
// has room the gap record, the held records and the resumed record follow
// and the chain verifies across the batches.
func TestWriterGroupCommitFailsClosed(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	b := &batchFailing{log: l, gate: make(chan struct{}), failFrom: 2}
	b.full.Store(true)
	w := audit.NewWriter(b, audit.WriterOptions{Hold: 3, Clock: clk})
	type answer struct {
		target string
		rec    audit.Record
		err    error
	}
	answers := make(chan answer, 8)
	appendAs := func(ctx context.Context, target string) {
		r, err := w.Append(ctx, rec("supervisor", "instance.ready", target))
		answers <- answer{target, r, err}
	}
	go appendAs(context.Background(), "web/0") // the leader: its commit (the first) succeeds
	waitQueued(t, w, 1)
	gaveUp, cancel := context.WithCancel(context.Background())
	go appendAs(gaveUp, "web/gave-up")
	waitQueued(t, w, 2)
	for i := 1; i <= 5; i++ {
		go appendAs(context.Background(), "web/"+strconv.Itoa(i))
	}
	waitQueued(t, w, 7)
	cancel()
	close(b.gate)

	for range 7 {
		a := <-answers
		switch {
		case a.target == "web/0":
			if a.err != nil || a.rec.Seq != 1 {
				t.Fatalf("the leader's own commit: %+v, %v", a.rec, a.err)
			}
		case a.target == "web/gave-up":
			if !errors.Is(a.err, context.Canceled) || a.rec.Seq != 0 {
				t.Fatalf("the caller that gave up: %+v, %v; want context.Canceled", a.rec, a.err)
			}
		default:
			if !errors.Is(a.err, audit.ErrDegraded) || a.rec.Seq != 0 {
				t.Fatalf("%s in the failed batch: %+v, %v; want ErrDegraded", a.target, a.rec, a.err)
			}
		}
	}
	if got := b.commits.Load(); got != 2 {
		t.Fatalf("%d commits; want 2 (the leader's, then the batch of the 5 that had not given up)", got)
	}
	h := w.Health()
	if !h.Degraded || h.Held != 3 || h.Lost != 2 || !strings.Contains(h.Reason, "no space left") {
		t.Fatalf("health after the failed batch: %+v; want degraded, 3 held, 2 lost", h)
	}
	b.full.Store(false)
	if !w.Flush(context.Background()) {
		t.Fatal("Flush failed once the disk has room")
	}
	// web/0, the gap, the 3 held, resumed.
	mustVerify(t, l, 6)
	recs, err := l.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Target == "web/gave-up" {
			t.Fatalf("the record of the caller that gave up was stored: %+v", r)
		}
	}
}

func waitQueued(t *testing.T, w *audit.Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d appends queued after 10s", w.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
