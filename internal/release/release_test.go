package release_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/sqlite"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, dir string) *release.Store {
	t.Helper()
	db, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return release.NewStore(db.SQL())
}

func spec(cmd ...string) *config.Service {
	s := &config.Service{Command: cmd, Instances: 2, Port: 9100, Env: map[string]string{"A": "1"}}
	cfg := &config.Config{Services: map[string]*config.Service{"web": s}}
	cfg.SetDefaults()
	return cfg.Services["web"]
}

// fakeSup runs whatever it is told to, at once.
type fakeSup struct {
	mu    sync.Mutex
	specs map[string]*config.Service
	fail  error // the rollout's verdict
	calls []string
}

func (f *fakeSup) Spec(s string) *config.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.specs[s]
}

func (f *fakeSup) Deploy(_ context.Context, s string, spec *config.Service, actor, why string, done func(error)) error {
	f.mu.Lock()
	if f.specs[s] == nil {
		f.mu.Unlock()
		return errors.New("unknown service")
	}
	f.specs[s] = spec
	f.calls = append(f.calls, why+" by "+actor)
	err := f.fail
	f.mu.Unlock()
	done(err)
	return err
}

// fakeTraffic counts 100 requests and, with errs set, errors per rollout.
type fakeTraffic struct {
	mu        sync.Mutex
	req, errs uint64
	step      uint64
}

func (f *fakeTraffic) Counts(string) (uint64, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.req += 100
	f.errs += f.step
	return f.req, f.errs, true
}

