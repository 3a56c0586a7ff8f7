package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/valyala/fasthttp"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// The fast data plane of an HTTP dependency listener: the ingress proxy's
// (internal/proxy/fast.go) fasthttp server with its hand-off of the requests
// it does not take to the net/http listener, and fasthttp's HostClient to the
// dependency — pooled buffers and connections, the request and the answer
// read and written on the handler's goroutine, nothing allocated per call on
// the hot path. The same failsafe-go breaker, bulkhead and retry budget as
// the net/http listener's (http.go) guard each call, used as primitives
// (permits and recorded results) rather than through a failsafe execution,
// which costs a context, a goroutine-safe result and several allocations
// per try.
//
// The net/http listener (ServeHTTP) takes, on the same connection until it
// closes, what the fast plane does not: every call of a `kind: model`
// dependency (a model provider's SDK asks for a streamed answer in its
// request body, not always with an Accept header, and such a stream must
// not be bounded by the timeout), upgrades, event streams (Accept:
// text/event-stream: their answers must stream, the timeout bounding only
// the response header), chunked request bodies and bodies over max_body
// (413); and every call when HTTP_PROXY or HTTPS_PROXY from the environment
// applies to the url (only net/http's Transport goes through it). On the fast plane the timeout bounds each try's whole answer, body
// included (at most max_body, else 502).

// fastReadBuffer bounds a request header on the fast plane (as the ingress
// proxy's; 431 above it). fastWriteBuffer is the client side's write buffer.
const (
	fastReadBuffer  = 32 << 10
	fastWriteBuffer = 16 << 10
)

// retryPermits are the methods of failsafe-go's budget that its retry
// policy uses; the fast plane's retries take the same permits.
type retryPermits interface {
	RecordExecution()
	ReleaseExecution()
	TryAcquirePermit() bool
	ReleasePermit()
}

// newFastClient is the fast plane's client to the dependency: TLS for https,
// at most max_concurrent connections (the bulkhead's size), the timeout
// applied per try by DoTimeout through the connection's deadlines.
func newFastClient(h *httpDep) *fasthttp.HostClient {
	c := h.cfg
	addr := h.target.Host
	tls := h.target.Scheme == "https"
	if h.target.Port() == "" {
		if tls {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	return &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     tls,
		MaxConns:                  c.Bulkhead.MaxConcurrent,
		MaxConnWaitTimeout:        c.Bulkhead.QueueTimeout.D(),
		MaxIdleConnDuration:       90 * time.Second,
		MaxResponseBodySize:       int(c.MaxBody),
		ReadBufferSize:            fastReadBuffer,
		WriteBufferSize:           fastWriteBuffer,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		MaxIdemponentCallAttempts: 2, // one fresh connection for a kept one the dependency closed while idle, as net/http's Transport
	}
}

// serveFast is the fast plane's handler.
func (h *httpDep) serveFast(ctx *fasthttp.RequestCtx) {
	rh := &ctx.Request.Header
	if h.slowOnly || rh.ConnectionUpgrade() || bytes.Contains(rh.Peek("Accept"), []byte("text/event-stream")) ||
		rh.ContentLength() == -1 || rh.ContentLength() > int(h.cfg.MaxBody) {
		h.handoff.Give(ctx)
		return
	}
	now := h.clock.Now()
	h.touch(now)
	key := h.fastKey(ctx) // before the rewrite: the call as the application made it
	if !h.admit() {
		h.fastAnswer(ctx, key, OutcomeShed, http.StatusServiceUnavailable, now)
		return
	}
	defer h.release()
	if err := h.bh.AcquirePermitWithMaxWait(context.Background(), h.cfg.Bulkhead.QueueTimeout.D()); err != nil {
		h.fastAnswer(ctx, key, OutcomeShed, http.StatusServiceUnavailable, now)
		return
	}
	defer h.bh.ReleasePermit()

	_ = ctx.Request.Body() // at most max_body (above): read once, sent again by each retry
	method := rh.Method()
	h.rewrite(ctx)

	tries := 0
	if h.retryMax > 0 && (idempotent(string(method)) || len(rh.Peek("Idempotency-Key")) > 0) {
		tries = h.retryMax
		h.budget.RecordExecution()
		defer h.budget.ReleaseExecution()
	}
	var err error
	for attempt := 0; ; attempt++ {
		if !h.cb.TryAcquirePermit() {
			err = circuitbreaker.ErrOpen
			break
		}
		err = h.fastTry(ctx)
		failed := err != nil || ctx.Response.StatusCode() >= 500
		if failed {
			h.cb.RecordFailure()
		} else {
			h.cb.RecordSuccess()
		}
		if !failed || attempt >= tries {
			break
		}
		if !h.budget.TryAcquirePermit() {
			break // over the budget: the last failure stands
		}
		h.retries.Add(1)
		h.wait(h.backoff(attempt))
		h.budget.ReleasePermit()
	}
	h.fastResult(ctx, err, key, now)
}

// backoff is the wait before retry attempt+1: backoff doubling up to 16×,
// spread by jitter (as the net/http listener's retry policy).
func (h *httpDep) backoff(attempt int) time.Duration {
	b := h.cfg.Retries.Backoff.D()
	d := min(b<<min(attempt, 4), 16*b)
	if j := *h.cfg.Retries.Jitter; j > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * j * float64(d))
	}
	return d
}

