// Package proxy is medic's health-aware proxy for one service: an HTTP
// reverse proxy (or, in tcp mode, a connection splicer) that sends traffic
// only to ready instances, balances by power of two choices over outstanding
// requests weighted by latency, ejects outliers, retries failed tries on
// another instance within a budget, sheds load beyond an adaptive
// concurrency limit, and rate-limits each client.
//
// Decisions live in pure values that take now (Outlier, Budget, Limiter,
// ClientLimits); Proxy is the shell that reads the clock and does the I/O.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/netguard"
	"github.com/medic-dev/medic/internal/rawconn"
)

// ErrUnknownInstance: the instance id is not in the pool.
var ErrUnknownInstance = errors.New("proxy: unknown instance")

// Options configure a Proxy.
type Options struct {
	// Service names the service in logs, metrics and Stats. Required.
	Service string
	// Config is the service's proxy section; unset fields take their defaults. Required.
	Config *config.Proxy
	// Clock for timeouts and decisions; nil means the wall clock.
	Clock clock.Clock
	// Logger receives ejections, returns, panic mode and drains; nil discards them.
	Logger *slog.Logger
	// AccessLog receives one line per request (tcp mode: per connection) with
	// message "access" and request_id, instance, attempts, status and
	// duration_seconds; give it a JSON handler. Nil means Logger.
	AccessLog *slog.Logger
	// Registerer receives the medic_proxy_* metrics; nil registers nothing.
	// Several proxies may share one Registerer.
	Registerer prometheus.Registerer
	// FDs is the process's descriptor reserve: client connections are
	// refused before they would take it. Nil: no reserve.
	FDs *netguard.FDs
	// Refuse, in tcp mode, answers a client that no instance could take
	// before its connection is closed: a refusal in the client's protocol
	// (the database listeners send PostgreSQL's 57P03 "cannot connect now",
	// on which libpq and pgx try the next host at once; a bare close makes
	// libpq give up). Nil closes the connection at once.
	Refuse func(client net.Conn)
	// Listen binds the proxy's listening socket; nil means net.Listen. The
	// agent passes the one function that hands sockets over on an upgrade.
	Listen func(network, addr string) (net.Listener, error)
	// OnClassBreaker sees every transition of a client class's own breaker,
	// in order, from Serve's goroutine (never from a request's): the agent
	// records them as events. Nil: they are only logged.
	OnClassBreaker func(ClassBreakerChange)
}

// ClassBreakerChange is a client class's breaker changing state.
type ClassBreakerChange struct {
	At               time.Time
	Service, Class   string
	From, To, Reason string
}

// classBreakerQueue bounds the transitions waiting for OnClassBreaker: a
// breaker changes state at most a few times per open_for, so a full queue
// means the consumer is stuck; the transition is then logged and dropped.
const classBreakerQueue = 64

// Proxy forwards one service's traffic. Create it with New, feed it
// instances with SetBackend, run it with Serve.
type Proxy struct {
	handover    atomic.Bool    // HandOver was called: the stop that follows drains for handover_drain
	refuseConn  func(net.Conn) // tcp mode: answers a client no instance took (Options.Refuse)
	service     string
	cfg         config.Proxy
	clock       clock.Clock
	log, access *slog.Logger
	m           *metrics
	pool        *pool
	ln          *netguard.Listener
	rp          *httputil.ReverseProxy
	transport   *http.Transport
	dialer      net.Dialer
	// overallBinds: timeout can end a request before its tries run out
	// (timeout < (retries.max+1) × try_timeout); otherwise no overall timer is needed.
	overallBinds bool

	// d decides where each request goes; the code here and in handler.go,
	// transport.go and tcp.go moves the bytes.
	d *Decision
	// classNames are the client classes by index; nil without classes.
	classNames []string
	// keysFile is clients.keys_file ("" without it); ReloadClientKeys reads it again.
	keysFile   string
	keysSigned bool // clients.signature is on: the keys file must be private
	// breakerCh carries class breaker transitions to Options.OnClassBreaker (nil without it).
	breakerCh      chan ClassBreakerChange
	onClassBreaker func(ClassBreakerChange)

	requests, errors, retries, shed, rateLimited atomic.Uint64
	served                                       atomic.Bool

	// tcp mode: the connections to instances on which nobody has spoken yet
	// (max_silent, silent.go), the ones closed while waiting for a place, and
	// when that was last logged (unix nanoseconds).
	silent       *silentGate
	silentClosed atomic.Uint64
	silentWarned atomic.Int64

	// The fast HTTP/1.1 plane (data_plane: fast): its upstream connections,
	// and the listener through which it hands connections to the net/http plane.
	fast    bool
	up      *upstreams
	handoff *Handoff
}

