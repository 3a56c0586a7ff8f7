package drill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill/cron"
)

// scheduleKey identifies a schedule across reloads: an edited entry starts
// over, an unchanged one keeps its next time.
func scheduleKey(i int, s config.DrillSchedule) string {
	return fmt.Sprintf("%d|%s|%s|%s", i, s.Scenario, s.Service, s.Cron)
}

// dueSchedules is the pure part of the scheduler: given the schedules, the
// next firing time of each (updated in place; a new schedule first fires at
// its next time after now, never at once) and now, it returns the indexes
// due and when to look again.
func dueSchedules(list []config.DrillSchedule, next map[string]time.Time, now time.Time) (due []int, wake time.Time) {
	seen := map[string]bool{}
	for i, s := range list {
		c, err := cron.Parse(s.Cron)
		if err != nil {
			continue // the loader rejected it already; a schedule added in code is skipped
		}
		k := scheduleKey(i, s)
		seen[k] = true
		t, ok := next[k]
		if !ok {
			t = c.Next(now)
			next[k] = t
		}
		if !t.IsZero() && !t.After(now) {
			due = append(due, i)
			t = c.Next(now)
			next[k] = t
		}
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	for k := range next {
		if !seen[k] {
			delete(next, k)
		}
	}
	return due, wake
}

// scheduledRequest is the drill a schedule entry starts: a fleet drill's
// host (host-kill, host-partition) or etcd member comes from the entry; the
// host's name is checked when the drill runs (the injector's Plan refuses a
// host the fleet does not have, audited as drill.refused).
func scheduledRequest(s config.DrillSchedule) Request {
	return Request{Scenario: s.Scenario, Service: s.Service, LoadRPS: s.LoadRPS, Host: s.Host, Member: s.Member}
}

// schedule starts scheduled drills until ctx ends. It looks at the config
// at least once a minute, so reloads take effect.
func (m *Manager) schedule(ctx context.Context) {
	next := map[string]time.Time{}
	for {
		now := m.deps.Clock.Now()
		var list []config.DrillSchedule
		if cfg := m.deps.Config(); cfg != nil && cfg.Drills != nil {
			list = cfg.Drills.Schedule
		}
		due, wake := dueSchedules(list, next, now)
		for _, i := range due {
			s := list[i]
			actor := fmt.Sprintf("schedule:%d", i)
			_, err := m.Start(scheduledRequest(s), actor)
			if err != nil && !errors.Is(err, ErrRefused) { // refusals are recorded by Start
				m.deps.Record(ctx, medic.Event{Time: now, Kind: "drill.skipped", Target: s.Service, Actor: actor,
					Reason: fmt.Sprintf("scheduled drill %s of %s skipped: %v", s.Scenario, s.Service, err)})
			}
		}
		d := time.Minute
		if !wake.IsZero() {
			d = min(d, max(wake.Sub(now), 0))
		}
		t := m.deps.Clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}
