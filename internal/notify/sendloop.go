package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// sender is one receiver's bounded queue and send loop.
type sender struct {
	name string
	cfg  *config.Receiver
	enc  encoder
	n    *Notifier
	kick chan struct{} // capacity 1: a pending wake-up, never a blocked Send
	drop chan struct{} // capacity 1: drops to record

	mu         sync.Mutex
	queue      []Notification
	unreported []Notification // dropped, not yet recorded
	sent       uint64
	failed     uint64
	dropped    uint64
}

func newSender(name string, cfg *config.Receiver, enc encoder, n *Notifier) *sender {
	return &sender{name: name, cfg: cfg, enc: enc, n: n, kick: make(chan struct{}, 1), drop: make(chan struct{}, 1)}
}

func (s *sender) capacity() int { return max(s.cfg.Queue, 1) }

func (s *sender) enqueue(note Notification) {
	s.mu.Lock()
	if len(s.queue) >= s.capacity() {
		s.dropLocked(s.queue[0])
		s.queue = s.queue[1:]
	}
	s.queue = append(s.queue, note)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// dropLocked counts a dropped notification; the loop records it, so that a
// Send never waits for the audit log.
func (s *sender) dropLocked(note Notification) {
	s.dropped++
	if len(s.unreported) < 100 { // beyond that only the count survives
		s.unreported = append(s.unreported, note)
	}
	select {
	case s.drop <- struct{}{}:
	default:
	}
}

func (s *sender) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Receiver: s.name, Queued: len(s.queue), Sent: s.sent, Failed: s.failed, Dropped: s.dropped}
}

func (s *sender) pop() (Notification, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return Notification{}, false
	}
	note := s.queue[0]
	s.queue = s.queue[1:]
	return note, true
}

// run sends until ctx ends, then drains the queue within DrainTimeout.
// Drops are recorded by a goroutine of their own, so that they are audited
// while a slow receiver holds the send loop.
func (s *sender) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.drop:
				s.reportDrops(ctx)
			}
		}
	})
	for ctx.Err() == nil {
		note, ok := s.pop()
		if !ok {
			select {
			case <-ctx.Done():
			case <-s.kick:
			}
			continue
		}
		s.deliver(ctx, note)
	}
	// Stop outranks work, but what is queued gets a last, bounded chance
	// (without retries past the deadline).
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.n.opts.DrainTimeout)
	defer cancel()
	for dctx.Err() == nil {
		note, ok := s.pop()
		if !ok {
			break
		}
		s.deliver(dctx, note)
	}
	s.mu.Lock()
	for _, note := range s.queue {
		s.dropLocked(note)
	}
	s.queue = nil
	s.mu.Unlock()
	wg.Wait()
	s.reportDrops(context.WithoutCancel(ctx))
}

func (s *sender) reportDrops(ctx context.Context) {
	s.mu.Lock()
	drops := s.unreported
	s.unreported = nil
	s.mu.Unlock()
	for _, note := range drops {
		s.n.record(ctx, s.event(note, EventDropped, fmt.Sprintf("dropped before sending to %s: queue full or shutting down", s.name), nil))
	}
}

// deliver sends note, retrying transient failures with jittered exponential
// backoff until RetryFor has passed or ctx ends.
func (s *sender) deliver(ctx context.Context, note Notification) {
	body, err := s.enc.encode(note)
	if err != nil {
		s.finish(ctx, note, 0, fmt.Errorf("encode: %w", err))
		return
	}
	if body == nil { // nothing to send for this kind (e.g. a resolve without incident)
		return
	}
	bo := &backoff.ExponentialBackOff{InitialInterval: s.n.opts.RetryInitial, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: s.n.opts.RetryMax}
	bo.Reset()
	deadline := s.n.clock.Now().Add(s.cfg.RetryFor.D())
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.post(ctx, body)
		if err == nil {
			s.finish(ctx, note, attempt, nil)
			return
		}
		var perm *permanentError
		wait := max(bo.NextBackOff(), retryAfter)
		if errors.As(err, &perm) || ctx.Err() != nil || s.n.clock.Now().Add(wait).After(deadline) {
			s.finish(ctx, note, attempt, err)
			return
		}
		s.n.opts.Logger.Debug("notification failed; retrying", "receiver", s.name, "attempt", attempt, "in", wait, "err", err)
		t := s.n.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.finish(ctx, note, attempt, fmt.Errorf("%w (gave up: %v)", err, context.Cause(ctx)))
			return
		case <-t.C():
		}
	}
}

func (s *sender) finish(ctx context.Context, note Notification, attempts int, err error) {
	s.mu.Lock()
	if err == nil {
		s.sent++
	} else {
		s.failed++
	}
	s.mu.Unlock()
	rctx := context.WithoutCancel(ctx)
	fields := map[string]string{"attempts": strconv.Itoa(attempts)}
	if err != nil {
		fields["error"] = err.Error()
		s.n.record(rctx, s.event(note, EventFailed, fmt.Sprintf("%s to %s failed after %d attempts: %v", note.Kind, s.name, attempts, err), fields))
		return
	}
	s.n.record(rctx, s.event(note, EventSent, fmt.Sprintf("%s sent to %s", note.Kind, s.name), fields))
}

func (s *sender) event(note Notification, kind medic.EventKind, reason string, extra map[string]string) medic.Event {
	f := map[string]string{"receiver": s.name, "type": s.enc.kind(), "kind": string(note.Kind), "summary": note.Summary}
	if note.Incident != "" {
		f["incident"] = note.Incident
	}
	for k, v := range extra {
		f[k] = v
	}
	actor := note.Actor
	if actor == "" {
		actor = "notify"
	}
	return medic.Event{Time: s.n.clock.Now(), Kind: kind, Target: note.Target, Actor: actor, Reason: reason, Fields: f}
}

// permanentError is a failure a retry cannot fix (a 4xx other than 408/429).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// post sends one request within the receiver's timeout. It returns the
// delay the receiver asked for (Retry-After on 429/503), if any.
func (s *sender) post(ctx context.Context, body []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.enc.url(), bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medic")
	for k, v := range s.enc.headers() {
		req.Header.Set(k, v)
	}
	resp, err := s.n.opts.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = fmt.Errorf("post: status %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return min(time.Duration(secs)*time.Second, s.n.opts.RetryMax), err
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout:
		return 0, &permanentError{err}
	}
	return 0, err
}