// New checks the configuration and binds the listen address, so that a port
// in use fails here rather than in Serve. The caller must call Serve, or
// Close if it never will.
func New(o Options) (*Proxy, error) {
	if o.Service == "" {
		return nil, errors.New("proxy: no service name")
	}
	if o.Config == nil {
		return nil, fmt.Errorf("proxy %s: no proxy configuration", o.Service)
	}
	cfg := *o.Config
	cfg.SetDefaults()
	if issues := cfg.Validate(); len(issues) > 0 {
		msgs := make([]string, len(issues))
		for i, is := range issues {
			msgs[i] = is.Field + ": " + is.Message
		}
		return nil, fmt.Errorf("proxy %s: invalid configuration: %s", o.Service, strings.Join(msgs, "; "))
	}
	m, err := newMetrics(o.Service, o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: register metrics: %w", o.Service, err)
	}
	p := &Proxy{
		service: o.Service, cfg: cfg, clock: clock.Or(o.Clock), m: m,
		log:        o.Logger,
		access:     o.AccessLog,
		d:          NewDecision(cfg),
		refuseConn: o.Refuse,
		dialer:     net.Dialer{Timeout: cfg.ConnectTimeout.D(), KeepAlive: 30 * time.Second},
		silent:     newSilentGate(cfg.MaxSilent),
	}
	p.pool = p.d.pool
	p.d.onBreaker = func(class string, ch breakerChange) {
		lvl := slog.LevelInfo
		if ch.to == BreakerOpen {
			lvl = slog.LevelWarn
		}
		p.log.Log(context.Background(), lvl, "client class breaker "+ch.to, "class", class, "from", ch.from, "reason", ch.reason)
		if p.breakerCh != nil {
			select {
			case p.breakerCh <- ClassBreakerChange{At: p.clock.Now(), Service: p.service, Class: class, From: ch.from, To: ch.to, Reason: ch.reason}:
			default:
				p.log.Warn("client class breaker transition not recorded: the queue is full", "class", class, "to", ch.to)
			}
		}
	}
	if o.OnClassBreaker != nil {
		p.breakerCh, p.onClassBreaker = make(chan ClassBreakerChange, classBreakerQueue), o.OnClassBreaker
	}
	p.classNames = p.d.ClassNames()
	if c := cfg.Clients; c.Enabled() && c.KeysFile != "" {
		keys, err := loadClientKeys(c)
		if err == nil {
			err = p.d.SetClientKeys(keys)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy %s: clients.keys_file: %w", o.Service, err)
		}
		p.keysFile, p.keysSigned = c.KeysFile, c.Signature != nil
	}
	p.fast = cfg.Mode == config.ProxyModeHTTP && cfg.DataPlane == config.ProxyDataPlaneFast
	p.up = newUpstreams(&p.dialer)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.access == nil {
		p.access = p.log
	}
	p.log = p.log.With("service", o.Service)
	p.overallBinds = cfg.Timeout.D() < time.Duration(*cfg.Retries.Max+1)*cfg.TryTimeout.D()
	if l := p.d.Limit(); l > 0 {
		m.limit().Set(float64(l))
	}
	p.transport = &http.Transport{
		DialContext:         p.dialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      &retrier{p: p, base: p.transport},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BufferPool:     bufferPool{},
		// FlushInterval 0: ReverseProxy already flushes at once for
		// text/event-stream and for bodies of unknown length (chunked streams).
	}
	listen := o.Listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: listen on %s: %w", o.Service, cfg.Listen, err)
	}
	// Every client connection holds one descriptor. In tcp mode it holds one
	// more to the instance, and on Linux each direction's io.Copy splices
	// through a pipe (two descriptors each): six in all.
	guard := netguard.Options{Name: "proxy " + o.Service, FDs: o.FDs, Logger: p.log, Clock: p.clock,
		Limits: netguard.Limits{MaxConns: cfg.Limits.MaxConnections, MaxPerSource: cfg.Limits.MaxPerSource}}
	if cfg.Mode == config.ProxyModeHTTP {
		guard.Refusal, guard.ClientSpeaksFirst = netguard.HTTP503, true
		guard.DeadlineJitter = cfg.Limits.DeadlineJitter() // header and idle timeouts ±10 % per connection, at most
	} else {
		// No listener jitter: it would move every read deadline set on the
		// connection, a refusal's (Options.Refuse: dbproxy's 2 s) included,
		// by up to a tenth of header_timeout (6 s at tcp mode's 60 s). The
		// silence wait beyond max_silent draws its own (silentPlace).
		guard.Cost = 6
	}
	p.ln = netguard.Wrap(ln, guard)
	return p, nil
}

