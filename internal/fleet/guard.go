package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/clock"
)

// Sentinel errors of the guardrails; test with errors.Is.
var (
	// ErrHeld: another remediation (on this host or another) holds the target.
	ErrHeld = errors.New("fleet: target held")
	// ErrCutOff: this host's lease may have expired (it is cut from etcd, or
	// not joined): it takes no fleet-wide action.
	ErrCutOff = errors.New("fleet: this host is cut off from the fleet")
	// ErrCooling: the target was remediated recently, on this host or
	// another; the error is a *CoolingError that says until when.
	ErrCooling = errors.New("fleet: target cooling down")
	// ErrStaleFence: the lock an action was decided under is no longer held
	// (its lease expired and perhaps another host holds the target now):
	// the action must not run.
	ErrStaleFence = errors.New("fleet: stale fence")
)

// CoolingError is a Hold refused by a fleet-wide cooldown.
type CoolingError struct {
	Target string
	Until  time.Time
	By     string // the host whose run started the cooldown; "" in a Local guard
}

func (e *CoolingError) Error() string {
	by := ""
	if e.By != "" {
		by = " by host " + e.By
	}
	return fmt.Sprintf("%s was remediated recently%s; fleet-wide cooldown until %s", e.Target, by, e.Until.UTC().Format(time.RFC3339Nano))
}

// Unwrap makes errors.Is(err, ErrCooling) true.
func (e *CoolingError) Unwrap() error { return ErrCooling }

// Cooler is what a guard may also do: keep a fleet-wide cooldown of a
// target (Cool, when a run ends) and check that a lock is still held under
// its fence (Fenced, before each step). Local and EtcdGuard implement it.
type Cooler interface {
	Cool(ctx context.Context, target string, d time.Duration) error
	Fenced(ctx context.Context, target string, fence int64) error
}

var (
	_ Cooler = (*Local)(nil)
	_ Cooler = (*EtcdGuard)(nil)
)

// Guard is the fleet-wide state of the guardrails that the remedy engine
// asks before acting. Local serves one host; the agent's EtcdGuard serves a
// fleet. Windows are fixed: [k·per, (k+1)·per) of Unix time, the same on
// every host, so a limit of max per window holds exactly across hosts (two
// adjacent windows may together admit 2·max within one per).
type Guard interface {
	// Take takes one token of the window key (max per per). ok false
	// carries the reason: the count and when the window ends.
	Take(ctx context.Context, key string, max int, per time.Duration) (ok bool, reason string, err error)
	// Hold takes target's lock for one remediation. The fence increases
	// with every hold of any target; an action that writes to etcd compares
	// it. It returns ErrHeld when the target is held.
	Hold(ctx context.Context, target string) (fence int64, release func(context.Context) error, err error)
}

var (
	_ Guard = (*Local)(nil)
	_ Guard = (*EtcdGuard)(nil)
)

func windowOf(now time.Time, per time.Duration) (start, end time.Time) {
	start = now.Truncate(per)
	return start, start.Add(per)
}

func refusal(n, max int, per time.Duration, end time.Time) string {
	return fmt.Sprintf("%d runs in the window of %v ending %s (limit %d)", n, per, end.UTC().Format(time.RFC3339), max)
}

// Local is the Guard of a single host: windows and locks in memory.
type Local struct {
	clk   clock.Clock
	mu    sync.Mutex
	count map[string]window // key + window start → tokens taken
	held  map[string]int64
	cool  map[string]time.Time // target → end of its cooldown
	fence int64
}

type window struct {
	n   int
	end time.Time
}

// NewLocal returns an empty local guard; clk may be nil (wall clock).
func NewLocal(clk clock.Clock) *Local {
	return &Local{clk: clock.Or(clk), count: map[string]window{}, held: map[string]int64{}, cool: map[string]time.Time{}}
}

// Take implements Guard.
func (l *Local) Take(_ context.Context, key string, max int, per time.Duration) (bool, string, error) {
	now := l.clk.Now()
	start, end := windowOf(now, per)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, w := range l.count { // forget ended windows: the map holds one entry per live window
		if !now.Before(w.end) {
			delete(l.count, k)
		}
	}
	k := key + "\x00" + strconv.FormatInt(start.UnixNano(), 10) + "\x00" + per.String()
	w := l.count[k]
	if w.n >= max {
		return false, refusal(w.n, max, per, end), nil
	}
	l.count[k] = window{n: w.n + 1, end: end}
	return true, "", nil
}

// Hold implements Guard.
func (l *Local) Hold(_ context.Context, target string) (int64, func(context.Context) error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[target]; ok {
		return 0, nil, fmt.Errorf("%s: %w", target, ErrHeld)
	}
	if until, ok := l.cool[target]; ok && l.clk.Now().Before(until) {
		return 0, nil, &CoolingError{Target: target, Until: until}
	}
	l.fence++
	f := l.fence
	l.held[target] = f
	return f, func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[target] == f {
			delete(l.held, target)
		}
		return nil
	}, nil
}

