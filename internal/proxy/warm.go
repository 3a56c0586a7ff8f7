package proxy

import (
	"context"
	"time"
)

// Warm connections: an instance that becomes ready (a deploy's new
// instance — rolling's surge copy or replacement, the green set, a canary
// or its baseline — or any instance back from a restart) gets keep-alive
// connections from the fast data plane before SetBackend puts it in
// rotation, so that its first requests do not each pay the connect and the
// instance's accept of a new connection (docs/deploys.md, "Warm
// connections").
//
// Only connections: no request is sent on them. The readiness probe that
// made the instance ready has already run its HTTP server's code, the
// proxy does not know which path of the instance is free of side effects
// (the probe's may be on another port, need headers, or be an exec or tcp
// probe), and a request the proxy sends itself would count in nobody's
// figures yet load the instance at the moment it starts.
const (
	// warmMax bounds the connections opened to one instance: the most idle
	// connections the fast plane keeps to any other instance of the
	// service (what one instance needs at the present load), at least 1.
	warmMax = 8
	// warmTimeout bounds the whole warm-up of one instance: a connection
	// not made by then is left to the first request, as before.
	warmTimeout = 100 * time.Millisecond
)

// warmCount is how many connections to open to a new instance: the most
// idle connections kept to one of others (the addresses of the instances
// in rotation), within [1, warmMax].
func (u *upstreams) warmCount(others []string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 1
	for _, a := range others {
		if ic := u.byAddr[a]; ic != nil {
			n = max(n, len(ic.conns))
		}
	}
	return min(n, warmMax)
}

// closeAddr closes the idle connections to addr (an instance that left).
func (u *upstreams) closeAddr(addr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ic := u.byAddr[addr]; ic != nil {
		for _, c := range ic.conns {
			_ = c.Close()
		}
		delete(u.byAddr, addr)
	}
}

// warm opens connections to addr until n are idle there, within ctx, and
// keeps them idle; it returns how many it opened and the first dial error.
func (u *upstreams) warm(ctx context.Context, addr string, n int, now func() time.Time) (opened int, err error) {
	u.mu.Lock()
	have := 0
	if ic := u.byAddr[addr]; ic != nil {
		have = len(ic.conns)
	}
	u.mu.Unlock()
	for i := have; i < n; i++ {
		c, derr := u.dial(ctx, addr)
		if derr != nil {
			return opened, derr
		}
		u.put(c, now())
		opened++
	}
	return opened, nil
}

// warmBackend warms the fast plane's connections to instance id at addr
// when it is about to enter rotation (ready, and not ready before). It
// blocks for at most warmTimeout.
func (p *Proxy) warmBackend(id, addr string) {
	if !p.fast || addr == "" || p.pool.inRotation(id, addr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmTimeout)
	defer cancel()
	start := p.clock.Now()
	n := p.up.warmCount(p.pool.rotationAddrs(id))
	opened, err := p.up.warm(ctx, addr, n, p.clock.Now)
	if err != nil {
		p.log.Debug("warm connections to a ready instance", "instance", id, "opened", opened, "wanted", n, "err", err)
		return
	}
	p.log.Debug("warm connections to a ready instance", "instance", id, "opened", opened, "took", p.clock.Now().Sub(start))
}

// inRotation reports whether instance id is ready at addr and not draining.
func (p *pool) inRotation(id, addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.byID[id]
	return b != nil && b.ready && !b.draining && b.addr() == addr
}

// rotationAddrs returns the addresses of the instances in rotation other than id.
func (p *pool) rotationAddrs(except string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, b := range p.list {
		if b.id != except && b.ready && !b.draining {
			out = append(out, b.addr())
		}
	}
	return out
}

// addrOf returns instance id's address ("" for an unknown id).
func (p *pool) addrOf(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.byID[id]; b != nil {
		return b.addr()
	}
	return ""
}

// addrInRotation reports whether an instance in rotation is at addr.
func (p *pool) addrInRotation(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.list {
		if b.ready && !b.draining && b.addr() == addr {
			return true
		}
	}
	return false
}

// coolBackend closes the fast plane's idle connections to addr once no
// instance in rotation is there (it went unready, is draining, or left).
// A connection the warm-up opened and no request used is, to Go's
// net/http server, a new one that Shutdown waits up to 5 s for (it only
// closes idle connections, and a new one counts as idle after 5 s):
// closing them before the stop signal keeps the instance's graceful stop
// as quick as before the warm-up. Requests in flight finish on theirs.
func (p *Proxy) coolBackend(addr string) {
	if addr != "" && !p.pool.addrInRotation(addr) {
		p.up.closeAddr(addr)
	}
}
