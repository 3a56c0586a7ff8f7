package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// ErrDegraded reports that a record was not stored: appends fail (a full
// disk, a read-only file system …). The record is held in the Writer's
// buffer, or counted as lost when the buffer is full, until appends succeed.
// A caller that must not act without a durable record (remediation) stops
// on it.
var ErrDegraded = errors.New("audit: degraded")

// Defaults of WriterOptions.
const (
	// DefaultHold is how many records are held while appends fail (1 024).
	// The oldest is dropped, and counted, when one more arrives.
	DefaultHold = 1024
	// DefaultRetry is how often a degraded Writer tries to append again (1 s).
	DefaultRetry = time.Second
)

// Kinds of the records the Writer appends itself, when appends work again.
const (
	// KindGap: records were lost while appends failed. Fields: lost, from,
	// to (RFC 3339 times of the first and last lost record), reason.
	KindGap = "audit.gap"
	// KindResumed: appends work again. Fields: since, held, reason.
	KindResumed = "audit.resumed"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	Hold  int           // records held while degraded; 0 means DefaultHold
	Retry time.Duration // how often Serve retries while degraded; 0 means DefaultRetry
	Clock clock.Clock   // stamps records and the degraded state; nil means the wall clock
}

// Health is the state of the audit log as the agent reports it (status,
// dashboard, /metrics, /v1/audit/verify).
type Health struct {
	Degraded bool      `json:"degraded"`
	Reason   string    `json:"reason,omitempty"` // the error of the first failed append
	Since    time.Time `json:"since,omitzero"`
	Held     int       `json:"held"` // records waiting to be appended
	Lost     int64     `json:"lost"` // records dropped since the log degraded (the buffer was full)
	// LostTotal and Failures count over the life of the process.
	LostTotal int64 `json:"lost_total"`
	Failures  int64 `json:"failures"` // appends that failed
}

// String says what a person needs: "ok", or "audit degraded since …: reason".
func (h Health) String() string {
	if !h.Degraded {
		return "ok"
	}
	return fmt.Sprintf("audit degraded since %s: %s (%d records held, %d lost)",
		h.Since.UTC().Format(time.RFC3339), h.Reason, h.Held, h.Lost)
}

// Writer is the one way the agent appends to the audit log. It fails
// closed: when an append fails it turns degraded, holds that record and the
// following ones in a bounded buffer (dropping the oldest, counted), and
// answers ErrDegraded, so that whoever must not act without a record can
// stop. Serve retries; when an append succeeds again the Writer appends a
// gap record stating how many records were lost and between which times,
// then the held records in order, then a resumed record. The chain stays
// whole: nothing is ever rewritten, the gap is itself a record.
//
// A Writer is safe for concurrent use; appends are serialised. Appends
// that arrive while one is being committed are committed together after it
// (a group commit through a BatchAppender: one transaction and one fsync of
// the store, one rewrite of audit.head, for at most MaxBatch records); each
// Append still returns only once its own record is durable, so whoever acts
// after its record acts after the record is on disk, as with single appends.
type Writer struct {
	log   Appender
	clock clock.Clock
	hold  int
	retry time.Duration

	qmu        sync.Mutex
	queue      []*pendingAppend // waiting for a commit, oldest first
	leading    bool             // an Append is committing the queue
	committing int              // records taken from the queue and not answered yet

	mu       sync.Mutex
	health   Health
	held     []Record
	lostFrom time.Time
	lostTo   time.Time
}

// Appender is what a Writer appends to: a *Log (tests put a failing one in
// front of it).
type Appender interface {
	Append(ctx context.Context, r Record) (Record, error)
}

// BatchAppender appends several records in one commit (*Log does): the
// Writer's group commit. An Appender without it gets one Append per record.
type BatchAppender interface {
	AppendBatch(ctx context.Context, rs []Record) ([]Record, error)
}

var (
	_ Appender      = (*Log)(nil)
	_ BatchAppender = (*Log)(nil)
)

// MaxBatch is the most records one group commit takes (64); the rest wait
// for the next one.
const MaxBatch = 64

