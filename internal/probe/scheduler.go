package probe

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
)

// Defaults of a Scheduler's zero fields.
const (
	// DefaultSchedulerWorkers bounds the checks a Scheduler runs at once. A
	// check holds a worker for at most its timeout; probes that come due
	// while every worker is busy wait, and the periods they miss are counted
	// (Set.Missed), never run in a burst.
	DefaultSchedulerWorkers = 128
	// DefaultSchedulerSlack is how early a probe may run so that it shares a
	// wakeup with a probe due before it (never more than a tenth of its
	// period). A probe that ran early moves onto the grid of the probe it
	// joined, so they share every later wakeup: an agent with many instances
	// wakes a few times a period instead of once per probe, and one of its
	// periods was shorter by at most the slack.
	DefaultSchedulerSlack = 25 * time.Millisecond
	// schedulerIdleWorkers is how many idle workers are kept for the next
	// wakeup; the others exit.
	schedulerIdleWorkers = 4
)

// Scheduler runs the probes of many Sets from one timer and a bounded pool
// of goroutines, instead of a goroutine and a timer per probe: one heap of
// next-due probes, one goroutine waiting for the earliest, and workers that
// exist only while checks run. The semantics of a Set are unchanged: each
// probe steps on its own period grid, a probe never overlaps itself, missed
// periods are counted and skipped, startup gates liveness and readiness.
//
// A Set uses the Scheduler named in Set.Scheduler; the zero Scheduler is
// ready to use. Its goroutines exit when no probe is scheduled.
type Scheduler struct {
	// Clock drives the wakeups; nil means the wall clock. Sets run by this
	// Scheduler must use the same clock.
	Clock clock.Clock
	// Workers bounds the checks run at once; 0 means DefaultSchedulerWorkers.
	Workers int
	// Slack is how early a probe may run to share a wakeup; 0 means
	// DefaultSchedulerSlack, a negative value no slack.
	Slack time.Duration

	mu      sync.Mutex
	due     dueHeap
	pending []*job // due, waiting for a worker
	looping bool   // the wakeup goroutine runs
	kick    chan struct{}
	jobs    chan *job
	running int // workers alive
	idle    int // workers waiting on jobs
}

// job is one probe of one Set: its worker and where it is on its grid.
type job struct {
	w       *worker
	ctx     context.Context
	at      time.Time // next run
	anchor  time.Time // the period grid (zero before the first run)
	idx     int       // index in the heap, -1 when not in it
	done    func()    // called once when the job leaves the Scheduler
	started func()    // startup passed (may be nil)
	over    bool      // finished or withdrawn
}

func (s *Scheduler) clock() clock.Clock { return clock.Or(s.Clock) }

func (s *Scheduler) slack() time.Duration {
	switch {
	case s.Slack < 0:
		return 0
	case s.Slack == 0:
		return DefaultSchedulerSlack
	}
	return s.Slack
}

func (s *Scheduler) maxWorkers() int {
	if s.Workers > 0 {
		return s.Workers
	}
	return DefaultSchedulerWorkers
}

// add schedules j at j.at.
func (s *Scheduler) add(j *job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kick == nil {
		s.kick = make(chan struct{}, 1)
		s.jobs = make(chan *job)
	}
	if j.over {
		return
	}
	if j.ctx.Err() != nil {
		// The Set ended: its withdraw, which comes after, will not find j.
		j.over = true
		defer j.done()
		return
	}
	heap.Push(&s.due, j)
	if !s.looping {
		s.looping = true
		go s.loop()
	} else if j.idx == 0 {
		s.wake()
	}
}

// withdraw takes jobs out of the Scheduler (their Set ended). A job whose
// check is running finishes it and is dropped then.
func (s *Scheduler) withdraw(js []*job) {
	s.mu.Lock()
	var gone []*job
	for _, j := range js {
		if j.over {
			continue
		}
		if j.idx >= 0 {
			heap.Remove(&s.due, j.idx)
			j.over = true
			gone = append(gone, j)
		}
	}
	if len(gone) > 0 && s.looping {
		s.wake() // it may be waiting for a job just withdrawn, or have nothing left
	}
	s.mu.Unlock()
	for _, j := range gone {
		j.done()
	}
}

func (s *Scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop waits for the earliest due job and hands every job due within the
// slack to a worker. It exits when nothing is scheduled.
func (s *Scheduler) loop() {
	clk := s.clock()
	var t clock.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		s.mu.Lock()
		if len(s.due) == 0 {
			s.looping = false
			idle := s.idle
			s.idle = 0
			s.mu.Unlock()
			for range idle {
				s.jobs <- nil // an idle worker exits on nil
			}
			return
		}
		now := clk.Now()
		slack := s.slack()
		var ready, later []*job
		for len(s.due) > 0 && !s.due[0].at.After(now.Add(slack)) {
			j := heap.Pop(&s.due).(*job)
			if j.at.After(now.Add(min(slack, j.w.period/10))) {
				later = append(later, j) // never more than a tenth of its period early
				continue
			}
			ready = append(ready, j)
		}
		for _, j := range later {
			heap.Push(&s.due, j)
		}
		wait := time.Duration(0)
		if len(s.due) > 0 {
			wait = s.due[0].at.Sub(now)
		}
		s.mu.Unlock()
		if len(ready) > 0 {
			ref := ready[0].at // read before it runs: a running job moves its at
			for _, j := range ready {
				s.dispatch(j, now, ref)
			}
		}
		if len(ready) > 0 {
			continue // the heap may have changed while dispatching
		}
		if t == nil {
			t = clk.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-t.C():
		case <-s.kick:
			if !t.Stop() {
				select { // drain a tick that fired meanwhile (fake clocks buffer it)
				case <-t.C():
				default:
				}
			}
		}
	}
}