func (h *httpDep) wait(d time.Duration) {
	if d <= 0 {
		return
	}
	t := h.clock.NewTimer(d)
	<-t.C()
}

// fastTry is one try: the injected fault, then the dependency, within the
// timeout. The answer is in ctx.Response when err is nil.
func (h *httpDep) fastTry(ctx *fasthttp.RequestCtx) error {
	timeout := h.cfg.Timeout.D()
	if f := h.fault.Load(); f != nil {
		if f.Latency > 0 {
			if f.Latency >= timeout {
				h.wait(timeout)
				return fasthttp.ErrTimeout
			}
			h.wait(f.Latency)
			timeout -= f.Latency
		}
		if f.Down {
			return errInjectedDown
		}
		if f.fails() {
			res := &ctx.Response
			res.Reset()
			res.SetStatusCode(http.StatusInternalServerError)
			res.Header.SetContentType("text/plain")
			res.SetBodyString("injected fault\n")
			return nil
		}
	}
	err := h.fast.DoTimeout(&ctx.Request, &ctx.Response, timeout)
	if err == nil {
		for _, k := range proxy.HopHeaders {
			ctx.Response.Header.DelBytes(k)
		}
	}
	return err
}

// dropRequest: the hop-by-hop headers (proxy.HopHeaders) are not forwarded
// either way (RFC 9110 §7.6.1), as net/http's reverse proxy drops them;
// X-Forwarded-* of the application are dropped too, as its Rewrite hook does.
var dropRequest = append([][]byte{[]byte("Expect"), []byte("X-Forwarded-For"), []byte("X-Forwarded-Host"), []byte("X-Forwarded-Proto")},
	proxy.HopHeaders...)

// rewrite points the application's request at the dependency: its path
// under the url's path, the url's query before its own, the dependency's
// Host, and the hop-by-hop headers dropped (headers named by Connection too).
func (h *httpDep) rewrite(ctx *fasthttp.RequestCtx) {
	rh := &ctx.Request.Header
	if conn := rh.Peek("Connection"); len(conn) > 0 {
		for _, name := range bytes.Split(conn, []byte(",")) {
			if name = bytes.TrimSpace(name); len(name) > 0 {
				rh.DelBytes(name)
			}
		}
	}
	for _, k := range dropRequest {
		rh.DelBytes(k)
	}
	if h.pathPrefix != "" || h.target.RawQuery != "" {
		uri := rh.RequestURI()
		path, query, hasQuery := bytes.Cut(uri, []byte("?"))
		var b []byte
		b = append(b, h.pathPrefix...)
		if len(path) == 0 || path[0] != '/' {
			b = append(b, '/')
		}
		b = append(b, path...)
		switch {
		case h.target.RawQuery != "" && hasQuery && len(query) > 0:
			b = append(append(append(append(b, '?'), h.target.RawQuery...), '&'), query...)
		case h.target.RawQuery != "":
			b = append(append(b, '?'), h.target.RawQuery...)
		case hasQuery:
			b = append(append(b, '?'), query...)
		}
		ctx.Request.SetRequestURIBytes(b)
	}
	ctx.Request.SetHost(h.target.Host)
	rh.SetHost(h.target.Host)
}

// fastKey is the last-good key of the call (method and request target as
// the application sent them), or "" when its answers are not kept.
func (h *httpDep) fastKey(ctx *fasthttp.RequestCtx) string {
	if !h.fb.keeps(string(ctx.Request.Header.Method())) {
		return ""
	}
	return string(ctx.Request.Header.Method()) + " " + string(ctx.Request.Header.RequestURI())
}

