package drill

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/drill/load"
)

// restoreTimeout bounds the removal of a fault: an injector that cannot undo
// its change within it fails the drill loudly rather than hang it.
const restoreTimeout = time.Minute

// run is one drill in progress.
type run struct {
	mu     sync.Mutex
	res    Result
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func (r *run) snapshot() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res
}

func (r *run) set(f func(res *Result)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.res)
}

// execution holds one drill's moving parts while it runs.
type execution struct {
	m     *Manager
	id    int64
	r     *run
	p     *plan
	w     *watcher
	actor string

	notesMu sync.Mutex
	notes   []string
	figures map[string]float64
	fails   []string
}

func (x *execution) figure(name string, v float64) {
	x.notesMu.Lock()
	defer x.notesMu.Unlock()
	if x.figures == nil {
		x.figures = map[string]float64{}
	}
	x.figures[name] = v
}

func (x *execution) fail(reason string) {
	x.notesMu.Lock()
	defer x.notesMu.Unlock()
	x.fails = append(x.fails, reason)
}

func (x *execution) note(format string, args ...any) {
	x.notesMu.Lock()
	defer x.notesMu.Unlock()
	x.notes = append(x.notes, fmt.Sprintf(format, args...))
}

func (x *execution) takeNotes() string {
	x.notesMu.Lock()
	defer x.notesMu.Unlock()
	s := strings.Join(x.notes, "; ")
	x.notes = nil
	return s
}

func (x *execution) now() time.Time { return x.m.deps.Clock.Now() }

func (x *execution) record(ctx context.Context, kind, reason string, fields map[string]string) {
	if fields == nil {
		fields = map[string]string{}
	}
	fields["drill"] = strconv.FormatInt(x.id, 10)
	fields["scenario"] = x.p.sc.Name
	target := x.p.subject.Instance
	if target == "" {
		target = x.p.subject.Service
	}
	x.m.deps.Record(ctx, medic.Event{Time: x.now(), Kind: medic.EventKind(kind), Target: target, Actor: x.actor, Reason: reason, Fields: fields})
}

// sleep waits d, or until ctx ends.
func (x *execution) sleep(ctx context.Context, d time.Duration) {
	x.waitUntil(ctx, x.now().Add(d), func(time.Time) bool { return false })
}