// dispatch runs j on an idle worker, a new one, or queues it. ref is when
// the earliest job of this wakeup was due.
func (s *Scheduler) dispatch(j *job, now, ref time.Time) {
	switch {
	case j.anchor.IsZero():
		j.anchor = now // the first run anchors the grid, as worker.run does
	case j.at.After(now):
		// Early, to share this wakeup: from now on j is on the grid of the
		// job it shares it with, so they keep sharing it.
		j.anchor = ref
	}
	s.mu.Lock()
	switch {
	case s.idle > 0:
		s.idle--
		s.mu.Unlock()
		s.jobs <- j
	case s.running < s.maxWorkers():
		s.running++
		s.mu.Unlock()
		go s.work(j)
	default:
		s.pending = append(s.pending, j)
		s.mu.Unlock()
	}
}

// work runs j, then whatever is pending, then waits for the next job or exits.
func (s *Scheduler) work(j *job) {
	for {
		s.step(j)
		s.mu.Lock()
		if len(s.pending) > 0 {
			j = s.pending[0]
			s.pending[0] = nil
			s.pending = s.pending[1:]
			s.mu.Unlock()
			continue
		}
		if s.idle >= schedulerIdleWorkers || !s.looping {
			s.running--
			s.mu.Unlock()
			return
		}
		s.idle++
		s.mu.Unlock()
		if j = <-s.jobs; j == nil {
			s.mu.Lock()
			s.running--
			s.mu.Unlock()
			return
		}
	}
}

// step runs one check of j and schedules its next, as worker.run does.
func (s *Scheduler) step(j *job) {
	finish := func() {
		s.mu.Lock()
		already := j.over
		j.over = true
		s.mu.Unlock()
		if !already {
			j.done()
		}
	}
	if j.ctx.Err() != nil {
		finish()
		return
	}
	switch j.w.step(j.ctx) {
	case isStarted:
		if j.started != nil {
			j.started()
		}
		finish()
		return
	case onHold, stopping:
		finish()
		return
	}
	now := j.w.clock.Now()
	next, missed := nextTick(j.anchor, now, j.w.period)
	if missed > 0 && j.w.missed != nil {
		j.w.missed(j.w.kind, missed)
	}
	j.anchor, j.at = next, next
	if j.ctx.Err() != nil {
		finish()
		return
	}
	s.add(j)
}

// start runs the workers of one Set on s until ctx ends; wait returns once
// they all stopped. See Set.Start.
func (s *Scheduler) start(ctx context.Context, begin time.Time, workers []*worker, gated bool, started chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var live []*job
	var ended bool
	schedule := func(w *worker, at time.Time, onStarted func()) {
		j := &job{w: w, ctx: ctx, at: at, idx: -1, done: wg.Done, started: onStarted}
		mu.Lock()
		if ended {
			mu.Unlock()
			return
		}
		wg.Add(1)
		live = append(live, j)
		mu.Unlock()
		s.add(j)
	}
	first := func(w *worker) time.Time {
		at := begin.Add(w.initialDelay)
		if now := w.clock.Now(); at.Before(now) {
			at = now
		}
		return at
	}
	var startup *worker
	var rest []*worker
	for _, w := range workers {
		if gated && w.kind == medic.ProbeStartup {
			startup = w
			continue
		}
		rest = append(rest, w)
	}
	if startup == nil {
		for _, w := range rest {
			schedule(w, first(w), nil)
		}
	} else {
		// Closing started after the startup update was delivered orders it
		// before any liveness or readiness update.
		schedule(startup, first(startup), func() {
			close(started)
			for _, r := range rest {
				schedule(r, first(r), nil)
			}
		})
	}
	context.AfterFunc(ctx, func() {
		mu.Lock()
		ended = true
		js := live
		mu.Unlock()
		s.withdraw(js)
	})
	return wg.Wait
}

// dueHeap orders jobs by their next run.
type dueHeap []*job

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, k int) bool { return h[i].at.Before(h[k].at) }
func (h dueHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].idx, h[k].idx = i, k
}
func (h *dueHeap) Push(x any) {
	j := x.(*job)
	j.idx = len(*h)
	*h = append(*h, j)
}
func (h *dueHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	j.idx = -1
	*h = old[:len(old)-1]
	return j
}