// bufferPool recycles ReverseProxy's copy buffers; without it every
// response allocates 32 KiB, and the garbage collector becomes the proxy's
// main cost.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// Addr is the address the proxy listens on (useful with port 0).
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Close releases the listener of a proxy whose Serve was never called.
func (p *Proxy) Close() error {
	if p.served.Load() {
		return nil
	}
	return p.ln.Close()
}

// HandOver tells the proxy that the stop that follows is a handover to a new
// medic, which now accepts on the same listening socket: in-flight requests
// and established TCP connections get handover_drain (not drain_timeout) to
// end, and every instance stays a backend until then (the new medic
// supervises them).
func (p *Proxy) HandOver() { p.handover.Store(true) }

// drainFor is how long a stop waits for in-flight work before it cuts it.
func (p *Proxy) drainFor() time.Duration {
	if p.handover.Load() && p.cfg.HandoverDrain > 0 {
		return p.cfg.HandoverDrain.D()
	}
	return p.cfg.DrainTimeout.D()
}

// Serve proxies until ctx ends, then stops accepting and gives in-flight
// requests (and TCP connections) drain_timeout to finish before cutting
// them. It returns once everything it started has ended; nil after a clean
// stop. Serve may be called once.
func (p *Proxy) Serve(ctx context.Context) error {
	if !p.served.CompareAndSwap(false, true) {
		return fmt.Errorf("proxy %s: Serve called twice", p.service)
	}
	defer p.m.deleteService()
	defer p.transport.CloseIdleConnections()
	defer p.up.closeIdle(true)
	if p.breakerCh != nil {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() { defer close(done); p.reportBreakers(ctx) }()
	}
	if p.cfg.Mode == config.ProxyModeTCP {
		return p.serveTCP(ctx)
	}
	return p.serveHTTP(ctx)
}

