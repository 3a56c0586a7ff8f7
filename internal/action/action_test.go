package action_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/supervise"
)

// fakeSupervisor is a Supervisor made of funcs; nil funcs succeed.
type fakeSupervisor struct {
	status   []supervise.ServiceStatus
	mu       sync.Mutex
	calls    []string
	restart  func(medic.InstanceID) error
	scale    func(string, int) error
	rollback func(string) error
}

func (f *fakeSupervisor) log(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeSupervisor) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSupervisor) Status() []supervise.ServiceStatus { return f.status }
func (f *fakeSupervisor) RestartInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	f.log("restart " + id.String() + " by " + actor)
	if f.restart != nil {
		return f.restart(id)
	}
	return nil
}
func (f *fakeSupervisor) StopInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	f.log("stop " + id.String())
	return nil
}
func (f *fakeSupervisor) StartInstance(_ context.Context, id medic.InstanceID, actor, reason string) error {
	f.log("start " + id.String())
	return nil
}
func (f *fakeSupervisor) RollingRestart(_ context.Context, svc, actor string, _ time.Duration) error {
	f.log("rolling " + svc)
	return nil
}
func (f *fakeSupervisor) Scale(_ context.Context, svc string, n int, actor string) error {
	f.log(fmt.Sprintf("scale %s %d", svc, n))
	if f.scale != nil {
		return f.scale(svc, n)
	}
	return nil
}
func (f *fakeSupervisor) Rollback(_ context.Context, svc, actor string) error {
	f.log("rollback " + svc)
	if f.rollback != nil {
		return f.rollback(svc)
	}
	return nil
}

func service(name string, n int) supervise.ServiceStatus {
	s := supervise.ServiceStatus{Name: name, Desired: n, Ready: n}
	for i := range n {
		s.Instances = append(s.Instances, supervise.InstanceStatus{ID: fmt.Sprintf("%s/%d", name, i), Service: name, Index: i, Ready: true})
	}
	return s
}

func TestInstanceTargets(t *testing.T) {
	sup := &fakeSupervisor{status: []supervise.ServiceStatus{service("web", 2), service("big", 5)}}
	acts := action.Builtins(action.Deps{Supervisor: sup, MaxTargets: 3})
	tests := []struct {
		target string
		want   error
		calls  int
	}{
		{"web/1", nil, 1},
		{"web", nil, 2},
		{"", action.ErrNoTargets, 0},         // a missing label must never mean "everything"
		{"web/7", action.ErrNoTargets, 0},    // no such instance
		{"nope", action.ErrNoTargets, 0},     // no such service
		{"big", action.ErrTooManyTargets, 0}, // 5 > max_targets 3
	}
	for _, tt := range tests {
		before := len(sup.Calls())
		out, err := acts["restart_instance"].Do(context.Background(), action.Input{Target: tt.target, Actor: "runbook:t"})
		if !errors.Is(err, tt.want) {
			t.Errorf("restart %q: err = %v, want %v", tt.target, err, tt.want)
		}
		if got := len(sup.Calls()) - before; got != tt.calls {
			t.Errorf("restart %q: %d supervisor calls, want %d (out %+v)", tt.target, got, tt.calls, out)
		}
	}
	if _, err := acts["rolling_restart"].Do(context.Background(), action.Input{Target: "web/0"}); err == nil {
		t.Error("rolling_restart of an instance id: want an error (it takes a service)")
	}
	if _, err := acts["drain"].Do(context.Background(), action.Input{Target: "web/0"}); !errors.Is(err, action.ErrUnsupported) {
		t.Errorf("drain without a proxy: %v, want ErrUnsupported", err)
	}
}

func TestScaleClamped(t *testing.T) {
	sup := &fakeSupervisor{status: []supervise.ServiceStatus{service("web", 3)}}
	bounds := func(string) (int, int, bool) { return 2, 4, true }
	sc := action.Builtins(action.Deps{Supervisor: sup, Bounds: bounds})["scale"]
	tests := []struct {
		by, to  int
		changed bool
		call    string
	}{
		{by: 1, changed: true, call: "scale web 4"},
		{by: 5, changed: true, call: "scale web 4"}, // step beyond max: clamped
		{to: 10, changed: true, call: "scale web 4"},
		{by: -1, changed: true, call: "scale web 2"},
		{by: -5, changed: true, call: "scale web 2"}, // clamped to min
		{to: 3, changed: false},                      // already there
	}
	for _, tt := range tests {
		before := len(sup.Calls())
		out, err := sc.Do(context.Background(), action.Input{Target: "web", By: tt.by, To: tt.to})
		if err != nil {
			t.Fatalf("by %d to %d: %v", tt.by, tt.to, err)
		}
		calls := sup.Calls()[before:]
		if out.Changed != tt.changed || (tt.call == "" && len(calls) != 0) || (tt.call != "" && (len(calls) != 1 || calls[0] != tt.call)) {
			t.Errorf("by %d to %d: changed %v calls %v (%s), want %v %q", tt.by, tt.to, out.Changed, calls, out.Summary, tt.changed, tt.call)
		}
	}
	at4 := &fakeSupervisor{status: []supervise.ServiceStatus{service("web", 4)}}
	out, err := action.Builtins(action.Deps{Supervisor: at4, Bounds: bounds})["scale"].Do(context.Background(), action.Input{Target: "web", By: 1})
	if err != nil || out.Changed || len(at4.Calls()) != 0 {
		t.Errorf("scale out at max: changed %v calls %v err %v; want no change", out.Changed, at4.Calls(), err)
	}
}

