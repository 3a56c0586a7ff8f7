package proxy

import (
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Decision is the proxy's decision plane: where a request goes, and whether
// it goes at all. It holds the instances (readiness, draining, outlier
// ejection, latency), the retry budget, the adaptive concurrency limit and
// the per-client rate limits, and answers with values: an Admission, a Pick,
// a retry or not. Every method takes now; none reads a clock, starts a
// goroutine or does I/O, so a timeline table tests it (decision_test.go).
//
// The data planes (net/http in handler.go and transport.go, the fast
// HTTP/1.1 path in fast*.go, TCP in tcp.go) move bytes and report each try's
// Outcome back; neither knows how the other moves bytes. Canary weights,
// client classes and fleet discovery extend this type, not the data planes.
//
// Each part keeps its own lock so that a decision is a few comparisons
// under one short critical section.
type Decision struct {
	pool  *pool
	retry RetryPolicy

	budMu  sync.Mutex
	budget Budget

	limMu   sync.Mutex
	limiter *Limiter // nil when shedding is off

	rlMu      sync.Mutex
	limits    *ClientLimits // nil without a rate limit
	keyHeader string
}

// RetryPolicy says which failed tries are repeated on another instance.
type RetryPolicy struct {
	// Max is the number of retries after the first try.
	Max int
	// OnStatus marks the statuses retried for idempotent requests.
	OnStatus [600]bool
}

// NewDecision builds the decision plane for cfg, which must have its
// defaults set and be valid.
func NewDecision(cfg config.Proxy) *Decision {
	d := &Decision{
		pool:      newPool(OutlierPolicyFrom(cfg.Outlier), *cfg.Outlier.MaxEjectionPercent),
		budget:    NewBudget(*cfg.Retries.Budget, *cfg.Retries.MinPerSecond),
		retry:     RetryPolicy{Max: *cfg.Retries.Max},
		keyHeader: cfg.RateLimit.KeyHeader,
	}
	for _, s := range cfg.Retries.OnStatus {
		d.retry.OnStatus[s] = true
	}
	httpMode := cfg.Mode == config.ProxyModeHTTP
	if *cfg.Shed.Enabled && httpMode {
		l := NewLimiter(LimiterPolicyFrom(cfg.Shed))
		d.limiter = &l
	}
	if r := cfg.RateLimit; r.Rate > 0 && httpMode {
		d.limits = NewClientLimits(r.Rate, r.Burst, r.MaxClients, r.Idle.D())
	}
	return d
}

// Refusal says why a request is not admitted.
type Refusal int

const (
	Admitted    Refusal = iota // not refused
	RateLimited                // 429: this client is over its rate
	Shed                       // 503: the concurrency limit is reached
)

// Admission is the answer to a request's arrival.
type Admission struct {
	Refusal Refusal
	// Status and RetryAfter are what a refused client is told.
	Status     int
	RetryAfter time.Duration
	Reason     string
	// Held: the request holds a slot of the concurrency limit; the data
	// plane calls Release when the request ends.
	Held bool
}

// Admit decides whether a request from client (see ClientKey) is served at
// now. longLived requests (upgrades, event streams) bypass the concurrency
// limit, whose latency signal they would distort. An admitted request is
// counted by the retry budget.
func (d *Decision) Admit(now time.Time, client string, longLived bool) Admission {
	if d.limits != nil {
		d.rlMu.Lock()
		ok, wait := d.limits.Allow(now, client)
		d.rlMu.Unlock()
		if !ok {
			return Admission{Refusal: RateLimited, Status: 429, RetryAfter: wait, Reason: "rate limit exceeded for this client"}
		}
	}
	var a Admission
	if d.limiter != nil && !longLived {
		d.limMu.Lock()
		ok := d.limiter.Acquire()
		d.limMu.Unlock()
		if !ok {
			return Admission{Refusal: Shed, Status: 503, RetryAfter: time.Second, Reason: "overloaded: concurrency limit reached"}
		}
		a.Held = true
	}
	d.budMu.Lock()
	d.budget.Request(now)
	d.budMu.Unlock()
	return a
}

// RateLimits reports whether Admit needs a client key (a rate limit is set).
func (d *Decision) RateLimits() bool { return d.limits != nil }

// KeyHeader is the header that names a client for its rate limit.
func (d *Decision) KeyHeader() string { return d.keyHeader }

// Release returns the concurrency slot of an admitted request that Held one.
func (d *Decision) Release() {
	d.limMu.Lock()
	d.limiter.Release()
	d.limMu.Unlock()
}

// Limit is the current concurrency limit; 0 when shedding is off.
func (d *Decision) Limit() int {
	if d.limiter == nil {
		return 0
	}
	d.limMu.Lock()
	defer d.limMu.Unlock()
	return d.limiter.Limit()
}

// Pick is where one try goes.
type Pick struct {
	// backend is nil when no instance can take the try.
	backend *backend
	Fault   Fault
	// Events are state changes to log (panic mode and its end).
	Events []event
}

// Instance is the id of the picked instance; "" when none.
func (p Pick) Instance() string {
	if p.backend == nil {
		return ""
	}
	return p.backend.id
}

// Addr is the picked instance's address.
func (p Pick) Addr() string { return p.backend.addr() }

// First picks the instance for a request's first try. An instance whose
// ejection has ended may get it as its trial. The pick counts as
// outstanding until Done.
func (d *Decision) First(now time.Time) Pick {
	b, f, evs := d.pool.pick(now, nil, true)
	return Pick{backend: b, Fault: f, Events: evs}
}

// Outcome classifies one try.
type Outcome int

const (
	OutcomeOK       Outcome = iota
	OutcomeConnect          // dial failed: nothing sent
	OutcomeNotSent          // connection failed before the request headers were written
	OutcomeReset            // request sent, connection failed before any response
	OutcomeTimeout          // no response headers within try_timeout
	OutcomeStatus           // a 5xx answer
	OutcomeCanceled         // the client left or the overall timeout hit: not the instance's fault
)

// Failed reports an outcome that counts against the instance.
func (o Outcome) Failed() bool { return o != OutcomeOK && o != OutcomeCanceled }

// Sent reports whether the request may have reached the instance.
func (o Outcome) Sent() bool { return o != OutcomeConnect && o != OutcomeNotSent }

// Traits are what the retry rules need to know of a request.
type Traits struct {
	// Idempotent: RFC 9110 §9.2.2 or an Idempotency-Key (see isIdempotent).
	Idempotent bool
	// Replayable: the whole body can be sent again (buffered, or none).
	Replayable bool
	// Untouched: no try has read any of a streaming body.
	Untouched bool
}

// Retryable applies the retry rules to one try's outcome and status: a try
// that sent nothing is always retried when its body can be sent again; one
// that was reset, timed out or answered a status in OnStatus only when the
// request is idempotent and its body replayable.
func (r RetryPolicy) Retryable(o Outcome, status int, t Traits) bool {
	switch o {
	case OutcomeConnect, OutcomeNotSent:
		return t.Replayable || t.Untouched
	case OutcomeReset, OutcomeTimeout:
		return t.Idempotent && t.Replayable
	case OutcomeStatus:
		return t.Idempotent && t.Replayable && status >= 0 && status < len(r.OnStatus) && r.OnStatus[status]
	}
	return false
}

// Retry is the answer to a failed try.
type Retry struct {
	// Next is the instance of the next try; its backend is nil when there is none.
	Next Pick
	// BudgetExhausted: another try was allowed by the rules but refused by the budget.
	BudgetExhausted bool
}

// Retry decides whether a request whose last try ended with o (and status)
// after attempts tries is tried again, and where: on an instance not in
// tried, within Max retries and the retry budget.
func (d *Decision) Retry(now time.Time, o Outcome, status int, t Traits, attempts int, tried []*backend) Retry {
	if !d.retry.Retryable(o, status, t) || attempts > d.retry.Max {
		return Retry{}
	}
	b, f, evs := d.pool.pick(now, tried, false)
	if b == nil {
		return Retry{Next: Pick{Events: evs}}
	}
	d.budMu.Lock()
	ok := d.budget.Allow(now)
	d.budMu.Unlock()
	if !ok {
		d.pool.done(b)
		return Retry{Next: Pick{Events: evs}, BudgetExhausted: true}
	}
	return Retry{Next: Pick{backend: b, Fault: f, Events: evs}}
}

// Record counts the outcome of one try on b that took elapsed: the outlier
// state, the latency estimate (a success's time to headers, or a timeout's
// duration as a penalty that steers the balancer away even without
// ejection), the concurrency limit's sample, and the try in its instance's
// group with status (the instance's answer; 0 when it gave none). limit is
// the new concurrency limit when it moved, else -1.
func (d *Decision) Record(now time.Time, b *backend, o Outcome, status int, elapsed time.Duration) (evs []event, limit int) {
	limit = -1
	if o == OutcomeCanceled {
		d.pool.abandon(b)
		return nil, limit
	}
	var sample time.Duration
	switch o {
	case OutcomeOK:
		sample = elapsed
		if d.limiter != nil {
			d.limMu.Lock()
			before := d.limiter.Limit()
			d.limiter.Sample(now, elapsed)
			if after := d.limiter.Limit(); after != before {
				limit = after
			}
			d.limMu.Unlock()
		}
	case OutcomeTimeout:
		sample = elapsed
	}
	if o != OutcomeOK && o != OutcomeStatus {
		status = 0
	}
	return d.pool.record(b, now, !o.Failed(), sample, status, elapsed), limit
}

// Done ends one outstanding try (or TCP connection) on b.
func (d *Decision) Done(b *backend) { d.pool.done(b) }

// Abandon ends a try that has no outcome to record.
func (d *Decision) Abandon(b *backend) { d.pool.abandon(b) }

// Set adds or updates instance id at addr (see Proxy.SetBackend).
func (d *Decision) Set(id, addr string, ready bool) []event { return d.pool.set(id, addr, ready) }