func (p *Proxy) serveHTTP(ctx context.Context) error {
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	var handlers sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			p.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: p.cfg.Limits.HeaderTimeout.D(),
		IdleTimeout:       p.cfg.Limits.IdleTimeout.D(),
		ConnState:         p.ln.ConnState,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	var ln net.Listener = p.ln
	var fast *fasthttp.Server
	var fastConns connSet
	var fastErr chan error // nil without the fast plane: never ready
	if p.fast {
		fastErr = make(chan error, 1)
		p.handoff = NewHandoff(p.ln.Addr())
		ln = p.handoff
		fast = p.newFastServer()
		fast.ConnState = func(c net.Conn, st fasthttp.ConnState) {
			fastConns.track(c, st)
			p.ln.ConnState(unwrapRaw(c), httpConnState(st)) // the connection guard may evict idle connections
		}
		h := fast.Handler
		fast.Handler = func(c *fasthttp.RequestCtx) {
			handlers.Add(1)
			defer handlers.Done()
			h(c)
		}
		go func() { fastErr <- fast.Serve(rawListener{p.ln}) }()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	p.log.Info("proxy serving", "listen", p.ln.Addr().String(), "mode", p.cfg.Mode, "data_plane", p.cfg.DataPlane)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	case serveErr = <-fastErr:
		if serveErr == nil {
			serveErr = errors.New("fast data plane stopped")
		}
		fastErr <- nil
	}
	sctx, cancel := context.WithCancel(context.Background())
	drain := p.drainFor()
	t := p.clock.AfterFunc(drain, cancel)
	drained := true
	if fast != nil {
		if err := fast.ShutdownWithContext(sctx); err != nil {
			drained = false
			fastConns.closeAll()
		}
	}
	// With the fast plane, this closes the hand-off listener too; a
	// hand-off still waiting is then refused and its connection closed.
	if err := srv.Shutdown(sctx); err != nil {
		drained = false
		_ = srv.Close()
	}
	if !drained {
		p.log.Warn("proxy drain timed out; cutting in-flight requests", "drain", drain, "handover", p.handover.Load())
	}
	t.Stop()
	cancel()
	cancelBase() // ends upgraded (WebSocket) connections, which Shutdown does not track
	handlers.Wait()
	if serveErr == nil {
		serveErr = <-errc
	}
	if fastErr != nil {
		<-fastErr // after Shutdown, its error only says the listener is closed
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("proxy %s: serve %s: %w", p.service, p.ln.Addr(), serveErr)
	}
	return nil
}

// connSet tracks the fast plane's client connections, so that a drain
// that runs out of time can cut them (fasthttp's Shutdown only waits).
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *connSet) track(c net.Conn, st fasthttp.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case fasthttp.StateNew:
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(s.conns, c)
	}
}