// Cool implements Cooler: target may not be held again for d.
func (l *Local) Cool(_ context.Context, target string, d time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	for t, until := range l.cool {
		if !now.Before(until) {
			delete(l.cool, t)
		}
	}
	if until := now.Add(d); d > 0 && until.After(l.cool[target]) {
		l.cool[target] = until
	}
	return nil
}

// Fenced implements Cooler: nil while target is held under fence.
func (l *Local) Fenced(_ context.Context, target string, fence int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.held[target]; !ok || f != fence {
		return fmt.Errorf("%s: lock of fence %d no longer held: %w", target, fence, ErrStaleFence)
	}
	return nil
}

// EtcdGuard is the fleet-wide Guard, kept in etcd under
// <prefix>/fleet/<fleet>/{rate,locks}/. Make it with Agent.Guard.
type EtcdGuard struct{ a *Agent }

// Guard returns the fleet-wide guard of a's fleet. It refuses with
// ErrCutOff whenever this host is not joined or its lease is past its
// SafeUntil.
func (a *Agent) Guard() *EtcdGuard { return &EtcdGuard{a: a} }

// Safe returns nil while this host is joined and its lease is within its
// SafeUntil, and an error wrapping ErrCutOff otherwise: a remediation
// holding a lock checks it before each step, since the lock goes with the
// lease. It asks nothing of etcd.
func (g *EtcdGuard) Safe() error {
	_, err := g.lease()
	return err
}

// maxTakeTries bounds the compare-and-swap retries of one Take under
// contention (each retry means another host took a token meanwhile).
const maxTakeTries = 32

func (g *EtcdGuard) lease() (int64, error) {
	a := g.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.joined || !a.clk.Now().Before(a.safe) {
		return 0, fmt.Errorf("fleet %s: %w (joined %v, lease safe until %s)", a.o.Fleet, ErrCutOff, a.joined, a.safe.Format(time.RFC3339Nano))
	}
	return a.lease, nil
}

// consent is lease, then the storm brake: what a new fleet-wide action
// (Hold, Take) needs. A run already under way is not stopped by the brake
// (Safe checks the lease only): stopping it midway could leave its target
// worse than either finishing or never starting.
func (g *EtcdGuard) consent() (int64, error) {
	lease, err := g.lease()
	if err != nil {
		return 0, err
	}
	if s := g.a.Storm(); s.Engaged {
		return 0, fmt.Errorf("fleet %s: %w: %d of %d hosts suspect or lost (engaged above %g of the hosts)",
			g.a.o.Fleet, ErrStorm, s.Unhealthy, s.Hosts, s.Share)
	}
	return lease, nil
}

func (g *EtcdGuard) key(kind, target string) string {
	return fmt.Sprintf("%s/fleet/%s/%s/%s", g.a.o.Prefix, g.a.o.Fleet, kind, url.PathEscape(target))
}

// cooling is a target's cooldown as stored: the end and the host.
type cooling struct {
	Until time.Time `json:"until"`
	By    string    `json:"by"`
}

// Cool implements Cooler: the cooldown of target is a key
// <prefix>/fleet/<fleet>/cooldowns/<target> holding its end and this host,
// bound to a lease of d plus one second (which deletes it after); an
// existing cooldown that ends later is kept. Hold refuses the target until
// the end, on every host (compared with each host's own clock: clock skew
// between hosts shortens or lengthens it by that skew).
func (g *EtcdGuard) Cool(ctx context.Context, target string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	a := g.a
	cli := a.o.Etcd.Raw()
	k := g.key("cooldowns", target)
	c := cooling{Until: a.clk.Now().Add(d), By: a.o.Host}
	resp, err := cli.Get(ctx, k)
	if err != nil {
		return fmt.Errorf("fleet %s: read the cooldown of %s: %w", a.o.Fleet, target, err)
	}
	if len(resp.Kvs) > 0 {
		var old cooling
		if json.Unmarshal(resp.Kvs[0].Value, &old) == nil && !old.Until.Before(c.Until) {
			return nil
		}
	}
	gr, err := cli.Grant(ctx, int64(math.Ceil(d.Seconds()))+1)
	if err != nil {
		return fmt.Errorf("fleet %s: grant the lease of the cooldown of %s: %w", a.o.Fleet, target, err)
	}
	b, _ := json.Marshal(c)
	if _, err := cli.Put(ctx, k, string(b), clientv3.WithLease(gr.ID)); err != nil {
		return fmt.Errorf("fleet %s: write the cooldown of %s: %w", a.o.Fleet, target, err)
	}
	return nil
}

