package remedy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
	"github.com/medic-dev/medic/internal/supervise"
)

// fakeSup is a supervisor of in-memory services: n instances each, all
// ready unless set otherwise. Every call is logged; funcs override results.
type fakeSup struct {
	mu       sync.Mutex
	services map[string]*supervise.ServiceStatus
	calls    []string
	onCall   func(call string) error // nil: succeed
	block    chan struct{}           // when set, actions wait on it (or ctx)
}

func newFakeSup(spec map[string][2]int) *fakeSup { // name → {instances, min_available}
	f := &fakeSup{services: map[string]*supervise.ServiceStatus{}}
	for name, s := range spec {
		f.set(name, s[0], s[0], s[1])
	}
	return f
}

// set makes service name have n instances of which ready are ready.
func (f *fakeSup) set(name string, n, ready, minAvail int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &supervise.ServiceStatus{Name: name, Desired: n, Ready: ready, MinAvailable: minAvail}
	for i := range n {
		st.Instances = append(st.Instances, supervise.InstanceStatus{ID: fmt.Sprintf("%s/%d", name, i), Service: name,
			Index: i, Ready: i < ready, State: medic.StateRunning})
	}
	f.services[name] = st
}

func (f *fakeSup) Status() []supervise.ServiceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []supervise.ServiceStatus
	for _, s := range f.services {
		c := *s
		c.Instances = append([]supervise.InstanceStatus(nil), s.Instances...)
		out = append(out, c)
	}
	return out
}

func (f *fakeSup) call(ctx context.Context, s string) error {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	on, block := f.onCall, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if on != nil {
		return on(s)
	}
	return nil
}

func (f *fakeSup) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSup) RestartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call(ctx, "restart "+id.String())
}
func (f *fakeSup) StopInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call(ctx, "stop "+id.String())
}
func (f *fakeSup) StartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	return f.call(ctx, "start "+id.String())
}
func (f *fakeSup) RollingRestart(ctx context.Context, svc, actor string, _ time.Duration) error {
	return f.call(ctx, "rolling "+svc)
}
func (f *fakeSup) Scale(ctx context.Context, svc string, n int, actor string) error {
	if err := f.call(ctx, fmt.Sprintf("scale %s %d", svc, n)); err != nil {
		return err
	}
	f.mu.Lock()
	min := f.services[svc].MinAvailable
	f.mu.Unlock()
	f.set(svc, n, n, min)
	return nil
}
func (f *fakeSup) Rollback(ctx context.Context, svc, actor string) error {
	return f.call(ctx, "rollback "+svc)
}

// checker answers Holds from a map: condition → resolved (default: firing).
type checker struct {
	mu       sync.Mutex
	resolved map[string]bool
}

func (c *checker) Holds(name string, _ map[string]string, _ time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resolved[name], nil
}

func (c *checker) set(name string, resolved bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resolved == nil {
		c.resolved = map[string]bool{}
	}
	c.resolved[name] = resolved
}

// recorder keeps every event.
type recorder struct {
	mu  sync.Mutex
	evs []medic.Event
}

func (r *recorder) Record(_ context.Context, ev medic.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) all() []medic.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]medic.Event(nil), r.evs...)
}

// notes keeps every notification.
type notes struct {
	mu   sync.Mutex
	sent []sentNote
}

type sentNote struct {
	receiver string
	n        notify.Notification
}

func (n *notes) Send(receiver string, note notify.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, sentNote{receiver, note})
	return nil
}

func (n *notes) find(receiver string, kind notify.Kind, contains string) (notify.Notification, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.sent {
		if s.receiver == receiver && s.n.Kind == kind && strings.Contains(s.n.Summary+s.n.Text, contains) {
			return s.n, true
		}
	}
	return notify.Notification{}, false
}

type harness struct {
	t     *testing.T
	clk   *clocktest.Fake
	sup   *fakeSup
	chk   *checker
	rec   *recorder
	notes *notes
	eng   *remedy.Engine
	stop  func()
}

