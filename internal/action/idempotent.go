package action

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Dedup makes actions idempotent for their key: within Window of the first
// call with a key, a second call returns the first result (Output.Replayed
// set) instead of acting again; a call arriving while the first still runs
// waits for it. Errors are results too — a failed restart is not retried
// under the same key — except cancellation (shutdown), which is forgotten so
// that the step can run again. Keys are per action name.
type Dedup struct {
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*dedupEntry
}

type dedupEntry struct {
	done chan struct{}
	at   time.Time
	out  Output
	err  error
}

// NewDedup returns a Dedup remembering results for window, measured with now.
func NewDedup(window time.Duration, now func() time.Time) *Dedup {
	if now == nil {
		now = time.Now
	}
	return &Dedup{window: window, now: now, entries: map[string]*dedupEntry{}}
}

// Wrap returns a that remembers its results by name and Input.Key. An empty
// key is never deduplicated.
func (d *Dedup) Wrap(name string, a Action) Action {
	return Func(func(ctx context.Context, in Input) (Output, error) {
		if in.Key == "" {
			return a.Do(ctx, in)
		}
		key := name + "\x00" + in.Key
		now := d.now()
		d.mu.Lock()
		d.pruneLocked(now)
		if e, ok := d.entries[key]; ok {
			d.mu.Unlock()
			select {
			case <-e.done:
			case <-ctx.Done():
				return Output{}, ctx.Err()
			}
			out := e.out
			out.Replayed = true
			return out, e.err
		}
		e := &dedupEntry{done: make(chan struct{}), at: now}
		d.entries[key] = e
		d.mu.Unlock()

		e.out, e.err = a.Do(ctx, in)
		if errors.Is(e.err, context.Canceled) {
			d.mu.Lock()
			delete(d.entries, key)
			d.mu.Unlock()
		}
		close(e.done)
		return e.out, e.err
	})
}

// pruneLocked forgets finished entries older than the window.
func (d *Dedup) pruneLocked(now time.Time) {
	for k, e := range d.entries {
		select {
		case <-e.done:
			if now.Sub(e.at) >= d.window {
				delete(d.entries, k)
			}
		default:
		}
	}
}
