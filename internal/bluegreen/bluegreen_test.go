package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// fake is the supervisor's groups and rollout and the proxy's weights, as
// a log of calls; status says what the green group shows.
type fake struct {
	mu      sync.Mutex
	log     []string
	status  supervise.GroupStatus
	spec    *config.Service
	weights string
	fail    string // a rollout to this VERSION fails
}

func (f *fake) add(s string) { f.mu.Lock(); f.log = append(f.log, s); f.mu.Unlock() }
func (f *fake) calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, "; ")
}
func (f *fake) StartGroup(_ context.Context, _, g string, spec *config.Service, n int) error {
	f.add(fmt.Sprintf("start %s %d", g, n))
	return nil
}
func (f *fake) GroupStatus(_, _ string) supervise.GroupStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}
func (f *fake) StopGroup(_ context.Context, _, g string) error { f.add("stop " + g); return nil }
func (f *fake) Spec(string) *config.Service                    { return f.spec }
func (f *fake) Deploy(_ context.Context, _ string, spec *config.Service, _, _ string, done func(error)) error {
	f.add("rollout " + spec.Env["VERSION"])
	f.mu.Lock()
	f.spec = spec
	fail := f.fail != "" && f.fail == spec.Env["VERSION"]
	f.mu.Unlock()
	if fail {
		done(fmt.Errorf("instance web/1 never became ready"))
		return nil
	}
	done(nil)
	return nil
}
func (f *fake) SetWeights(_ string, w proxy.Weights) error {
	var parts []string
	for _, g := range w.Groups {
		parts = append(parts, fmt.Sprintf("%s=%d", g.Group, g.Weight))
	}
	f.mu.Lock()
	f.weights = strings.Join(parts, ",")
	f.mu.Unlock()
	f.add("weights " + strings.Join(parts, ","))
	return nil
}
func (f *fake) ClearWeights(string) error { f.add("clear"); return nil }

func svc(version string, keep time.Duration) *config.Service {
	return &config.Service{Command: []string{"./web"}, Instances: 3, Env: map[string]string{"VERSION": version},
		Deploy: &config.Deploy{Strategy: config.StrategyBlueGreen, KeepPrevious: config.Duration(keep),
			ReadyTimeout: config.Duration(300 * time.Millisecond), MaxRestarts: 2}}
}

func newRunner(t *testing.T, f *fake) (*Runner, *[]medic.Event) {
	var mu sync.Mutex
	var evs []medic.Event
	r := &Runner{Groups: f, Rollout: f, Traffic: f, Clock: clock.Or(nil), Poll: 5 * time.Millisecond,
		Record: func(_ context.Context, ev medic.Event) { mu.Lock(); evs = append(evs, ev); mu.Unlock() }}
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	t.Cleanup(func() { cancel(); r.Wait() })
	return r, &evs
}

// TestGreenNeverReadyStopsGreen: readiness that never arrives, or a crash
// loop, stops green; blue never lost its traffic; done says why.
func TestGreenNeverReadyStopsGreen(t *testing.T) {
	for _, c := range []struct {
		name   string
		status supervise.GroupStatus
		want   string
	}{
		{"never ready", supervise.GroupStatus{Want: 3, Ready: 2}, "not ready within ready_timeout"},
		{"crash loop", supervise.GroupStatus{Want: 3, Ready: 1, Restarts: 3}, "crash-loops"},
	} {
		f := &fake{spec: svc("1", time.Minute), status: c.status}
		r, _ := newRunner(t, f)
		var got error
		err := r.Deploy(context.Background(), "web", svc("2", time.Minute), "api:ops", "deploy v2", func(err error) { got = err })
		if err != nil || got == nil || !strings.Contains(got.Error(), c.want) {
			t.Errorf("%s: Deploy %v, done %v; want done to say %q", c.name, err, got, c.want)
		}
		if want := "weights stable=100,green=0; start green 3; weights stable=100; stop green; clear"; f.calls() != want {
			t.Errorf("%s: calls %q, want %q", c.name, f.calls(), want)
		}
		if _, open := r.Window("web"); open {
			t.Errorf("%s: a window is open after a failed deploy", c.name)
		}
	}
}

