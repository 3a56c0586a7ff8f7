package egress

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestBreakerTimeline drives the configured failsafe-go breaker through
// closed → open → half-open → open → half-open → closed on synctest's fake
// clock: failures outside the window do not add up, the breaker opens on the
// configured count (not on the first failure, failsafe-go's default), stays
// open for open_for, and needs every trial to succeed.
func TestBreakerTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := config.DependencyBreaker{Failures: 3, Window: config.Duration(10 * time.Second),
			OpenFor: config.Duration(30 * time.Second), HalfOpenTrials: 2}
		var got []string
		cb := newBreaker[any](c, func(_ any, err error) bool { return err != nil }, func(from, to State) {
			got = append(got, from.String()+">"+to.String())
		})
		fail := errors.New("down")
		t0 := time.Now()
		steps := []struct {
			at     time.Duration
			op     string // fail, ok, permit
			permit bool   // for permit: the want
			want   State
		}{
			{0, "fail", false, Closed},
			{1 * time.Second, "fail", false, Closed},
			{12 * time.Second, "fail", false, Closed},                        // the first two left the 10s window
			{13 * time.Second, "fail", false, Closed},                        // 2 within the window
			{14 * time.Second, "fail", false, Open},                          // 3 within 10s: open
			{15 * time.Second, "permit", false, Open},                        // fail fast
			{43 * time.Second, "permit", false, Open},                        // 29s after opening: still open
			{44*time.Second + time.Millisecond, "permit", true, HalfOpen},    // open_for passed: trial 1
			{44*time.Second + 2*time.Millisecond, "permit", true, HalfOpen},  // trial 2
			{44*time.Second + 3*time.Millisecond, "permit", false, HalfOpen}, // no third trial
			{45 * time.Second, "ok", false, HalfOpen},
			{45*time.Second + time.Millisecond, "fail", false, Open}, // a trial failed: open again
			{75*time.Second + 2*time.Millisecond, "permit", true, HalfOpen},
			{75*time.Second + 3*time.Millisecond, "permit", true, HalfOpen},
			{76 * time.Second, "ok", false, HalfOpen},
			{76*time.Second + time.Millisecond, "ok", false, Closed}, // both trials succeeded
		}
		for _, s := range steps {
			time.Sleep(time.Until(t0.Add(s.at)))
			switch s.op {
			case "fail":
				cb.RecordError(fail)
			case "ok":
				cb.RecordSuccess()
			case "permit":
				if p := cb.TryAcquirePermit(); p != s.permit {
					t.Fatalf("+%v: permit %v, want %v", s.at, p, s.permit)
				}
			}
			if st := stateOf(cb.State()); st != s.want {
				t.Fatalf("+%v after %s: state %v, want %v (transitions %v)", s.at, s.op, st, s.want, got)
			}
		}
		want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
		if len(got) != len(want) {
			t.Fatalf("transitions %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("transitions %v, want %v", got, want)
			}
		}
	})
}
