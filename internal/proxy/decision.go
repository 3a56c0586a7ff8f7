package proxy

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/auth"
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

	budMu   sync.Mutex
	budgets []Budget // one per client class; one without classes

	// classes are the client classes; nil without them. Their seats are
	// under limMu, their rate buckets under rlMu.
	classes *classes

	limMu   sync.Mutex
	limiter *Limiter // nil when shedding is off

	rlMu sync.Mutex
	// rlNow is the latest time the rate buckets were asked at (under rlMu).
	// Requests arrive with their own start times, not in order under the
	// lock; golang.org/x/time/rate moves its clock back for an earlier time
	// and then counts the same interval's tokens again for a later one, so a
	// bucket under contention let through a few percent more than its rate
	// (the agent-retry-storm drill saw 226 made-up keys served where 222 were
	// allowed). The buckets are asked at max(now, rlNow) instead.
	rlNow     time.Time
	limits    *ClientLimits // nil without a rate limit
	keyHeader string
	// onBreaker sees every transition of a class breaker (log, metrics); nil: none.
	onBreaker func(class string, ch breakerChange)
	// sigHeader carries signed requests' signatures ("" when off); sigWindow bounds their time.
	sigHeader string
	sigWindow time.Duration
	// sigSeen remembers the signatures accepted within sigWindow: each is good once.
	sigSeen *auth.SeenSignatures
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
		retry:     RetryPolicy{Max: *cfg.Retries.Max},
		keyHeader: cfg.RateLimit.KeyHeader,
	}
	if cfg.Clients.Enabled() && cfg.Mode == config.ProxyModeHTTP {
		d.classes = newClasses(cfg.Clients)
		d.keyHeader = cfg.Clients.KeyHeader
		if sg := cfg.Clients.Signature; sg != nil {
			d.sigHeader, d.sigWindow = sg.Header, sg.Window.D()
			d.sigSeen = auth.NewSeenSignatures(sg.Window.D(), sg.MaxSeen)
		}
		for _, name := range cfg.Clients.ClassNames() {
			d.budgets = append(d.budgets, NewBudget(*cfg.Clients.Classes[name].RetryBudget, *cfg.Retries.MinPerSecond))
		}
	} else {
		d.budgets = []Budget{NewBudget(*cfg.Retries.Budget, *cfg.Retries.MinPerSecond)}
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
	Admitted         Refusal = iota // not refused
	RateLimited                     // 429: this client is over its rate
	Shed                            // 503: the concurrency limit is reached
	ClassCircuitOpen                // 503: the client class's own breaker is open
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
	// Class is the client's class (Client.Class).
	Class int
	// breakerGen is the state of the class's breaker the request was let
	// through under (ClassResult gives it back); breaker says it has one.
	breakerGen uint64
	breaker    bool
}

