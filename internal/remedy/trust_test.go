package remedy_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/remedy"
)

func TestTrustLadder(t *testing.T) {
	r := remedy.NewRecord("rb", remedy.LevelPropose)
	var ch remedy.Change
	for i := range 3 {
		r, ch = r.Outcome(true, time.Duration(i+1)*time.Second, t0, 3, remedy.LevelSilent)
	}
	if r.Level != remedy.LevelAct || ch.From != remedy.LevelPropose || ch.To != remedy.LevelAct || r.Consecutive != 0 {
		t.Fatalf("after 3 successes: %+v %+v; want promoted to act", r, ch)
	}
	for range 3 {
		r, ch = r.Outcome(true, 10*time.Second, t0, 3, remedy.LevelAct)
	}
	if r.Level != remedy.LevelAct || ch.To != remedy.LevelUnknown {
		t.Fatalf("max_trust act: promoted to %v", r.Level)
	}
	r, ch = r.Outcome(false, 0, t0, 3, remedy.LevelSilent)
	if r.Level != remedy.LevelPropose || ch.To != remedy.LevelPropose || r.Consecutive != 0 {
		t.Fatalf("failure: %+v %+v; want demoted to propose", r, ch)
	}
	if r.Runs != 7 || r.Successes != 6 || r.Failures != 1 {
		t.Fatalf("counts %+v", r)
	}
	if got := r.MedianTTR(); got != 6500*time.Millisecond {
		t.Fatalf("median TTR = %v, want 6.5s (1,2,3,10,10,10)", got)
	}
	obs := remedy.NewRecord("o", remedy.LevelObserve)
	for range 10 {
		obs, _ = obs.Outcome(true, time.Second, t0, 3, remedy.LevelSilent)
	}
	if obs.Level != remedy.LevelObserve {
		t.Fatalf("observe promoted itself to %v", obs.Level)
	}
}