func TestDedup(t *testing.T) {
	var n atomic.Int32
	release := make(chan struct{})
	slow := action.Func(func(ctx context.Context, in action.Input) (action.Output, error) {
		n.Add(1)
		<-release
		return action.Output{Summary: "done " + in.Key, Changed: true}, nil
	})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d := action.NewDedup(time.Hour, clock)
	a := d.Wrap("restart_instance", slow)

	// Two concurrent calls with one key: one action, both get its result.
	var wg sync.WaitGroup
	outs := make([]action.Output, 2)
	for i := range outs {
		wg.Go(func() { outs[i], _ = a.Do(context.Background(), action.Input{Key: "k"}) })
	}
	for n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n.Load() != 1 || outs[0].Summary != "done k" || outs[1].Summary != "done k" || outs[0].Replayed == outs[1].Replayed {
		t.Fatalf("concurrent: %d runs, outputs %+v; want one run and one replay", n.Load(), outs)
	}
	if out, _ := a.Do(context.Background(), action.Input{Key: "k"}); !out.Replayed || n.Load() != 1 {
		t.Fatalf("within the window: replayed %v, runs %d", out.Replayed, n.Load())
	}
	// Another action with the same key is not confused with this one.
	if out, _ := d.Wrap("stop", slow).Do(context.Background(), action.Input{Key: "k"}); out.Replayed || n.Load() != 2 {
		t.Fatalf("other action, same key: replayed %v runs %d", out.Replayed, n.Load())
	}
	_, _ = a.Do(context.Background(), action.Input{})
	if n.Load() != 3 {
		t.Fatal("an empty key must always run")
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	if out, _ := a.Do(context.Background(), action.Input{Key: "k"}); out.Replayed || n.Load() != 4 {
		t.Fatalf("after the window: replayed %v runs %d; want a new run", out.Replayed, n.Load())
	}
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	out, err := action.Exec{}.Do(context.Background(), action.Input{
		Command: []string{"sh", "-c", `echo "$GREETING from $(pwd) for $MEDIC_TARGET"; echo oops >&2`},
		Env:     map[string]string{"GREETING": "hello"}, Dir: dir, Target: "web/0", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from " + dir + " for web/0\noops\n"; out.Detail != want || out.Fields["exit_code"] != "0" {
		t.Errorf("output %q exit %s, want %q", out.Detail, out.Fields["exit_code"], want)
	}
	out, err = action.Exec{}.Do(context.Background(), action.Input{Command: []string{"sh", "-c", "exit 3"}})
	if err == nil || out.Fields["exit_code"] != "3" {
		t.Errorf("exit 3: err %v fields %v", err, out.Fields)
	}
	out, _ = action.Exec{}.Do(context.Background(), action.Input{Command: []string{"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a"}})
	if !strings.HasPrefix(out.Detail, "[captured the last 4096 of 10000 bytes]\n") || len(out.Detail) > action.MaxOutput+100 {
		t.Errorf("10000 bytes of output kept as %d bytes: %.60q", len(out.Detail), out.Detail)
	}
}

// At the timeout the whole process group dies, the background child of the
// script included, and Do returns only after the exit.
func TestExecKillsGroupAtTimeout(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	begin := time.Now()
	_, err := action.Exec{}.Do(context.Background(), action.Input{
		Command: []string{"sh", "-c", `sleep 60 & echo $! > ` + pidFile + `; wait`},
		Timeout: 300 * time.Millisecond})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if el := time.Since(begin); el > 5*time.Second {
		t.Fatalf("Do returned after %v", el)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("background child %d survived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie awaiting its reaper is dead).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(r.Method + " " + r.Header.Get("X-Medic-Incident")))
		case "/slow":
			<-r.Context().Done()
		default:
			http.Error(w, "nope", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	h := action.HTTP{}
	out, err := h.Do(context.Background(), action.Input{URL: srv.URL + "/ok", Method: "PUT", Incident: "inc-1"})
	if err != nil || out.Detail != "PUT inc-1" || out.Fields["status"] != "200" {
		t.Errorf("ok: %+v %v", out, err)
	}
	if _, err := h.Do(context.Background(), action.Input{URL: srv.URL + "/bad"}); err == nil {
		t.Error("500 with status 200-299: want an error")
	}
	if _, err := h.Do(context.Background(), action.Input{URL: srv.URL + "/bad", Status: "500"}); err != nil {
		t.Errorf("500 with status 500: %v", err)
	}
	begin := time.Now()
	if _, err := h.Do(context.Background(), action.Input{URL: srv.URL + "/slow", Timeout: 100 * time.Millisecond}); err == nil || time.Since(begin) > 5*time.Second {
		t.Errorf("slow: err %v after %v", err, time.Since(begin))
	}
}

func TestRollbackFailure(t *testing.T) {
	sup := &fakeSupervisor{status: []supervise.ServiceStatus{service("web", 1)},
		rollback: func(string) error { return errors.New("no previous version") }}
	out, err := action.Builtins(action.Deps{Supervisor: sup})["rollback"].Do(context.Background(), action.Input{Target: "web"})
	if err == nil || out.Changed {
		t.Errorf("rollback without a previous version: %+v %v", out, err)
	}
}