// Admit decides whether a request from c (see Identify) is served at now:
// its class's rate, then its own rate (rate_limit), then a seat of the
// concurrency limit (its class's share, see classes.seat). longLived
// requests (upgrades, event streams) bypass the concurrency limit, whose
// latency signal they would distort. An admitted request is counted by its
// class's retry budget.
func (d *Decision) Admit(now time.Time, c Client, longLived bool) Admission {
	var cl *class
	if d.classes != nil {
		cl = &d.classes.list[c.Class]
	}
	var gen uint64
	if cl != nil && cl.breaker != nil {
		ok, g, wait, ch := cl.breaker.allow(now)
		d.noteBreaker(cl.name, ch)
		if !ok {
			return Admission{Refusal: ClassCircuitOpen, Status: 503, RetryAfter: wait, Class: c.Class, Reason: "circuit open for client class " + cl.name + ": its requests failed"}
		}
		gen = g
	}
	// A refusal below gives back a half-open breaker's trial (no result follows).
	untry := func() {
		if cl != nil && cl.breaker != nil {
			cl.breaker.untry(gen)
		}
	}
	if cl != nil && cl.bucket != nil {
		d.rlMu.Lock()
		ok, wait := allowBucket(cl.bucket, d.rateNow(now))
		d.rlMu.Unlock()
		if !ok {
			untry()
			cl.limited.Add(1)
			return Admission{Refusal: RateLimited, Status: 429, RetryAfter: wait, Class: c.Class, Reason: "rate limit exceeded for client class " + cl.name}
		}
	}
	if d.limits != nil {
		d.rlMu.Lock()
		ok, wait := d.limits.Allow(d.rateNow(now), c.Key)
		d.rlMu.Unlock()
		if !ok {
			untry()
			if cl != nil {
				cl.limited.Add(1)
			}
			return Admission{Refusal: RateLimited, Status: 429, RetryAfter: wait, Class: c.Class, Reason: "rate limit exceeded for this client"}
		}
	}
	a := Admission{Class: c.Class, breakerGen: gen, breaker: cl != nil && cl.breaker != nil}
	if d.limiter != nil && !longLived {
		d.limMu.Lock()
		var ok bool
		if cl == nil {
			ok = d.limiter.Acquire()
		} else if ok = d.classes.seat(c.Class, d.limiter.Limit(), d.limiter.Inflight()); ok {
			d.limiter.Take()
			cl.inflight++
		} else {
			d.limiter.Refuse()
		}
		d.limMu.Unlock()
		if !ok {
			untry()
			if cl != nil {
				cl.shed.Add(1)
				return Admission{Refusal: Shed, Status: 503, RetryAfter: time.Second, Class: c.Class, Reason: "overloaded: no seat left for client class " + cl.name}
			}
			return Admission{Refusal: Shed, Status: 503, RetryAfter: time.Second, Reason: "overloaded: concurrency limit reached"}
		}
		a.Held = true
	}
	if cl != nil {
		cl.admitted.Add(1)
	}
	d.budMu.Lock()
	d.budgets[c.Class].Request(now)
	d.budMu.Unlock()
	return a
}

// rateNow is the time the rate buckets are asked at: now, never earlier
// than a time they were already asked at. Under rlMu.
func (d *Decision) rateNow(now time.Time) time.Time {
	if now.Before(d.rlNow) {
		return d.rlNow
	}
	d.rlNow = now
	return now
}

// ClassResult counts the end of an admitted request with status (the status
// the client got; 0 when it got none) in its class's breaker: a 5xx or no
// answer is a failure. Refused requests are not counted: the data planes
// call it only for admitted ones.
func (d *Decision) ClassResult(now time.Time, a Admission, status int) {
	if !a.breaker || a.Refusal != Admitted {
		return
	}
	cl := &d.classes.list[a.Class]
	d.noteBreaker(cl.name, cl.breaker.result(now, a.breakerGen, status == 0 || status >= 500))
}

// noteBreaker hands a class breaker's transition to the proxy (OnBreaker).
func (d *Decision) noteBreaker(class string, ch *breakerChange) {
	if ch != nil && d.onBreaker != nil {
		d.onBreaker(class, *ch)
	}
}

// NeedsClient reports whether Admit needs Identify's answer (a rate limit or
// client classes are set); otherwise Client{} will do.
func (d *Decision) NeedsClient() bool { return d.limits != nil || d.classes != nil }

// KeyHeader is the header that carries a client's API key.
func (d *Decision) KeyHeader() string { return d.keyHeader }

// Identify says who sent a request presenting key (the KeyHeader's value or
// a bearer token; empty when none) from address ip. Only a key verified
// against the client keys file names a client or a class; without one the
// client is its address, in the default class, so a made-up key per request
// gains nothing.
func (d *Decision) Identify(key []byte, ip string) Client {
	if d.classes != nil {
		return d.classes.identify(key, ip, d.limits != nil)
	}
	if d.limits == nil {
		return Client{}
	}
	return Client{Key: "ip:" + ip}
}