// pendingAppend is one Append waiting in the queue.
type pendingAppend struct {
	ctx  context.Context
	r    Record
	done chan appendResult // one answer; or first {lead: true}, then the answer
}

type appendResult struct {
	rec  Record
	err  error
	lead bool // the receiver commits the queue now (it is at its front)
}

// NewWriter returns a Writer appending to log.
func NewWriter(log Appender, o WriterOptions) *Writer {
	if o.Hold <= 0 {
		o.Hold = DefaultHold
	}
	if o.Retry <= 0 {
		o.Retry = DefaultRetry
	}
	return &Writer{log: log, clock: clock.Or(o.Clock), hold: o.Hold, retry: o.Retry}
}

// Health returns the current state.
func (w *Writer) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.health
	h.Held = len(w.held)
	return h
}

// Degraded reports whether appends fail, and why (remedy's guard).
func (w *Writer) Degraded() (bool, string) {
	h := w.Health()
	return h.Degraded, h.String()
}

// Append stores r (see Log.Append). While the log is degraded, r is held
// and the error wraps ErrDegraded; r keeps the time it was appended at.
func (w *Writer) Append(ctx context.Context, r Record) (Record, error) {
	if r.Time.IsZero() {
		r.Time = w.clock.Now()
	}
	p := &pendingAppend{ctx: ctx, r: r, done: make(chan appendResult, 1)}
	w.qmu.Lock()
	w.queue = append(w.queue, p)
	lead := !w.leading
	w.leading = true
	w.qmu.Unlock()
	if !lead {
		res := <-p.done
		if !res.lead {
			return res.rec, res.err
		}
	}
	w.commitQueue()
	res := <-p.done
	return res.rec, res.err
}

// Queued is how many appends wait for a commit or are in one (tests).
func (w *Writer) Queued() int {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return len(w.queue) + w.committing
}

// commitQueue commits the front of the queue (at most MaxBatch records,
// the caller's first), answers each, and hands the lead to the next waiting
// Append, if any: no caller commits more than one batch.
func (w *Writer) commitQueue() {
	w.qmu.Lock()
	batch := w.queue[:min(len(w.queue), MaxBatch)]
	w.queue = w.queue[len(batch):]
	w.committing = len(batch)
	w.qmu.Unlock()

	w.commit(batch)

	w.qmu.Lock()
	w.committing = 0
	if len(w.queue) > 0 {
		w.queue[0].done <- appendResult{lead: true}
	} else {
		w.leading = false
	}
	w.qmu.Unlock()
}

// commit appends batch and answers each of its Appends.
func (w *Writer) commit(batch []*pendingAppend) {
	w.mu.Lock()
	defer w.mu.Unlock()
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- appendResult{err: fmt.Errorf("audit: append %s: %w", p.r.Kind, err)} // the caller gave up
			continue
		}
		if _, err := normalize(p.r); err != nil {
			// Alone, as before the group commit: a malformed record must not take the others with it.
			rec, err := w.appendLocked(p.ctx, p.r)
			p.done <- appendResult{rec: rec, err: err}
			continue
		}
		live = append(live, p)
	}
	ba, ok := w.log.(BatchAppender)
	if !ok || len(live) <= 1 || w.health.Degraded {
		// One at a time: nothing to group, or held one by one while degraded.
		for _, p := range live {
			rec, err := w.appendLocked(p.ctx, p.r)
			p.done <- appendResult{rec: rec, err: err}
		}
		return
	}
	rs := make([]Record, len(live))
	for i, p := range live {
		rs[i] = p.r
	}
	// Not the first caller's context alone: the batch carries the others'
	// records too (each was checked above).
	stored, err := ba.AppendBatch(context.WithoutCancel(live[0].ctx), rs)
	if err == nil || len(stored) == len(live) {
		if err != nil {
			w.health.Failures++ // the records are durable; only audit.head could not be rewritten
		}
		for i, p := range live {
			p.done <- appendResult{rec: stored[i], err: err}
		}
		return
	}
	w.health.Failures++
	w.degradeLocked(err)
	for _, p := range live {
		w.holdLocked(p.r)
		p.done <- appendResult{err: fmt.Errorf("%w: %w", ErrDegraded, err)}
	}
}