func TestStoreKeepsHistoryNewestFirstAndTrims(t *testing.T) {
	st := openStore(t, t.TempDir())
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		r, err := st.Add(ctx, release.Release{Service: "web", Version: "v" + string(rune('0'+i)), Source: release.SourceDeploy,
			Spec: spec("./web", "--v"), Actor: "api:ops", Created: t0.Add(time.Duration(i) * time.Minute)}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			if err := st.Finish(ctx, r.Seq, release.Finished{Outcome: release.Live, Ended: t0.Add(5*time.Minute + 1500*time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	list, err := st.List(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Version != "v5" || list[2].Version != "v3" {
		t.Fatalf("want v5, v4, v3 kept, got %+v", list)
	}
	if list[0].Outcome != release.Live || list[0].DurationSeconds == nil || *list[0].DurationSeconds != 1.5 {
		t.Fatalf("v5: %+v", list[0])
	}
	// A release still rolling out when the next one starts is superseded.
	if list[1].Outcome != release.Superseded {
		t.Fatalf("v4 should be superseded by v5, is %s", list[1].Outcome)
	}
	if list[0].Spec == nil || strings.Join(list[0].Spec.Command, " ") != "./web --v" || list[0].Spec.Env["A"] != "1" {
		t.Fatalf("spec not kept: %+v", list[0].Spec)
	}
}

func manager(t *testing.T, dir string, sup *fakeSup) *release.Manager {
	return &release.Manager{Store: openStore(t, dir), Supervisor: sup, Traffic: &fakeTraffic{}, Clock: clocktest.New(t0)}
}

func TestDeployRollbackAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := &config.Config{Services: map[string]*config.Service{"web": spec("./web", "--v1")}}
	sup := &fakeSup{specs: map[string]*config.Service{}}
	m := manager(t, dir, sup)
	run, err := m.Start(ctx, file, "medic")
	if err != nil {
		t.Fatal(err)
	}
	sup.specs["web"] = run.Services["web"]

	r2, err := m.Deploy(ctx, "web", release.Changes{Version: "v2", Set: map[string]string{"command": "./web --v2", "env.B": "2"}}, "api:ops")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Outcome != release.Live || r2.Requests == nil || *r2.Requests != 100 || *r2.ClientErrors != 0 {
		t.Fatalf("deploy v2: %+v", r2)
	}
	if got := sup.Spec("web"); strings.Join(got.Command, " ") != "./web --v2" || got.Env["B"] != "2" || got.Env["A"] != "1" {
		t.Fatalf("running %+v", got)
	}

	// medic restarts with the same config file: v2 keeps running.
	sup2 := &fakeSup{specs: map[string]*config.Service{}}
	m2 := manager(t, dir, sup2)
	run, err = m2.Start(ctx, file, "medic")
	if err != nil {
		t.Fatal(err)
	}
	if got := run.Services["web"]; strings.Join(got.Command, " ") != "./web --v2" {
		t.Fatalf("after a restart with the same file, want v2 running, got %v", got.Command)
	}
	sup2.specs["web"] = run.Services["web"]

	// The history outlived the restart: roll back to the last live one before.
	back, err := m2.Rollback(ctx, "web", "", "api:ops")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sup2.Spec("web").Command, " ") != "./web --v1" || back.Source != release.SourceRollback || back.Version != "r1" {
		t.Fatalf("rollback: %+v running %v", back, sup2.Spec("web").Command)
	}
	// --to names any kept version.
	if _, err := m2.Rollback(ctx, "web", "v2", "api:ops"); err != nil || strings.Join(sup2.Spec("web").Command, " ") != "./web --v2" {
		t.Fatalf("rollback --to v2: %v, running %v", err, sup2.Spec("web").Command)
	}
	if _, err := m2.Rollback(ctx, "web", "v9", "api:ops"); !errors.Is(err, release.ErrNotFound) {
		t.Fatalf("rollback --to v9: %v", err)
	}

	// The file changes: its spec wins at the next start and is recorded.
	changed := &config.Config{Services: map[string]*config.Service{"web": spec("./web", "--v3")}}
	m3 := manager(t, dir, &fakeSup{specs: map[string]*config.Service{}})
	run, err = m3.Start(ctx, changed, "medic")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(run.Services["web"].Command, " ") != "./web --v3" {
		t.Fatalf("a changed file must win, got %v", run.Services["web"].Command)
	}
	list, _ := m3.List(ctx, "web")
	if list[0].Source != release.SourceConfig || list[0].Reason != "the config file at start" {
		t.Fatalf("newest %+v", list[0])
	}
}

func TestDeployRefusals(t *testing.T) {
	ctx := context.Background()
	sup := &fakeSup{specs: map[string]*config.Service{"web": spec("./web")}}
	m := manager(t, t.TempDir(), sup)
	m.Validate = func(_ string, s *config.Service) error {
		if s.Instances > 5 {
			return errors.New("services.web.instances: at most 5 here")
		}
		return nil
	}
	for _, tc := range []struct {
		set  map[string]string
		says string
	}{
		{map[string]string{"image": "x"}, "set.image: unknown key"},
		{map[string]string{"command": "  "}, "set.command: empty"},
		{map[string]string{"command": `["a", 1]`}, "set.command: want a JSON array"},
		{map[string]string{"instances": "0"}, "set.instances"},
		{map[string]string{"env.A=B": "x"}, "not an environment variable name"},
		{map[string]string{"instances": "9"}, "at most 5 here"},
	} {
		_, err := m.Deploy(ctx, "web", release.Changes{Set: tc.set}, "api:ops")
		if !errors.Is(err, release.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("set %v: %v, want ErrInvalid saying %q", tc.set, err, tc.says)
		}
	}
	if len(sup.calls) != 0 {
		t.Fatalf("a refused deploy reached the supervisor: %v", sup.calls)
	}
	if _, err := m.Deploy(ctx, "nope", release.Changes{Version: "v2"}, "api:ops"); !errors.Is(err, release.ErrNotFound) {
		t.Fatalf("unknown service: %v", err)
	}
	if _, err := m.Rollback(ctx, "web", "", "api:ops"); !errors.Is(err, release.ErrNothingToRollBack) {
		t.Fatalf("nothing kept: %v", err)
	}
	// A failed rollout is recorded as failed, with the client errors seen.
	sup.fail = errors.New("instance web/0 never became ready")
	m.Traffic = &fakeTraffic{step: 3}
	r, err := m.Deploy(ctx, "web", release.Changes{Version: "bad", Set: map[string]string{"command": "./broken"}}, "api:ops")
	if err == nil || r.Outcome != release.Failed || r.ClientErrors == nil || *r.ClientErrors != 3 || !strings.Contains(r.Detail, "never became ready") {
		t.Fatalf("failed rollout: %v %+v", err, r)
	}
	// A failed release is never a rollback target.
	sup.fail = nil
	if _, err := m.Rollback(ctx, "web", "", "api:ops"); !errors.Is(err, release.ErrNothingToRollBack) {
		t.Fatalf("rollback past a failed release only: %v", err)
	}
}