// SignatureHeader is the header of signed requests; "" when they are off.
func (d *Decision) SignatureHeader() string { return d.sigHeader }

// IdentifySigned is Identify for a request presenting signature sig (the
// SignatureHeader's value) for method and target (the request target as
// sent) at now. An error means the request must be refused, with
// SignedRefusal's status: the signature is malformed, stale, wrong or
// already used (401), or too many signatures are remembered to take
// another (503).
func (d *Decision) IdentifySigned(sig, method, target []byte, now time.Time) (Client, error) {
	return d.classes.identifySigned(sig, method, target, now, d.sigWindow, d.sigSeen, d.limits != nil)
}

// SignedRefusal is the status and Retry-After of a request that
// IdentifySigned refused with err at now.
func (d *Decision) SignedRefusal(err error, now time.Time) (status int, retryAfter time.Duration) {
	if errors.Is(err, auth.ErrSeenFull) && d.sigSeen != nil {
		return http.StatusServiceUnavailable, d.sigSeen.RetryAfter(now)
	}
	return http.StatusUnauthorized, 0
}

// SetClientKeys installs the verified client keys; every class they name
// must be defined. Without classes it is an error to give keys.
func (d *Decision) SetClientKeys(k *auth.ClientKeys) error {
	if d.classes == nil {
		return errors.New("client keys given but no client classes are configured")
	}
	return d.classes.setKeys(k)
}

// AddClientKey lets key stand for a client named name in class until the
// returned func is called: the drills' own clients (agent-retry-storm).
func (d *Decision) AddClientKey(key []byte, name, class string) (remove func(), err error) {
	if d.classes == nil {
		return nil, errors.New("no client classes are configured (proxy.clients)")
	}
	return d.classes.addKey(key, name, class)
}

// Release returns the concurrency slot of an admitted request that Held one.
func (d *Decision) Release(a Admission) {
	d.limMu.Lock()
	d.limiter.Release()
	if d.classes != nil {
		d.classes.list[a.Class].inflight--
	}
	d.limMu.Unlock()
}

// ClassNames are the client classes by index (Client.Class); nil without classes.
func (d *Decision) ClassNames() []string {
	if d.classes == nil {
		return nil
	}
	names := make([]string, len(d.classes.list))
	for i := range d.classes.list {
		names[i] = d.classes.list[i].name
	}
	return names
}

// ClassStats is a snapshot of the client classes; nil without classes.
func (d *Decision) ClassStats() []ClassStats {
	if d.classes == nil {
		return nil
	}
	d.limMu.Lock()
	defer d.limMu.Unlock()
	limit := 0
	if d.limiter != nil {
		limit = d.limiter.Limit()
	}
	out := make([]ClassStats, len(d.classes.list))
	for i := range d.classes.list {
		c := &d.classes.list[i]
		n, g := d.classes.seats(i, limit)
		if d.limiter == nil {
			n, g = 0, 0
		}
		out[i] = ClassStats{
			Name: c.name, Priority: c.priority, Share: c.share, NominalSeats: n, GuaranteedSeats: g,
			Inflight: c.inflight, Admitted: c.admitted.Load(), Shed: c.shed.Load(), RateLimited: c.limited.Load(),
			Default: i == d.classes.def,
		}
		out[i].Breaker, out[i].BreakerOpened, out[i].BreakerRefused = c.breaker.snapshot()
	}
	return out
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
	// Class is the client's class, whose retry budget pays for a retry.
	Class int
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
	ok := d.budgets[t.Class].Allow(now)
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

// SetRemote adds or updates instance id at addr on another host of the
// fleet: it is picked only when no local instance can take a try (see
// Proxy.SetRemoteBackend).
func (d *Decision) SetRemote(id, addr string, ready bool) []event {
	return d.pool.setRemote(id, addr, ready)
}