// TestSwitchRollbackAndPromotion: green ready ⇒ one switch; a rollback to
// blue's spec within the window switches back and stops green; a deploy
// left alone promotes at the window's end (the service's own instances
// take green's spec while stable has weight 0, then green stops).
func TestSwitchRollbackAndPromotion(t *testing.T) {
	f := &fake{spec: svc("1", 0), status: supervise.GroupStatus{Want: 3, Ready: 3}}
	r, _ := newRunner(t, f)
	if err := r.Deploy(context.Background(), "web", svc("2", time.Minute), "api:ops", "deploy v2", nil); err != nil {
		t.Fatal(err)
	}
	if got := r.Spec("web").Env["VERSION"]; got != "2" {
		t.Errorf("the served spec after the switch is VERSION %s, want 2", got)
	}
	if err := r.Deploy(context.Background(), "web", svc("3", time.Minute), "api:ops", "deploy v3", nil); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("a deploy during the window: %v, want ErrWindowOpen", err)
	}
	blue := svc("1", 0)
	blue.Version = "r1" // a rollback carries its version label
	if err := r.Deploy(context.Background(), "web", blue, "api:ops", "rollback to r1", nil); err != nil {
		t.Fatal(err)
	}
	if want := "weights stable=100,green=0; start green 3; weights stable=0,green=100; weights stable=100,green=0; stop green; clear"; f.calls() != want {
		t.Errorf("calls %q, want %q", f.calls(), want)
	}
	if got := r.Spec("web").Env["VERSION"]; got != "1" {
		t.Errorf("the served spec after the rollback is VERSION %s, want 1", got)
	}

	f.log = nil
	if err := r.Deploy(context.Background(), "web", svc("3", 50*time.Millisecond), "api:ops", "deploy v3", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(f.calls(), "stop green") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if want := "weights stable=100,green=0; start green 3; weights stable=0,green=100; rollout 3; clear; stop green"; f.calls() != want {
		t.Errorf("promotion calls %q, want %q", f.calls(), want)
	}
}

// TestReloadSupersedesWindow: a reload that changes the service during its
// window: the service's own instances (blue, weight 0) take the file's
// spec while green keeps every request; only then does traffic move to
// them, and only then does green stop. Every step is audited; the window
// is closed (a deploy goes through at once). If the instances do not take
// the file's spec, green keeps serving and they take green's release.
func TestReloadSupersedesWindow(t *testing.T) {
	for _, c := range []struct {
		name, fail, want, wantErr, wantSpec string
	}{
		{"taken", "", "weights stable=100,green=0; start green 3; weights stable=0,green=100; rollout 4; weights stable=100,green=0; stop green; clear", "", "4"},
		{"refused", "4", "weights stable=100,green=0; start green 3; weights stable=0,green=100; rollout 4; rollout 2; clear; stop green", "never became ready", "2"},
	} {
		f := &fake{spec: svc("1", 0), status: supervise.GroupStatus{Want: 3, Ready: 3}, fail: c.fail}
		r, evs := newRunner(t, f)
		if err := r.Supersede("web", svc("4", 0), "reload:root", "reload", func(error) {}); !errors.Is(err, ErrNoWindow) {
			t.Fatalf("%s: Supersede without a window: %v, want ErrNoWindow", c.name, err)
		}
		if err := r.Deploy(context.Background(), "web", svc("2", time.Hour), "api:ops", "deploy v2", nil); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		if err := r.Supersede("web", svc("4", 0), "reload:root", "reload", func(err error) { done <- err }); err != nil {
			t.Fatalf("%s: Supersede in the window: %v", c.name, err)
		}
		select {
		case err := <-done:
			if (c.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: done %v, want %q", c.name, err, c.wantErr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the reload's rollout never ended; calls %q", c.name, f.calls())
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.HasSuffix(f.calls(), c.want[len(c.want)-10:]) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if f.calls() != c.want {
			t.Errorf("%s: calls %q, want %q", c.name, f.calls(), c.want)
		}
		if got := r.Spec("web").Env["VERSION"]; got != c.wantSpec {
			t.Errorf("%s: the served spec is VERSION %s, want %s", c.name, got, c.wantSpec)
		}
		if _, open := r.Window("web"); open {
			t.Errorf("%s: the window is still open", c.name)
		}
		r.mu.Lock()
		var kinds []string
		for _, ev := range *evs {
			kinds = append(kinds, string(ev.Kind)+": "+ev.Reason)
		}
		r.mu.Unlock()
		all := strings.Join(kinds, "\n")
		if n := strings.Count(all, string(EventSuperseded)); n != 2 {
			t.Errorf("%s: %d %s records, want 2 (the start and blue's fate):\n%s", c.name, n, EventSuperseded, all)
		}
		if c.fail == "" && !strings.Contains(all, "green drained and stopped") || c.fail != "" && !strings.Contains(all, "green kept every request") {
			t.Errorf("%s: the audit does not state green's and blue's fate:\n%s", c.name, all)
		}
		deadline = time.Now().Add(5 * time.Second)
		for {
			r.mu.Lock()
			gone := r.runs["web"] == nil
			r.mu.Unlock()
			if gone || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := r.Deploy(context.Background(), "web", svc("5", time.Hour), "api:ops", "deploy v5", nil); err != nil {
			t.Errorf("%s: a deploy after the reload: %v", c.name, err)
		}
	}
}