// httpConnState is st as net/http names it.
func httpConnState(st fasthttp.ConnState) http.ConnState {
	switch st {
	case fasthttp.StateActive:
		return http.StateActive
	case fasthttp.StateIdle:
		return http.StateIdle
	case fasthttp.StateHijacked:
		return http.StateHijacked
	case fasthttp.StateClosed:
		return http.StateClosed
	}
	return http.StateNew
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// SetBackend adds or updates instance id at addr (host:port). It is called on
// readiness edges: a ready instance is in rotation, a not-ready one is not
// (and the fast plane's idle connections to it are closed, warm.go).
// An instance becoming ready is back at once even if it was ejected or
// draining, because the readiness probe vouches for it. Before it enters
// rotation, the fast plane opens its keep-alive connections to it (warm.go;
// at most warmTimeout).
func (p *Proxy) SetBackend(id, addr string, ready bool) {
	p.m.addInstance(id)
	if ready {
		p.warmBackend(id, addr)
	}
	p.emit(p.d.Set(id, addr, ready))
	if !ready {
		p.coolBackend(addr)
	}
}

// SetRemoteBackend is SetBackend for an instance on another host of the
// fleet (fleet discovery): it takes a try only when no local instance in
// rotation can, and leaves with RemoveBackend when its host's
// publication does (its lease expired) or with the proxy's own passive
// checks, whichever comes first.
func (p *Proxy) SetRemoteBackend(id, addr string, ready bool) {
	p.m.addInstance(id)
	p.emit(p.d.SetRemote(id, addr, ready))
}

// RemoveBackend forgets instance id, deletes its metric series, closes the
// fast plane's idle connections to it and, in tcp mode, cuts its open
// connections. HTTP requests in flight on it run on.
func (p *Proxy) RemoveBackend(id string) {
	addr := p.pool.addrOf(id)
	found, conns := p.pool.remove(id)
	if found {
		p.coolBackend(addr)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	if found {
		p.m.deleteInstance(id)
		p.log.Info("instance removed from proxy", "instance", id, "connections_cut", len(conns)/2)
	}
}

// Drain takes instance id out of rotation at once (retries avoid it too)
// and waits until its in-flight requests (tcp mode: connections) have ended,
// or ctx ends. It returns ErrUnknownInstance for an id not in the pool, and
// ctx's error if the wait was cut short. The instance stays out of rotation
// until SetBackend reports it ready again.
func (p *Proxy) Drain(ctx context.Context, id string) error {
	done, ok := p.pool.drain(id)
	if !ok {
		return fmt.Errorf("drain %s/%s: %w", p.service, id, ErrUnknownInstance)
	}
	p.coolBackend(p.pool.addrOf(id))
	p.log.Info("draining instance", "instance", id)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain %s/%s: in-flight work remains: %w", p.service, id, ctx.Err())
	}
}

// CloseConnections cuts every open TCP connection to instance id (database
// fencing: clients must reconnect, and will reach another instance). It
// returns how many connections were cut; in http mode there are none.
func (p *Proxy) CloseConnections(id string) int {
	conns := p.pool.cut(id)
	for _, c := range conns {
		_ = c.Close()
	}
	n := len(conns) / 2
	if n > 0 {
		p.log.Info("cut connections", "instance", id, "connections", n)
	}
	return n
}

// SetFault injects f into the traffic to instance id until ClearFault. The
// fault is kept by id, so it also applies to an instance added later
// under that id. Invalid fractions are clamped to 0..1.
func (p *Proxy) SetFault(id string, f Fault) {
	f.ErrorRate = min(max(f.ErrorRate, 0), 1)
	f.ResetRate = min(max(f.ResetRate, 0), 1)
	p.pool.mu.Lock()
	p.pool.faults[id] = f
	p.pool.mu.Unlock()
	p.log.Info("fault injected", "instance", id, "latency", f.Latency.D(), "error_rate", f.ErrorRate, "reset_rate", f.ResetRate)
}

// ClearFault removes the fault on instance id, if any.
func (p *Proxy) ClearFault(id string) {
	p.pool.mu.Lock()
	_, had := p.pool.faults[id]
	delete(p.pool.faults, id)
	p.pool.mu.Unlock()
	if had {
		p.log.Info("fault cleared", "instance", id)
	}
}

// reportBreakers hands class breaker transitions to OnClassBreaker until
// ctx ends, then the ones still queued.
func (p *Proxy) reportBreakers(ctx context.Context) {
	for {
		select {
		case ch := <-p.breakerCh:
			p.onClassBreaker(ch)
		case <-ctx.Done():
			for {
				select {
				case ch := <-p.breakerCh:
					p.onClassBreaker(ch)
				default:
					return
				}
			}
		}
	}
}

// emit logs pool events and counts ejections.
func (p *Proxy) emit(evs []event) {
	for _, e := range evs {
		switch e.kind {
		case "ejected":
			p.m.ejection(e.instance)
			p.log.Warn("instance ejected", "instance", e.instance, "for", e.ejection, "reason", e.reason)
		case "returned":
			p.log.Info("instance returned to rotation", "instance", e.instance, "reason", e.reason)
		case "panic":
			p.log.Warn("proxy panic mode", "reason", e.reason)
		default:
			p.log.Info("proxy "+e.kind, "instance", e.instance, "reason", e.reason)
		}
	}
}

// rawListener yields its connections with raw reads and writes
// (internal/rawconn): the fast plane's client side.
type rawListener struct{ *netguard.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return rawconn.Wrap(c, netguard.Unwrap(c)), nil
}

// unwrapRaw is the connection rawListener wrapped (the guard's own).
func unwrapRaw(c net.Conn) net.Conn {
	if r, ok := c.(*rawconn.Conn); ok {
		return r.NetConn()
	}
	return c
}
