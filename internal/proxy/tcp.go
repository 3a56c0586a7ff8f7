package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/netguard"
)

// errFaultClosed: an injected fault closed the client's connection.
var (
	errFaultClosed     = errors.New("proxy: connection closed (injected fault)")
	errCutWhileDialing = errors.New("proxy: connections cut or instance removed while connecting")
)

// serveTCP accepts connections and splices each to one ready instance until
// ctx ends; then it waits drain_timeout for open connections and cuts the rest.
func (p *Proxy) serveTCP(ctx context.Context) error {
	connCtx, cutAll := context.WithCancel(context.WithoutCancel(ctx))
	defer cutAll()
	// Connections still waiting for a place (max_silent) are closed when the
	// proxy stops, but not on a handover: the old medic keeps them, as it
	// keeps established ones, until they speak (then it connects and pipes
	// them) or their silence deadline passes; cutAll ends them at the latest.
	waitCtx, wakeWaiting := context.WithCancel(connCtx)
	defer wakeWaiting()
	stop := context.AfterFunc(ctx, func() { _ = p.ln.Close() })
	defer stop()
	p.log.Info("proxy serving", "listen", p.ln.Addr().String(), "mode", p.cfg.Mode)

	var wg sync.WaitGroup
	var acceptErr error
	var delay time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				acceptErr = err
				break
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("proxy accept failed; retrying", "error", err, "in", delay)
			t := p.clock.NewTimer(delay)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.handleConn(waitCtx, connCtx, c)
		}()
	}

	if !p.handover.Load() {
		wakeWaiting()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if p.handover.Load() {
		p.log.Info("handed over: the new medic accepts; established connections keep piping until they end", "connections", len(p.pool.allConns())/2, "at_most", p.drainFor())
	}
	t := p.clock.NewTimer(p.drainFor())
	select {
	case <-done:
	case <-t.C():
		cutAll() // before the snapshot: a connection tracked later sees ctx done
		conns := p.pool.allConns()
		p.log.Warn("proxy drain timed out; cutting connections", "connections", len(conns)/2)
		for _, c := range conns {
			_ = c.Close()
		}
		<-done
	}
	t.Stop()
	if acceptErr != nil {
		return fmt.Errorf("proxy %s: accept on %s: %w", p.service, p.ln.Addr(), acceptErr)
	}
	return nil
}

// handleConn connects the client to an instance, trying others when the
// connection cannot be opened (nothing was sent, so this is always safe),
// then copies both ways until both sides are done. Beyond max_silent it
// first waits for the client's first byte or a place (silent.go); waitCtx
// ending (the proxy stopping, not handing over) closes a connection still waiting.
func (p *Proxy) handleConn(waitCtx, ctx context.Context, client net.Conn) {
	defer client.Close()
	slot, ok := p.silentPlace(waitCtx, client)
	if !ok {
		return
	}
	var spoke func() // gives the place back once either side has sent a byte or the connection ended
	if slot {
		var once sync.Once
		spoke = func() { once.Do(p.silent.release) }
		defer spoke()
	}
	start := p.clock.Now()
	id := requestID("")
	p.requests.Add(1)
	p.m.requests().Inc()
	var tried []*backend
	var lastErr error
	for len(tried) <= *p.cfg.Retries.Max {
		now := p.clock.Now()
		b, fault, evs := p.pool.pick(now, tried, len(tried) == 0)
		p.emit(evs)
		if b == nil {
			break
		}
		if len(tried) > 0 {
			p.retries.Add(1)
			p.m.retries().Inc()
		}
		tried = append(tried, b)
		gen := p.pool.cutGen(b)
		up, err := p.dialTCP(ctx, b, fault, client)
		elapsed := p.clock.Now().Sub(now)
		p.m.try(b, err != nil, elapsed)
		if err != nil {
			if ctx.Err() == nil && !netguard.OwnShortage(err) { // medic's own shortage is not the instance's fault
				evs := p.pool.record(b, p.clock.Now(), false, 0, -1, 0)
				for i := range evs {
					if evs[i].kind == "ejected" { // name what the last failed connection met
						evs[i].reason += "; last: " + err.Error()
					}
				}
				p.emit(evs)
			} else {
				p.pool.abandon(b)
			}
			p.pool.done(b)
			lastErr = err
			if errors.Is(err, errFaultClosed) || ctx.Err() != nil {
				break
			}
			continue
		}
		p.emit(p.pool.record(b, p.clock.Now(), true, elapsed, -1, 0))
		if !p.pool.track(b, client, up, gen) {
			// Cut or removed while we dialed: another instance, or none.
			_ = up.Close()
			p.pool.done(b)
			lastErr = fmt.Errorf("instance %s: %w", b.id, errCutWhileDialing)
			continue
		}
		if ctx.Err() == nil {
			in, out := splice(client, up, spoke)
			p.logConn(id, client, b.id, len(tried), start, in, out, nil)
		}
		_ = up.Close()
		p.pool.untrack(b, client)
		p.pool.done(b)
		return
	}
	if lastErr == nil {
		lastErr = ErrNoInstance
	}
	p.errors.Add(1)
	p.m.errors().Inc()
	p.logConn(id, client, "", len(tried), start, 0, 0, lastErr)
	if p.refuseConn != nil && ctx.Err() == nil {
		p.refuseConn(client)
	}
}