// Fenced implements Cooler: nil while target's lock is the one created
// under fence by this host's current lease. Checked right before each step:
// a lock lost with this host's lease (and perhaps taken by another host
// since) fails it, so the step is not run under a stale fence.
func (g *EtcdGuard) Fenced(ctx context.Context, target string, fence int64) error {
	lease, err := g.lease()
	if err != nil {
		return err
	}
	a := g.a
	resp, err := a.o.Etcd.Raw().Get(ctx, g.key("locks", target))
	if err != nil {
		return fmt.Errorf("fleet %s: read the lock of %s: %w", a.o.Fleet, target, err)
	}
	switch {
	case len(resp.Kvs) == 0:
		return fmt.Errorf("%s: the lock of fence %d is gone: %w", target, fence, ErrStaleFence)
	case resp.Kvs[0].CreateRevision != fence || resp.Kvs[0].Lease != lease:
		return fmt.Errorf("%s: the lock is now fence %d held by host %s, not fence %d: %w",
			target, resp.Kvs[0].CreateRevision, resp.Kvs[0].Value, fence, ErrStaleFence)
	}
	return nil
}

// Take implements Guard: the window's counter is one key, incremented by a
// transaction that compares its mod revision with the one read, so that two
// hosts never both take the last token. The counter is bound to a lease of
// two windows, which deletes it after its window.
func (g *EtcdGuard) Take(ctx context.Context, key string, max int, per time.Duration) (bool, string, error) {
	if _, err := g.consent(); err != nil {
		return false, "", err
	}
	a := g.a
	cli := a.o.Etcd.Raw()
	start, end := windowOf(a.clk.Now(), per)
	k := fmt.Sprintf("%s/fleet/%s/rate/%s/%d", a.o.Prefix, a.o.Fleet, url.PathEscape(key), start.Unix())
	for range maxTakeTries {
		resp, err := cli.Get(ctx, k)
		if err != nil {
			return false, "", fmt.Errorf("fleet %s: read the rate window %s: %w", a.o.Fleet, k, err)
		}
		n, rev, lease := 0, int64(0), clientv3.LeaseID(0)
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			n, _ = strconv.Atoi(string(kv.Value))
			rev, lease = kv.ModRevision, clientv3.LeaseID(kv.Lease)
		}
		if n >= max {
			return false, refusal(n, max, per, end), nil
		}
		if lease == 0 {
			gr, err := cli.Grant(ctx, int64(math.Ceil((2 * per).Seconds())))
			if err != nil {
				return false, "", fmt.Errorf("fleet %s: grant the lease of the rate window %s: %w", a.o.Fleet, k, err)
			}
			lease = gr.ID
		}
		tx, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, strconv.Itoa(n+1), clientv3.WithLease(lease))).Commit()
		if err != nil {
			return false, "", fmt.Errorf("fleet %s: take a token of %s: %w", a.o.Fleet, k, err)
		}
		if tx.Succeeded {
			return true, "", nil
		}
	}
	return false, "", fmt.Errorf("fleet %s: take a token of %s: %d conflicting transactions in a row", a.o.Fleet, k, maxTakeTries)
}

// Hold implements Guard: the lock is a key created only if absent, bound to
// this host's lease (a host that loses its lease loses its locks); its
// create revision is the fence, and release deletes it only while it is
// still that key.
func (g *EtcdGuard) Hold(ctx context.Context, target string) (int64, func(context.Context) error, error) {
	lease, err := g.consent()
	if err != nil {
		return 0, nil, err
	}
	a := g.a
	cli := a.o.Etcd.Raw()
	k, ck := g.key("locks", target), g.key("cooldowns", target)
	for range maxTakeTries {
		cr, err := cli.Get(ctx, ck)
		if err != nil {
			return 0, nil, fmt.Errorf("fleet %s: read the cooldown of %s: %w", a.o.Fleet, target, err)
		}
		crev := int64(0)
		if len(cr.Kvs) > 0 {
			crev = cr.Kvs[0].ModRevision
			var c cooling
			if err := json.Unmarshal(cr.Kvs[0].Value, &c); err != nil {
				return 0, nil, fmt.Errorf("fleet %s: the cooldown of %s is not readable (%w); refused", a.o.Fleet, target, err)
			}
			if a.clk.Now().Before(c.Until) {
				return 0, nil, &CoolingError{Target: target, Until: c.Until, By: c.By}
			}
		}
		// The lock is created only if absent and only if the cooldown is
		// still the one read (a run that ended meanwhile set a new one).
		tx, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0), clientv3.Compare(clientv3.ModRevision(ck), "=", crev)).
			Then(clientv3.OpPut(k, a.o.Host, clientv3.WithLease(clientv3.LeaseID(lease)))).
			Else(clientv3.OpGet(k)).Commit()
		if err != nil {
			return 0, nil, fmt.Errorf("fleet %s: lock %s: %w", a.o.Fleet, target, err)
		}
		if tx.Succeeded {
			fence := tx.Header.Revision
			return fence, func(ctx context.Context) error { return a.o.Etcd.DeleteIfRev(ctx, k, fence) }, nil
		}
		if r := tx.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			return 0, nil, fmt.Errorf("%s held by host %s: %w", target, r.Kvs[0].Value, ErrHeld)
		}
		// The cooldown changed between the read and the transaction: read it again.
	}
	return 0, nil, fmt.Errorf("fleet %s: lock %s: %d conflicting transactions in a row", a.o.Fleet, target, maxTakeTries)
}
