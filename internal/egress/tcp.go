package egress

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// tcpDep splices each connection of an instance to the dependency (a
// database, a cache): a connection slot from the bulkhead (waiting at most
// queue_timeout), the breaker's permit, a connect bounded by timeout, then
// bytes both ways until either side closes or nothing moves for
// idle_timeout. The breaker counts failed connects.
type tcpDep struct {
	*dependency
	cb circuitbreaker.CircuitBreaker[any]
	bh bulkhead.Bulkhead[any]

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open client and upstream connections, closed on stop
	wg    sync.WaitGroup
}

func newTCP(d *dependency) *tcpDep {
	c := d.cfg
	return &tcpDep{
		dependency: d,
		cb:         newBreaker[any](c.Breaker, func(_ any, err error) bool { return err != nil }, d.changed),
		bh:         bulkhead.NewBuilder[any](uint(c.Bulkhead.MaxConcurrent)).WithMaxWaitTime(c.Bulkhead.QueueTimeout.D()).Build(),
		conns:      map[net.Conn]struct{}{},
	}
}

// serve accepts until ctx ends, then cuts every connection and waits for them.
func (t *tcpDep) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		t.mu.Lock()
		for c := range t.conns {
			c.Close()
		}
		t.conns = nil
		t.mu.Unlock()
	})
	defer stop()
	defer t.wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !t.track(c) {
			c.Close()
			return nil
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(c)
			t.handle(ctx, c)
		}()
	}
}

// track registers a connection to close on stop; false once stopping.
func (t *tcpDep) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpDep) untrack(c net.Conn) {
	c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *tcpDep) handle(ctx context.Context, c net.Conn) {
	start := t.clock.Now()
	t.touch(start)
	since := func() time.Duration { return t.clock.Now().Sub(start) }
	if !t.admit() {
		t.done(OutcomeShed, since())
		return
	}
	defer t.release()
	qctx, cancel := context.WithTimeout(ctx, t.cfg.Bulkhead.QueueTimeout.D())
	err := t.bh.AcquirePermit(qctx)
	cancel()
	if err != nil {
		t.done(OutcomeShed, since())
		return
	}
	defer t.bh.ReleasePermit()
	if !t.cb.TryAcquirePermit() {
		t.done(OutcomeOpen, since())
		return
	}
	up, err := t.dial(ctx)
	if err != nil {
		t.cb.RecordError(err)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			t.done(OutcomeTimeout, since())
		} else {
			t.done(OutcomeError, since())
		}
		return
	}
	t.cb.RecordSuccess()
	t.done(OutcomeOK, since())
	if !t.track(up) {
		up.Close()
		return
	}
	defer t.untrack(up)
	splice(c, up, t.cfg.IdleTimeout.D())
}

// dial connects to the dependency within timeout, through the injected fault.
func (t *tcpDep) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout.D())
	defer cancel()
	if f := t.fault.Load(); f != nil {
		if f.Latency > 0 {
			tm := t.clock.NewTimer(f.Latency)
			select {
			case <-tm.C():
			case <-ctx.Done():
				tm.Stop()
				return nil, ctx.Err()
			}
		}
		if f.Down || f.fails() {
			return nil, errInjectedDown
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", t.cfg.Address)
}

// splice copies both ways until one side ends or the connection is idle
// (no byte either way) for idle; then both are closed.
func splice(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	copyDir := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is busy: not idle
				}
				break
			}
		}
		// Half-close so the peer sees the end; the other direction may still finish.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	done := make(chan struct{})
	go func() {
		copyDir(b, a)
		close(done)
	}()
	copyDir(a, b)
	<-done
	a.Close()
	b.Close()
}

func (t *tcpDep) Stats() Stats { return t.stats("tcp", t.cfg.Address) }