// waitUntil waits until cond holds (true), until passes (false) or ctx
// ends (false). cond is checked on every new observation and at least
// every 250ms.
func (x *execution) waitUntil(ctx context.Context, until time.Time, cond func(now time.Time) bool) bool {
	for {
		now := x.now()
		if cond(now) {
			return true
		}
		if !now.Before(until) {
			return false
		}
		t := x.m.deps.Clock.NewTimer(min(until.Sub(now), 250*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-x.w.kick:
		case <-t.C():
		}
		t.Stop()
	}
}

func (x *execution) input(marks Marks) Input {
	return Input{Scenario: x.p.sc, Subject: x.p.subject, Marks: marks, Events: x.w.timeline()}
}

// execute runs the drill: warm up, inject, wait for recovery or the
// deadline, restore, settle, cool down, judge, record, store. It always
// restores what it injected, even when ctx is cancelled (abort, shutdown).
// It returns the verdict, recorded and stored, for the caller to publish.
func (m *Manager) execute(ctx context.Context, r *run, p *plan) Result {
	d := &m.deps
	id := r.snapshot().ID
	x := &execution{m: m, id: id, r: r, p: p, actor: fmt.Sprintf("drill:%d", id)}
	p.target.Drill, p.target.Note, p.target.Figure, p.target.Fail = id, x.note, x.figure, x.fail
	p.target.LoadRPS = p.load.RPS
	bg := context.WithoutCancel(ctx) // restoring and recording outlive an abort
	var head int64
	if d.Audit != nil {
		head = d.Audit.Head().Seq
	}
	x.w = newWatcher(d, p.subject, x.actor)
	var bgWG, loadWG sync.WaitGroup
	wctx, stopWatch := context.WithCancel(bg)
	bgWG.Add(1)
	go func() { defer bgWG.Done(); x.w.serve(wctx) }()
	rec := load.NewRecorder(2_000_000)
	lctx, stopLoad := context.WithCancel(bg)
	var writes *WriteLoad
	if p.writes > 0 {
		wl, err := d.Writes(WriteRequest{Database: p.subject.Service, Drill: id, Rate: p.writes,
			Note: func(kind, reason string, fields map[string]string) { x.record(bg, kind, reason, fields) }})
		if err != nil {
			x.note("no write load: %v", err)
			p.load = LoadSpec{Note: "no load: " + err.Error()}
		} else {
			writes = &wl
			p.load.Note = wl.Describe
			r.set(func(res *Result) { res.Load = p.load })
			loadWG.Add(1)
			go func() {
				defer loadWG.Done()
				if err := wl.Run(lctx, rec.Add); err != nil {
					x.note("write load: %v", err)
				}
			}()
		}
	}
	var loadHeader http.Header
	if c := p.sc.Fault.Params["load_class"]; c != "" && p.load.URL != "" {
		// The load is sent as a client of that class, with a key made for
		// this drill and removed at its end.
		ct, ok := d.Traffic.(ClassTraffic)
		if !ok {
			x.fail("the load cannot be sent as client class " + c + ": the proxies make no client keys")
		} else if h, key, remove, err := ct.ClientKey(p.subject.Service, fmt.Sprintf("drill-%d-load", id), c); err != nil {
			x.fail("the load cannot be sent as client class " + c + ": " + err.Error())
		} else {
			defer remove()
			loadHeader = http.Header{h: {key}}
			p.load.Class = c
			r.set(func(res *Result) { res.Load = p.load })
		}
	}
	if p.load.URL != "" {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			err := load.Run(lctx, load.Options{URL: p.load.URL, Rate: p.load.RPS, Connections: p.load.Connections,
				Clock: d.Clock, OnSample: rec.Add, Header: loadHeader})
			if err != nil {
				x.note("load: %v", err)
			}
		}()
	}
	var marks Marks
	marks.Start = x.now()
	r.set(func(res *Result) { res.Marks = marks })
	x.record(bg, "drill.started", fmt.Sprintf("drill %s of %s started by %s (%s)", p.sc.Name, p.subject.Service, p.actor, loadLine(p.load)),
		map[string]string{"requested_by": p.actor})

	var failures []string
	var steps []Step
	x.sleep(ctx, p.sc.Warmup.D())
	if id := p.subject.Instance; id != "" && p.load.URL != "" && !x.w.receiving(id) {
		// At low load the balancer may leave an instance without traffic for
		// seconds; a fault injected then would measure nothing.
		if !x.waitUntil(ctx, x.now().Add(5*time.Second), func(time.Time) bool { return x.w.receiving(id) }) && ctx.Err() == nil {
			x.note("%s got no traffic from the proxy for the 5s before the injection", id)
		}
	}
	injected, missed := false, false
	if ctx.Err() == nil {
		marks.Inject = x.now()
		r.set(func(res *Result) { res.Marks, res.Phase = marks, PhaseInjected })
		restore, err := p.injector.Inject(ctx, p.target)
		st := Step{Time: marks.Inject, Action: "inject", Detail: x.takeNotes()}
		if err != nil {
			st.Error = err.Error()
			failures = append(failures, "injection failed: "+err.Error())
			x.record(bg, "drill.injected", "injection failed: "+err.Error(), map[string]string{"fault": p.sc.Fault.Kind, "ok": "false"})
			if restore != nil { // a partial injection still gets undone
				restore(bg)
			}
		} else {
			injected = true
			x.record(bg, "drill.injected", "injected "+p.sc.Fault.Kind+": "+st.Detail, map[string]string{"fault": p.sc.Fault.Kind, "ok": "true"})
		}
		steps = append(steps, st)
		if injected {
			hold := marks.Inject.Add(p.sc.Hold.D())
			recovered := x.waitUntil(ctx, marks.Inject.Add(p.sc.Deadline.D()), func(now time.Time) bool {
				return Track(x.input(marks)).Recovered != nil && !now.Before(hold)
			})
			if !recovered && ctx.Err() == nil {
				failures = append(failures, fmt.Sprintf("deadline: not recovered within %v; the drill stopped injecting and restored what it changed", p.sc.Deadline))
				missed = true
			}
			marks.Restore = x.now()
			r.set(func(res *Result) { res.Marks, res.Phase = marks, PhaseRestore })
			st := Step{Time: marks.Restore, Action: "restore"}
			if restore != nil {
				rctx, cancel := context.WithTimeout(bg, restoreTimeout)
				if err := restore(rctx); err != nil {
					st.Error = err.Error()
					failures = append(failures, "restore failed, check the service by hand: "+err.Error())
				}
				cancel()
			}
			st.Detail = x.takeNotes()
			if st.Detail == "" {
				st.Detail = "nothing to undo"
			}
			steps = append(steps, st)
			ok := strconv.FormatBool(st.Error == "")
			x.record(bg, "drill.restored", "restored: "+st.Detail+errSuffix(st.Error), map[string]string{"ok": ok})
		}
	}
	// Waiting for capacity to return makes sense only after a recovery; a
	// drill past its deadline has its verdict already.
	if injected && !missed && ctx.Err() == nil {
		r.set(func(res *Result) { res.Phase = PhaseSettle })
		x.waitUntil(ctx, x.now().Add(p.sc.Settle.D()), func(time.Time) bool { return x.w.full() })
	}
	if ctx.Err() == nil {
		r.set(func(res *Result) { res.Phase = PhaseCooldown })
		x.sleep(ctx, p.sc.Cooldown.D())
	}
	stopLoad()
	loadWG.Wait()
	marks.End = x.now()
	x.w.poll(marks.End)
	stopWatch()
	bgWG.Wait()

	tctx, cancel := context.WithTimeout(bg, 10*time.Second)
	timeline, err := x.w.durable(tctx, head)
	cancel()
	if err != nil {
		x.note("timeline read from the live stream (no audit sequence numbers): %v", err)
	}
	samples, dropped := rec.Samples()
	if dropped > 0 {
		x.note("%d samples beyond the recorder's cap were not kept", dropped)
	}
	meas := Evaluate(Input{Scenario: p.sc, Subject: p.subject, Marks: marks, Events: timeline, Samples: samples})
	if writes != nil {
		f := &WriteFigures{Lossless: writes.Lossless}
		if injected {
			f.RTO = writeRTO(samples, marks.Inject, marks.End)
		}
		vctx, cancel := context.WithTimeout(bg, time.Minute)
		var err error
		f.Acked, f.Lost, err = writes.Verify(vctx)
		cancel()
		if err != nil {
			f.Error = err.Error()
		}
		meas.Writes = f
		failures = append(failures, writeReasons(f)...)
	}
	x.notesMu.Lock()
	meas.Figures = x.figures
	failures = append(failures, x.fails...)
	x.notesMu.Unlock()
	state := StatePassed
	if cause := context.Cause(ctx); ctx.Err() != nil {
		// An aborted drill is not judged against its scenario: it was cut
		// short. Its reasons are the abort and anything that went wrong.
		meas.Reasons = nil
		failures = append([]string{cause.Error()}, failures...)
		state = StateAborted
	}
	meas.Reasons = append(failures, meas.Reasons...)
	meas.Passed = len(meas.Reasons) == 0
	if !meas.Passed && state == StatePassed {
		state = StateFailed
	}
	for i := range steps {
		for _, o := range timeline {
			if o.Actor == x.actor && o.Kind == "drill."+map[string]string{"inject": "injected", "restore": "restored"}[steps[i].Action] {
				steps[i].Seq = o.Seq
			}
		}
	}
	res := r.snapshot()
	res.State, res.Phase, res.Marks, res.Measurement, res.Steps, res.Timeline = state, PhaseDone, marks, meas, steps, timeline
	if n := x.takeNotes(); n != "" {
		res.Load.Note = strings.TrimPrefix(res.Load.Note+"; "+n, "; ")
	}
	res.summarize()
	x.record(bg, "drill.verdict", res.Summary, verdictFields(res))
	if err := m.store.Save(bg, res); err != nil {
		d.Logger.Error("drill: store the result", "drill", res.ID, "err", err)
	}
	return res
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "; error: " + e
}

func loadLine(l LoadSpec) string {
	switch {
	case l.URL == "":
		return l.Note
	case l.RPS > 0:
		return fmt.Sprintf("%.0f requests/s open loop to %s", l.RPS, l.URL)
	}
	return fmt.Sprintf("%d closed-loop connections to %s", l.Connections, l.URL)
}

func verdictFields(r Result) map[string]string {
	f := map[string]string{"passed": strconv.FormatBool(r.Passed), "state": r.State,
		"client_errors": strconv.Itoa(r.ClientErrors), "requests": strconv.Itoa(r.Requests), "failure_mode": r.FailureMode}
	if r.TTD != nil {
		f["ttd_seconds"] = strconv.FormatFloat(*r.TTD, 'f', 3, 64)
	}
	if r.TTR != nil {
		f["ttr_seconds"] = strconv.FormatFloat(*r.TTR, 'f', 3, 64)
	}
	return f
}
