package pgha

import (
	"context"
	"fmt"
)

// Exclusive runs fn while the member's loop starts, stops, clones and
// rewinds nothing (it sees the member busy, as during a bootstrap): an
// operator's restore into the data directory (medic db bootstrap
// --from-backup). It refuses while another operation runs or postgres runs.
func (a *Agent) Exclusive(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	a.mu.Lock()
	if a.busy != "" {
		busy := a.busy
		a.mu.Unlock()
		return fmt.Errorf("%s: %w: the member is busy (%s)", name, ErrRefused, busy)
	}
	a.busy = name
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.busy = ""
		a.mu.Unlock()
		a.poke()
	}()
	a.jobs.Wait() // an operation started just before is over
	if running, _, _, _ := a.pg.State(); running {
		return fmt.Errorf("%s: %w: this member's postgres runs", name, ErrRefused)
	}
	if a.pg.Initialized() {
		return fmt.Errorf("%s: %w: this member's data directory %s holds a cluster; a restore never overwrites one", name, ErrRefused, a.pg.o.Data)
	}
	return fn(ctx)
}
