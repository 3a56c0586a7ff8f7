package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
)

// Manager runs drills one at a time, keeps their results, runs the
// scheduled ones, and aborts the running one when it stops.
type Manager struct {
	deps  Deps
	store Store

	mu     sync.Mutex
	active *run
	nextID int64
	closed bool
	wg     sync.WaitGroup
	root   context.Context
	stop   context.CancelFunc
}

// NewManager returns a manager using d and st (nil: a MemStore).
func NewManager(d Deps, st Store) (*Manager, error) {
	if d.Sup == nil || d.Events == nil || d.Record == nil || d.Config == nil {
		return nil, errors.New("drill: manager needs Sup, Events, Record and Config")
	}
	d.Clock = clock.Or(d.Clock)
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Catalog == nil {
		d.Catalog = NewCatalog()
	}
	if d.Injectors == nil {
		d.Injectors = DefaultInjectors()
	}
	if d.PollEvery <= 0 {
		d.PollEvery = 100 * time.Millisecond
	}
	if st == nil {
		st = NewMemStore()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last, err := st.MaxID(ctx)
	if err != nil {
		return nil, fmt.Errorf("drill: read the last drill id: %w", err)
	}
	root, stop := context.WithCancel(context.Background())
	return &Manager{deps: d, store: st, nextID: last, root: root, stop: stop}, nil
}

// Catalog returns the manager's scenario catalog (components add theirs).
func (m *Manager) Catalog() *Catalog { return m.deps.Catalog }

// Injectors returns the manager's injector registry (components add theirs).
func (m *Manager) Injectors() *Injectors { return m.deps.Injectors }

// Start checks req and starts the drill; it returns at once with the drill
// in state running. It returns ErrBusy while another drill runs, ErrClosed
// once the manager stopped, ErrUnknownScenario, or ErrRefused with the
// safety reason (recorded as drill.refused).
func (m *Manager) Start(req Request, actor string) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{}, ErrClosed
	}
	if m.active != nil {
		return Result{}, fmt.Errorf("%w (drill %d)", ErrBusy, m.active.snapshot().ID)
	}
	p, err := prepare(&m.deps, req, actor)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			m.deps.Record(m.root, medic.Event{Time: m.deps.Clock.Now(), Kind: "drill.refused", Target: req.Service, Actor: actor,
				Reason: err.Error(), Fields: map[string]string{"scenario": req.Scenario}})
		}
		return Result{}, err
	}
	m.nextID++
	r := &run{done: make(chan struct{}), res: Result{
		ID: m.nextID, Scenario: p.sc.Name, FailureMode: p.sc.FailureMode, Service: p.subject.Service, Subject: p.subject,
		Actor: actor, State: StateRunning, Phase: PhaseWarmup, Load: p.load, Definition: p.sc,
		Marks: Marks{Start: m.deps.Clock.Now()},
	}}
	r.res.Summary = fmt.Sprintf("%s of %s: running", p.sc.Name, p.subject.Service)
	ctx, cancel := context.WithCancelCause(m.root)
	r.cancel = cancel
	m.active = r
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel(nil)
		res := m.execute(ctx, r, p)
		// The verdict shows at the moment the manager is free again: a
		// caller that saw it may start the next drill at once.
		m.mu.Lock()
		r.set(func(rr *Result) { *rr = res })
		m.active = nil
		m.mu.Unlock()
		close(r.done)
	}()
	return r.snapshot(), nil
}