// appendLocked is one record's append (w.mu held): through the log, or
// held while degraded.
func (w *Writer) appendLocked(ctx context.Context, r Record) (Record, error) {
	if w.health.Degraded {
		w.holdLocked(r)
		return Record{}, fmt.Errorf("%w since %s (%s): %s held", ErrDegraded,
			w.health.Since.UTC().Format(time.RFC3339), w.health.Reason, r.Kind)
	}
	stored, err := w.log.Append(ctx, r)
	if err == nil {
		return stored, nil
	}
	w.health.Failures++
	if stored.Seq > 0 {
		// The record is durable; only audit.head could not be rewritten.
		// The next append will tell whether the disk is full.
		return stored, err
	}
	if ctx.Err() != nil {
		return Record{}, err // the caller gave up; the log is not at fault
	}
	w.degradeLocked(err)
	w.holdLocked(r)
	return Record{}, fmt.Errorf("%w: %w", ErrDegraded, err)
}

// degradeLocked turns the writer degraded by err: records are held from
// now on (w.mu held).
func (w *Writer) degradeLocked(err error) {
	w.health.Degraded, w.health.Reason, w.health.Since = true, err.Error(), w.clock.Now()
	w.health.Lost = 0
}

func (w *Writer) holdLocked(r Record) {
	if len(w.held) >= w.hold {
		lost := w.held[0]
		w.held = w.held[1:]
		if w.health.Lost == 0 {
			w.lostFrom = lost.Time
		}
		w.lostTo = lost.Time
		w.health.Lost++
		w.health.LostTotal++
	}
	w.held = append(w.held, r)
}

// Serve retries a degraded log every Retry until ctx ends, then tries once
// more: records held at shutdown are written if the disk allows.
func (w *Writer) Serve(ctx context.Context) error {
	t := w.clock.NewTimer(w.retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.Flush(context.WithoutCancel(ctx))
			return nil
		case <-t.C():
			w.Flush(ctx)
			t.Reset(w.retry)
		}
	}
}

// Flush tries to leave the degraded state: it appends the gap record (when
// records were lost), the held records in order, and a resumed record. It
// stops at the first failure, keeping what is not written. It reports
// whether the log is healthy afterwards.
func (w *Writer) Flush(ctx context.Context) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.health.Degraded {
		return true
	}
	now := w.clock.Now()
	if w.health.Lost > 0 {
		gap := Record{Time: now, Actor: "medic", Kind: KindGap, Target: "audit",
			Reason: fmt.Sprintf("%d audit records lost between %s and %s: appends failed (%s) and the hold buffer of %d was full",
				w.health.Lost, w.lostFrom.UTC().Format(time.RFC3339Nano), w.lostTo.UTC().Format(time.RFC3339Nano), w.health.Reason, w.hold),
			Fields: map[string]string{"lost": strconv.FormatInt(w.health.Lost, 10),
				"from": w.lostFrom.UTC().Format(time.RFC3339Nano), "to": w.lostTo.UTC().Format(time.RFC3339Nano),
				"reason": w.health.Reason, "hold": strconv.Itoa(w.hold)}}
		if _, err := w.log.Append(ctx, gap); err != nil {
			w.health.Failures++
			return false
		}
		w.health.Lost = 0
	}
	written := 0
	for len(w.held) > 0 {
		if _, err := w.log.Append(ctx, w.held[0]); err != nil {
			w.health.Failures++
			return false
		}
		w.held = w.held[1:]
		written++
	}
	w.held = nil
	resumed := Record{Time: w.clock.Now(), Actor: "medic", Kind: KindResumed, Target: "audit",
		Reason: fmt.Sprintf("audit appends work again after failing since %s (%s); %d held records written",
			w.health.Since.UTC().Format(time.RFC3339), w.health.Reason, written),
		Fields: map[string]string{"since": w.health.Since.UTC().Format(time.RFC3339Nano), "held": strconv.Itoa(written), "reason": w.health.Reason}}
	if _, err := w.log.Append(ctx, resumed); err != nil {
		w.health.Failures++
		return false
	}
	w.health.Degraded, w.health.Reason, w.health.Since = false, "", time.Time{}
	return true
}
