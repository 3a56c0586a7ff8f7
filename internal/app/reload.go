package app

import (
	"context"
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// ReloadTimeout bounds how long a reload may spend reading and validating
// the new config (10 s). The loader's own bounds (internal/config bounds.go)
// answer any file in well under a second; this deadline is the second guard,
// so that no input can hold a reload — or the agent — for minutes (issue 12:
// a merge bomb did, and SIGTERM went unanswered meanwhile).
const ReloadTimeout = 10 * time.Second

// loadWithin runs load(path) on its own goroutine and waits for it until
// timeout or the end of ctx, whichever comes first. At the deadline the load
// is abandoned: its goroutine ends when load returns (bounded by the loader)
// and its result is dropped. A shutdown therefore never waits for a
// validation.
func loadWithin(ctx context.Context, load func(string) (*config.Config, error), path string, timeout time.Duration) (*config.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		cfg *config.Config
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned load does not block
	go func() {
		cfg, err := load(path)
		done <- result{cfg, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("validation did not finish within %v; the file was abandoned", timeout)
		}
		return nil, fmt.Errorf("validation abandoned: %w", context.Cause(ctx))
	}
}

// reloadAsync starts a reload on its own goroutine, so that the signal loop
// stays free to honour SIGTERM and SIGINT at once whatever the reload does.
// SIGHUPs that arrive while one runs fold into one more reload after it.
// Run waits for the goroutine after the group stopped; a reload whose
// context ended abandons its validation at once (loadWithin).
func (m *Main) reloadAsync(ctx context.Context, actor string) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.reloading {
		m.pendingReload = actor
		return
	}
	m.reloading = true
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		for {
			m.Reload(ctx, actor)
			m.reloadMu.Lock()
			actor, m.pendingReload = m.pendingReload, ""
			if actor == "" || ctx.Err() != nil {
				m.reloading = false
				m.reloadMu.Unlock()
				return
			}
			m.reloadMu.Unlock()
		}
	}()
}