// setDefaults applies the remedy sections' defaults as the loader does.
func setDefaults(cfg *config.Config) *config.Config {
	cfg.Automation.SetDefaults()
	for _, rb := range cfg.Runbooks {
		rb.SetDefaults()
	}
	for _, s := range cfg.Services {
		if s.Instances == 0 {
			s.Instances = 1
		}
		if s.Remedy != nil {
			s.Remedy.SetDefaults()
		}
	}
	return cfg
}

// start runs an engine over cfg with fakes; opt may adjust the options.
func start(t *testing.T, cfg *config.Config, sup *fakeSup, opt func(*remedy.Options)) *harness {
	t.Helper()
	cfg = setDefaults(cfg)
	if cfg.Automation.Escalate.Receiver == "" {
		cfg.Automation.Escalate.Receiver = "oncall"
	}
	if cfg.Automation.Notify.Receiver == "" {
		cfg.Automation.Notify.Receiver = "chat"
	}
	h := &harness{t: t, clk: clocktest.New(t0), sup: sup, chk: &checker{}, rec: &recorder{}, notes: &notes{}}
	o := remedy.Options{Config: cfg, Supervisor: sup, Checker: h.chk, Recorder: h.rec, Notifier: h.notes, Clock: h.clk}
	if opt != nil {
		opt(&o)
	}
	eng, err := remedy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Serve(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) trigger(state, cond string, labels ...string) remedy.Trigger {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	t := remedy.Trigger{Condition: cond, Labels: l, State: state, Value: 1, Confidence: 1, At: h.clk.Now(), Reason: "test"}
	if !h.eng.Submit(t) {
		h.t.Fatal("Submit: queue full")
	}
	return t
}

func (h *harness) fire(cond string, labels ...string) remedy.Trigger {
	return h.trigger("firing", cond, labels...)
}

func (h *harness) resolve(cond string, labels ...string) remedy.Trigger {
	return h.trigger("resolved", cond, labels...)
}

// match reports whether ev has kind and every field in kv.
func match(ev medic.Event, kind medic.EventKind, kv ...string) bool {
	if ev.Kind != kind {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if ev.Fields[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// wait polls (advancing the fake clock by tick each round when tick > 0)
// until an event with kind and fields kv is recorded, and returns it.
func (h *harness) waitTick(tick time.Duration, kind medic.EventKind, kv ...string) medic.Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range h.rec.all() {
			if match(ev, kind, kv...) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			h.dump()
			h.t.Fatalf("no %s event with %v", kind, kv)
		}
		if tick > 0 {
			h.clk.Advance(tick)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) wait(kind medic.EventKind, kv ...string) medic.Event {
	h.t.Helper()
	return h.waitTick(0, kind, kv...)
}

// count returns how many events with kind and fields kv were recorded.
func (h *harness) count(kind medic.EventKind, kv ...string) int {
	n := 0
	for _, ev := range h.rec.all() {
		if match(ev, kind, kv...) {
			n++
		}
	}
	return n
}

// settle lets the engine drain its queue: it waits until a sentinel
// trigger for an unknown condition has been handled.
func (h *harness) settle() {
	h.t.Helper()
	name := fmt.Sprintf("settle_%d", time.Now().UnixNano())
	h.fire(name)
	h.wait(remedy.EventDecision, "condition", name)
}

func (h *harness) dump() {
	for _, ev := range h.rec.all() {
		h.t.Logf("%s %s %s %s %v", ev.Kind, ev.Actor, ev.Target, ev.Reason, ev.Fields)
	}
}

// step builds a runbook step.
func step(actionName, target string) config.RunbookStep {
	return config.RunbookStep{Action: actionName, Target: target}
}

// waitCount polls until n events with kind and fields kv are recorded.
func (h *harness) waitCount(n int, kind medic.EventKind, kv ...string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.count(kind, kv...) < n {
		if time.Now().After(deadline) {
			h.dump()
			h.t.Fatalf("%d %s events with %v, want %d", h.count(kind, kv...), kind, kv, n)
		}
		time.Sleep(time.Millisecond)
	}
}