// fastResult answers the application after the last try.
func (h *httpDep) fastResult(ctx *fasthttp.RequestCtx, err error, key string, start time.Time) {
	now := h.clock.Now()
	res := &ctx.Response
	switch {
	case err == nil:
	case errors.Is(err, circuitbreaker.ErrOpen):
		h.fastAnswer(ctx, key, OutcomeOpen, http.StatusServiceUnavailable, start)
	case errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || isTimeout(err):
		h.fastAnswer(ctx, key, OutcomeTimeout, http.StatusGatewayTimeout, start)
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		h.fastAnswer(ctx, key, OutcomeShed, http.StatusServiceUnavailable, start)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		h.done(OutcomeError, now.Sub(start))
		h.fastError(ctx, http.StatusBadGateway, fmt.Sprintf("medic: dependency %s/%s: response body exceeds max_body %d", h.service, h.name, h.cfg.MaxBody))
	default:
		h.fastAnswer(ctx, key, OutcomeError, http.StatusBadGateway, start)
	}
	if err != nil {
		return
	}
	switch {
	case res.StatusCode() >= 500 && h.fb != nil:
		h.fastAnswer(ctx, key, OutcomeError, res.StatusCode(), start)
	default:
		outcome := OutcomeOK
		if res.StatusCode() >= 500 {
			outcome = OutcomeError
		}
		h.done(outcome, now.Sub(start))
		if key != "" && res.StatusCode()/100 == 2 && len(res.Body()) <= lastGoodMaxBody {
			hdr := http.Header{}
			for k, v := range res.Header.All() {
				hdr.Add(string(k), string(v))
			}
			hdr.Del("Content-Length")
			h.fb.store(key, answer{status: res.StatusCode(), header: hdr, body: bytes.Clone(res.Body()), at: now})
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fastAnswer writes the fallback, or the status with the reason (answer's
// twin for the fast plane).
func (h *httpDep) fastAnswer(ctx *fasthttp.RequestCtx, key, outcome string, status int, start time.Time) {
	now := h.clock.Now()
	defer func() { h.done(outcome, h.clock.Now().Sub(start)) }()
	res := &ctx.Response
	if a, kind, ok := h.fb.pick(key, now); ok {
		h.fallback.Add(1)
		h.met.fellBack(h.service, h.name, kind)
		res.Reset()
		res.Header.SetNoDefaultContentType(true)
		for k, vs := range a.header {
			for _, v := range vs {
				res.Header.Add(k, v)
			}
		}
		res.Header.Set(DependencyHeader, outcome)
		res.Header.Set(FallbackHeader, kind)
		res.SetStatusCode(a.status)
		res.SetBody(a.body)
		return
	}
	h.fastError(ctx, status, fmt.Sprintf("medic: dependency %s/%s: %s", h.service, h.name, outcome))
	res.Header.Set(DependencyHeader, outcome)
	switch outcome {
	case OutcomeOpen:
		res.Header.Set("Retry-After", strconv.Itoa(max(1, int(h.cb.RemainingDelay().Seconds()))))
	case OutcomeShed:
		res.Header.Set("Retry-After", "1")
	}
}

// fastError writes an error answer as http.Error does.
func (h *httpDep) fastError(ctx *fasthttp.RequestCtx, status int, msg string) {
	res := &ctx.Response
	res.Reset()
	res.Header.SetNoDefaultContentType(true)
	res.SetStatusCode(status)
	res.Header.SetContentType("text/plain; charset=utf-8")
	res.Header.Set("X-Content-Type-Options", "nosniff")
	res.SetBodyString(msg + "\n")
}

// newFastServer is the fast plane's server, guarded like the net/http one.
func (h *httpDep) newFastServer(lim config.Limits) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h.serveFast,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                false,
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true,
		MaxRequestBodySize:           int(h.cfg.MaxBody),
		ReadBufferSize:               fastReadBuffer,
		WriteBufferSize:              fastWriteBuffer,
		ReadTimeout:                  lim.HeaderTimeout.D(),
		IdleTimeout:                  lim.IdleTimeout.D(),
		CloseOnShutdown:              true,
		KeepHijackedConns:            true, // the net/http listener closes a handed-over connection
		Logger:                       quietLogger{},
	}
}

// quietLogger drops fasthttp's per-connection errors (a client that resets,
// one that never sends its header): any client can cause them.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// serveFastHTTP serves h's listener with the fast plane, and the requests it
// hands over with the net/http listener, until ctx ends.
func serveFastHTTP(ctx context.Context, ln net.Listener, h *httpDep, lim config.Limits) error {
	h.handoff = proxy.NewHandoff(ln.Addr())
	fs := h.newFastServer(lim)
	slow := &http.Server{Handler: h, ReadHeaderTimeout: lim.HeaderTimeout.D(), IdleTimeout: lim.IdleTimeout.D(),
		MaxHeaderBytes: 64 << 10}
	fastDone, slowDone := make(chan error, 1), make(chan error, 1)
	go func() { fastDone <- fs.Serve(ln) }()
	go func() { slowDone <- slow.Serve(h.handoff) }()
	var err error
	select {
	case err = <-fastDone:
		fastDone <- err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if e := fs.ShutdownWithContext(sctx); e != nil {
		ln.Close()
	}
	if e := slow.Shutdown(sctx); e != nil {
		slow.Close()
	}
	h.handoff.Close()
	if e := <-fastDone; e != nil && !errors.Is(e, net.ErrClosed) && !strings.Contains(e.Error(), "use of closed") {
		err = errors.Join(err, e)
	}
	if e := <-slowDone; e != nil && !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) {
		err = errors.Join(err, e)
	}
	if ctx.Err() != nil && err != nil && strings.Contains(err.Error(), "closed") {
		return nil
	}
	return err
}