// silentPlace decides whether client may be connected to an instance now:
// at once while fewer than max_silent connections to instances are silent
// (slot: it holds a place until either side speaks), else once its client
// speaks or it is handed a place. ok is false when the client left or stayed
// silent past its deadline (header_timeout, ±10 % so that a flood that
// arrived together is not closed, and redialled, together) or the proxy is
// stopping; the connection is then closed.
func (p *Proxy) silentPlace(waitCtx context.Context, client net.Conn) (slot, ok bool) {
	if p.silent.tryAcquire() {
		return true, true
	}
	// The order matters: the deadline first (a stop's or a release's wake-up
	// set before it would be overwritten, and the connection would wait out
	// its silence), then the stop's wake-up. The deadline moves by an offset
	// of the connection's own within ±10 %, so that a flood's connections,
	// accepted together, are not closed (and redialled) together.
	silence := p.cfg.Limits.HeaderTimeout.D()
	silence += rand.N(silence/5+1) - silence/10
	_ = client.SetReadDeadline(time.Now().Add(silence)) // a socket's deadline is wall time
	fired := make(chan struct{})
	stop := context.AfterFunc(waitCtx, func() {
		defer close(fired)
		_ = client.SetReadDeadline(aLongTimeAgo)
	})
	slot, err := p.silent.waitForPlace(client)
	stopped := !stop()
	if stopped {
		<-fired // its deadline may have landed after waitForPlace cleared it
	}
	if err == nil {
		if stopped { // connected as the proxy stops: it pipes as established ones do, without the stop's wake-up
			_ = client.SetReadDeadline(time.Time{})
		}
		return slot, true
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !stopped {
		n := p.silentClosed.Add(1)
		p.warnSilent(n)
	}
	return false, false
}

// warnSilent logs the silent connections closed, at most once per netguard.LogEvery.
func (p *Proxy) warnSilent(total uint64) {
	now := p.clock.Now().UnixNano()
	last := p.silentWarned.Load()
	if now-last < int64(netguard.LogEvery) || !p.silentWarned.CompareAndSwap(last, now) {
		return
	}
	held, waiting := p.silent.counts()
	p.log.Warn("closed client connections that sent nothing while max_silent connections to instances were silent "+
		"(a flood of idle connections, or a protocol whose server speaks first under more than max_silent new connections at once: raise proxy.max_silent)",
		"service", p.service, "closed_total", total, "silent", held, "waiting", waiting, "max_silent", p.cfg.MaxSilent)
}

// dialTCP applies the instance's fault, then opens a connection to it.
func (p *Proxy) dialTCP(ctx context.Context, b *backend, f Fault, client net.Conn) (net.Conn, error) {
	if d := f.Latency.D(); d > 0 {
		t := p.clock.NewTimer(d)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	switch f.roll() {
	case faultError:
		return nil, errFaultClosed
	case faultReset:
		if tc, ok := netguard.Unwrap(client).(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST
		}
		return nil, errFaultClosed
	}
	up, err := p.dialer.DialContext(ctx, "tcp", b.addr())
	if err != nil {
		return nil, fmt.Errorf("connect to %s at %s: %w", b.id, b.addr(), err)
	}
	return up, nil
}

// splice copies a→b and b→a until both directions end, passing half-closes
// on. On Linux, io.Copy between TCP connections uses splice(2). spoke, when
// not nil, is called once either side has a byte to send or has ended.
func splice(a, b net.Conn, spoke func()) (ab, ba int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ba = copyHalf(a, b, spoke)
	}()
	ab = copyHalf(b, a, spoke)
	wg.Wait()
	return ab, ba
}

func copyHalf(dst, src net.Conn, spoke func()) int64 {
	if spoke != nil {
		_, _ = readable(src) // data, an end or an error: the connection is no longer silent
		spoke()
	}
	// The guard's wrapper would hide the TCP connections from splice(2).
	n, err := io.Copy(netguard.Unwrap(dst), netguard.Unwrap(src))
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return n
	}
	// An error on either side (or no half-close): end both directions.
	_ = dst.Close()
	_ = src.Close()
	return n
}

// logAccess writes one access line. The record carries no caller (pc 0):
// slog's Logger looks one up with runtime.Callers for every record, which
// the JSON handler then does not print.
func (p *Proxy) logAccess(ctx context.Context, attrs []slog.Attr) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "access", 0)
	r.AddAttrs(attrs...)
	_ = p.access.Handler().Handle(ctx, r)
}

func (p *Proxy) logConn(id string, client net.Conn, instance string, attempts int, start time.Time, in, out int64, err error) {
	ctx := context.Background()
	if !p.access.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("service", p.service),
		slog.String("request_id", id),
		slog.String("client", client.RemoteAddr().String()),
		slog.String("instance", instance),
		slog.Int("attempts", attempts),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Float64("duration_seconds", p.clock.Now().Sub(start).Seconds()),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	p.logAccess(ctx, attrs)
}