// Abort stops the running drill: it stops injecting, restores what it
// changed and fails with "aborted by actor". It waits for that (or ctx) and
// returns the drill; ErrNotFound when none runs.
func (m *Manager) Abort(ctx context.Context, actor string) (Result, error) {
	m.mu.Lock()
	r := m.active
	m.mu.Unlock()
	if r == nil {
		return Result{}, fmt.Errorf("no drill is running: %w", ErrNotFound)
	}
	res := r.snapshot()
	m.deps.Record(ctx, medic.Event{Time: m.deps.Clock.Now(), Kind: "drill.abort", Target: res.Service, Actor: actor,
		Reason: fmt.Sprintf("abort of drill %d (%s) requested", res.ID, res.Scenario)})
	r.cancel(fmt.Errorf("aborted by %s", actor))
	select {
	case <-r.done:
	case <-ctx.Done():
		return r.snapshot(), fmt.Errorf("abort drill %d: still restoring: %w", res.ID, ctx.Err())
	}
	return r.snapshot(), nil
}

// Get returns drill id, running or stored.
func (m *Manager) Get(ctx context.Context, id int64) (Result, error) {
	m.mu.Lock()
	r := m.active
	m.mu.Unlock()
	if r != nil {
		if res := r.snapshot(); res.ID == id {
			return res, nil
		}
	}
	return m.store.Get(ctx, id)
}

// Wait blocks until drill id has its verdict, or ctx ends.
func (m *Manager) Wait(ctx context.Context, id int64) (Result, error) {
	m.mu.Lock()
	r := m.active
	m.mu.Unlock()
	if r != nil && r.snapshot().ID == id {
		select {
		case <-r.done:
		case <-ctx.Done():
			return r.snapshot(), ctx.Err()
		}
	}
	return m.Get(ctx, id)
}

// List returns the running drill (if any) and the newest stored ones.
func (m *Manager) List(ctx context.Context, limit int) ([]Brief, error) {
	list, err := m.store.List(ctx, limit)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	r := m.active
	m.mu.Unlock()
	if r != nil {
		res := r.snapshot()
		list = append([]Brief{res.Brief()}, list...)
	}
	return list, nil
}

// Modes answers, per failure mode, when it was last drilled and how long
// its last passed recovery took.
func (m *Manager) Modes(ctx context.Context) ([]ModeRecord, error) { return m.store.Modes(ctx) }

// Scenarios returns the scenarios drills may name, custom ones included.
func (m *Manager) Scenarios() []Scenario {
	list := m.deps.Catalog.List()
	cfg := m.deps.Config()
	if cfg == nil || cfg.Drills == nil {
		return list
	}
	byName := map[string]int{}
	for i, s := range list {
		byName[s.Name] = i
	}
	for name, c := range cfg.Drills.Scenarios {
		if c == nil {
			continue
		}
		s := FromConfig(name, c)
		if i, ok := byName[name]; ok {
			list[i] = s
		} else {
			list = append(list, s)
		}
	}
	return list
}

// Serve runs the scheduled drills until ctx ends; then it aborts the
// running drill (restoring what it changed) and returns once it ended: a
// drill never outlives the agent.
func (m *Manager) Serve(ctx context.Context) error {
	m.removeLeftovers(ctx)
	m.schedule(ctx)
	m.mu.Lock()
	m.closed = true
	r := m.active
	m.mu.Unlock()
	if r != nil {
		r.cancel(errors.New("aborted: medic is stopping"))
	}
	m.wg.Wait()
	m.stop()
	return nil
}

// removeLeftovers deletes fill files a previous medic left when it died in
// the middle of a disk drill (the default name only: a custom name is the
// operator's to clean), and records each removal.
func (m *Manager) removeLeftovers(ctx context.Context) {
	cfg := m.deps.Config()
	if cfg == nil || cfg.Drills == nil {
		return
	}
	for _, dir := range cfg.Drills.DiskPaths {
		files, _ := filepath.Glob(filepath.Join(dir, "medic-drill-*.fill"))
		for _, f := range files {
			reason := "removed the fill file of a disk drill that did not end: " + f
			if err := os.Remove(f); err != nil {
				reason = "could not remove the fill file of a disk drill that did not end: " + err.Error()
			}
			m.deps.Record(ctx, medic.Event{Time: m.deps.Clock.Now(), Kind: "drill.leftover", Target: dir, Actor: "drill", Reason: reason})
		}
	}
}
