package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/medic-dev/medic/internal/clock"
)

// The fast HTTP/1.1 data plane: fasthttp's server parses requests on a
// pool of worker goroutines with pooled buffers, and each try writes the
// request to a kept-alive upstream connection and reads the response on the
// same goroutine (upstream.go). Responses with a known length up to
// fastBufferedBody are copied into fasthttp's pooled response buffer;
// longer, chunked or close-delimited ones stream.
//
// Requests the fast plane does not take go to the net/http plane (handler.go,
// transport.go) on the same connection, which stays there until it closes:
// upgrades (WebSocket), event streams (Accept: text/event-stream), chunked
// request bodies and bodies over retries.max_body (they stream and may be
// retried only when untouched, which the net/http plane tracks).

// Bounds of the fast data plane.
const (
	// fastBufferedBody: responses of known length up to this size are read
	// whole before the client's response starts; longer ones stream.
	fastBufferedBody = 64 << 10
	// fastReadBuffer is the per-connection read buffer of the client side,
	// and so the largest request header accepted (431 above it; nginx's
	// large_client_header_buffers is 4 × 8 KiB, HAProxy's bufsize 16 KiB).
	fastReadBuffer = 32 << 10
	// fastWriteBuffer is the per-connection write buffer of the client side.
	fastWriteBuffer = 16 << 10
)

// fastExchange is one client request's journey through the fast plane. It
// lives on the handler's stack.
type fastExchange struct {
	id              []byte
	tried           [8]*backend
	ntried          int
	attempts        int
	instance        string
	budgetExhausted bool
	status          int
	err             error
	deadline        time.Time // the overall timeout, when it binds
	end             time.Time // when the answer was decided (zero: refused before)
}

func (fx *fastExchange) triedList() []*backend { return fx.tried[:fx.ntried] }

// newFastServer builds the fasthttp server of the fast plane.
func (p *Proxy) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      p.serveFast,
		Name:                         "",
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true,
		MaxRequestBodySize:           int(p.cfg.Retries.MaxBody),
		ReadBufferSize:               fastReadBuffer,
		WriteBufferSize:              fastWriteBuffer,
		ReadTimeout:                  p.cfg.Limits.HeaderTimeout.D(), // the header and the first bytes of the body
		IdleTimeout:                  p.cfg.Limits.IdleTimeout.D(),
		CloseOnShutdown:              true,
		KeepHijackedConns:            true, // the net/http plane closes a handed-over connection
		// A connection holds no read buffer (fastReadBuffer) until its
		// first byte arrives, and no write buffer between requests: a
		// flood's idle connections (those the kernel hands over without
		// data: after TCP_DEFER_ACCEPT's wait, or past the SYN queue)
		// held 32 KiB each, 100–160 MiB in bench/flood.sh's HTTP-proxy
		// phase. With StreamRequestBody the read buffer is kept across
		// keep-alive requests. The header timeout then starts again at the
		// first byte: a connection that waited silently in medic for
		// nearly the timeout has the whole timeout for its headers
		// (docs/security.md).
		ReduceMemoryUsage: true,
		Logger:            &fastLogger{l: p.log},
	}
}

// fastLogger turns fasthttp's per-connection errors (a client that never
// sends its headers, a reset) into at most one warning per fastLogEvery,
// with the count of those folded into it: any client can cause them, so
// they must not grow the log at the client's rate.
type fastLogger struct {
	l      *slog.Logger
	mu     sync.Mutex
	next   time.Time
	folded int
}

// fastLogEvery is the least time between two fasthttp warnings.
const fastLogEvery = 10 * time.Second

func (f *fastLogger) Printf(format string, args ...any) {
	now := time.Now()
	f.mu.Lock()
	if now.Before(f.next) {
		f.folded++
		f.mu.Unlock()
		return
	}
	n := f.folded
	f.folded, f.next = 0, now.Add(fastLogEvery)
	f.mu.Unlock()
	f.l.Warn("proxy server: "+fmt.Sprintf(format, args...), "similar_since_last", n)
}

// slowPath reports requests the fast plane hands to the net/http plane.
func (p *Proxy) slowPath(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if h.ConnectionUpgrade() || bytes.Contains(h.Peek("Accept"), []byte("text/event-stream")) {
		return true
	}
	cl := h.ContentLength()
	return cl == -1 || cl > int(p.cfg.Retries.MaxBody)
}

// serveFast is the fast plane's handler.
func (p *Proxy) serveFast(ctx *fasthttp.RequestCtx) {
	if p.slowPath(ctx) {
		p.handOff(ctx)
		return
	}
	start := p.clock.Now()
	fx := fastExchange{id: ctx.Request.Header.Peek(headerRequestID)}
	if !validRequestID(fx.id) {
		newRequestID(&ctx.Request.Header)
		fx.id = ctx.Request.Header.Peek(headerRequestID)
	}
	p.requests.Add(1)
	p.m.requests().Inc()
	defer p.finishFast(ctx, &fx, start)

	var c Client
	if p.d.NeedsClient() {
		if h := p.d.SignatureHeader(); h != "" && len(ctx.Request.Header.Peek(h)) > 0 {
			var err error
			if c, err = p.d.IdentifySigned(ctx.Request.Header.Peek(h), ctx.Method(), ctx.Request.Header.RequestURI(), start); err != nil {
				status, wait := p.d.SignedRefusal(err, start)
				p.fastError(ctx, &fx, status, wait, "medic: "+err.Error())
				return
			}
		} else {
			c = p.d.Identify(fastPresentedKey(ctx, p.d.KeyHeader()), ctx.RemoteIP().String())
		}
	}
	adm := p.d.Admit(start, c, false)
	p.countClass(adm)
	if adm.Refusal != Admitted {
		p.countRefusal(adm.Refusal)
		p.fastError(ctx, &fx, adm.Status, adm.RetryAfter, "medic: "+adm.Reason)
		return
	}
	if adm.Held {
		defer p.d.Release(adm)
	}
	defer func() {
		fx.end = p.clock.Now() // read once for the class and the access log (finishFast)
		p.d.ClassResult(fx.end, adm, fx.status)
	}()
	p.m.inflight().Inc()
	defer p.m.inflight().Dec()

	if p.overallBinds {
		fx.deadline = start.Add(p.cfg.Timeout.D())
	}
	body := ctx.Request.Body() // at most retries.max_body (slowPath): replayable
	idempotent := fastIdempotent(ctx)
	pick := p.d.First(start)
	p.emit(pick.Events)
	if pick.backend == nil {
		fx.err = ErrNoInstance
		p.fastFail(ctx, &fx)
		return
	}
	at := start // each try starts when the last decision was made: one clock read per step
	for {
		o, err, end := p.fastTry(ctx, &fx, pick, body, idempotent, at)
		fx.err = err
		status := 0
		if err == nil {
			status = ctx.Response.StatusCode()
		}
		traits := Traits{Idempotent: idempotent, Replayable: true, Untouched: true, Class: c.Class}
		r := p.d.Retry(end, o, status, traits, fx.attempts, fx.triedList())
		p.emit(r.Next.Events)
		if r.Next.backend == nil || fx.ntried == len(fx.tried) {
			if r.Next.backend != nil {
				p.d.Done(r.Next.backend)
			}
			fx.budgetExhausted = fx.budgetExhausted || r.BudgetExhausted
			break
		}
		resetResponse(&ctx.Response) // closes a streamed body, which releases its try
		p.retries.Add(1)
		p.m.retries().Inc()
		pick, at = r.Next, end
	}
	if fx.err != nil {
		resetResponse(&ctx.Response)
		p.fastFail(ctx, &fx)
		return
	}
	fx.status = ctx.Response.StatusCode()
	ctx.Response.Header.SetBytesV(headerRequestID, fx.id)
}

// fastTry makes one try on pick, starting at start (the time pick was
// made), and returns when it ended. On success the response is in
// ctx.Response (a streamed body releases the instance when the server has
// written it); otherwise the instance is released here.
func (p *Proxy) fastTry(ctx *fasthttp.RequestCtx, fx *fastExchange, pick Pick, body []byte, idempotent bool, start time.Time) (Outcome, error, time.Time) {
	b := pick.backend
	fx.attempts++
	fx.instance = b.id
	fx.tried[fx.ntried] = b
	fx.ntried++

	tryTimeout := p.cfg.TryTimeout.D()
	byOverall := false
	if !fx.deadline.IsZero() && fx.deadline.Sub(start) < tryTimeout {
		tryTimeout, byOverall = max(fx.deadline.Sub(start), 0), true
	}
	var streaming bool
	var o Outcome
	var err error
	if f := pick.Fault; !f.IsZero() {
		o, err, streaming = p.fastFault(ctx, f, b, tryTimeout, body, idempotent)
	} else {
		o, err, streaming = p.fastExchangeOnce(ctx, b, tryTimeout, body, idempotent, start)
	}
	now := p.clock.Now()
	elapsed := now.Sub(start)
	if o == OutcomeTimeout {
		if byOverall {
			o, err = OutcomeCanceled, ErrTimeout
		} else {
			err = fmt.Errorf("try on %s: no response headers within %v: %w", b.id, p.cfg.TryTimeout.D(), ErrTryTimeout)
		}
	}
	status := 0
	if err == nil {
		status = ctx.Response.StatusCode()
	}
	p.recordTry(now, b, o, status, elapsed)
	if !streaming {
		p.d.Done(b)
	}
	return o, err, now
}

// fastFault applies an injected fault, then makes the try.
func (p *Proxy) fastFault(ctx *fasthttp.RequestCtx, f Fault, b *backend, tryTimeout time.Duration, body []byte, idempotent bool) (Outcome, error, bool) {
	if d := f.Latency.D(); d > 0 {
		if d >= tryTimeout {
			t := p.clock.NewTimer(tryTimeout)
			<-t.C()
			return OutcomeTimeout, nil, false
		}
		t := p.clock.NewTimer(d)
		<-t.C()
		tryTimeout -= d
	}
	switch f.roll() {
	case faultError:
		resetResponse(&ctx.Response)
		ctx.Response.SetStatusCode(500)
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.Response.SetBodyString("injected fault\n")
		return OutcomeStatus, nil, false
	case faultReset:
		return OutcomeReset, fmt.Errorf("try on %s: %w", b.id, errInjectedReset), false
	}
	return p.fastExchangeOnce(ctx, b, tryTimeout, body, idempotent, p.clock.Now()) // after the injected latency
}

// fastExchangeOnce sends the request to b and reads the response header
// into ctx.Response, within tryTimeout. A reused connection the instance
// closed while idle is replaced by a fresh one once, for an idempotent
// request (as net/http's Transport does): it is not a try that failed.
func (p *Proxy) fastExchangeOnce(ctx *fasthttp.RequestCtx, b *backend, tryTimeout time.Duration, body []byte, idempotent bool, now time.Time) (o Outcome, err error, streaming bool) {
	addr := b.addr()
	for fresh := false; ; fresh = true {
		var c *upConn
		var reused bool
		if fresh {
			c, err = p.up.dial(context.Background(), addr)
		} else {
			c, reused, err = p.up.get(context.Background(), addr, now, !idempotent)
		}
		if err != nil {
			return OutcomeConnect, fmt.Errorf("try on %s: connect %s: %w", b.id, addr, err), false
		}
		stop := p.setTryDeadline(c, tryTimeout)
		o, err, streaming = p.roundTrip(ctx, c, b, body, reused)
		stop()
		if errors.Is(err, errStale) && reused && (idempotent || o == OutcomeNotSent) {
			continue
		}
		if o == OutcomeNotSent && reused {
			o = OutcomeReset // a reused connection may have taken the request before failing
		}
		return o, err, streaming
	}
}

// setTryDeadline bounds the try's writes and its wait for the response
// header. With the wall clock it is the socket's deadline; with an
// injected clock, a timer of that clock cuts the socket.
func (p *Proxy) setTryDeadline(c *upConn, d time.Duration) (stop func()) {
	if _, ok := p.clock.(clock.Real); ok {
		_ = c.SetDeadline(time.Now().Add(d))
		return func() {}
	}
	t := p.clock.AfterFunc(d, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return func() { t.Stop() }
}

// roundTrip writes the request on c and reads the response header and,
// when short, the body. It owns c: it returns it to the idle stack, hands
// it to a streamed body, or closes it.
func (p *Proxy) roundTrip(ctx *fasthttp.RequestCtx, c *upConn, b *backend, body []byte, reused bool) (Outcome, error, bool) {
	if err := p.writeRequest(c, ctx, body, ctx.Request.Header.Peek(headerRequestID)); err != nil {
		_ = c.Close()
		if reused {
			err = errStale
		}
		return OutcomeNotSent, fmt.Errorf("try on %s: connection failed before the request was sent: %w", b.id, err), false
	}
	res := &ctx.Response
	resetResponse(res)
	if _, err := c.br.Peek(1); err != nil {
		_ = c.Close()
		if isTimeout(err) {
			return OutcomeTimeout, err, false
		}
		if reused {
			err = errStale
		}
		return OutcomeReset, fmt.Errorf("try on %s: connection failed before the response: %w", b.id, err), false
	}
	for {
		if err := res.Header.Read(c.br); err != nil {
			_ = c.Close()
			if isTimeout(err) || errors.Is(err, fasthttp.ErrTimeout) {
				return OutcomeTimeout, err, false
			}
			return OutcomeReset, fmt.Errorf("try on %s: reading the response header: %w", b.id, err), false
		}
		if s := res.Header.StatusCode(); s >= 200 || s == 101 {
			break
		}
		res.Header.Reset() // 1xx interim answers are not forwarded on the fast plane
		res.Header.SetNoDefaultContentType(true)
	}
	status := res.Header.StatusCode()
	if status == 101 { // not asked for: upgrades take the net/http plane
		_ = c.Close()
		resetResponse(res)
		return OutcomeReset, fmt.Errorf("try on %s: unrequested 101 Switching Protocols: %w", b.id, errUpstreamFrame), false
	}
	keep := !res.Header.ConnectionClose()
	cl := res.Header.ContentLength()
	stripHop(&res.Header)
	o := OutcomeOK
	if status >= 500 {
		o = OutcomeStatus
	}
	if ctx.IsHead() || noBodyStatus(status) {
		res.SkipBody = true
		if cl >= 0 {
			res.Header.SetContentLength(cl)
		}
		p.release(c, keep)
		return o, nil, false
	}
	if cl >= 0 && cl <= fastBufferedBody {
		for n := cl; n > 0; {
			k := min(n, c.br.Size())
			chunk, err := c.br.Peek(k)
			res.AppendBody(chunk)
			_, _ = c.br.Discard(len(chunk))
			n -= len(chunk)
			if err != nil {
				_ = c.Close()
				resetResponse(res)
				return OutcomeReset, fmt.Errorf("try on %s: response body cut short: %w", b.id, err), false
			}
		}
		p.release(c, keep)
		return o, nil, false
	}
	_ = c.SetDeadline(time.Time{}) // bodies stream without a deadline, as on the net/http plane
	size := cl
	if size < -1 {
		size = -1
	}
	res.SetBodyStream(newBodyReader(c, cl, func(c *upConn, clean bool) {
		p.release(c, clean && keep)
		p.d.Done(b)
	}), size)
	return o, nil, true
}

// resetResponse empties a response, keeping it free of a default Content-Type
// (fasthttp's Reset would bring it back).
func resetResponse(res *fasthttp.Response) {
	res.Reset()
	res.Header.SetNoDefaultContentType(true)
}

// release returns c to the idle stack, or closes it.
func (p *Proxy) release(c *upConn, keep bool) {
	if keep {
		p.up.put(c, p.clock.Now())
		return
	}
	_ = c.Close()
}

// writeRequest writes the client's request to c as net/http's ReverseProxy
// would: hop-by-hop headers dropped, X-Forwarded-For/Host/Proto set from
// this hop, the request id, and the body with its length.
func (p *Proxy) writeRequest(c *upConn, ctx *fasthttp.RequestCtx, body, id []byte) error {
	w := c.bw
	h := &ctx.Request.Header
	_, _ = w.Write(h.Method())
	_ = w.WriteByte(' ')
	uri := h.RequestURI()
	if len(uri) == 0 || (uri[0] != '/' && uri[0] != '*') {
		uri = ctx.URI().RequestURI() // absolute form: origin form for the instance
	}
	_, _ = w.Write(uri)
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	host := h.Host()
	if len(host) > 0 {
		_, _ = w.Write(host)
	} else {
		_, _ = w.WriteString(c.addr) // an HTTP/1.0 request without Host: the instance's address, as net/http sends
	}
	_, _ = w.WriteString("\r\n")
	conn := h.Peek("Connection")
	for k, v := range h.AllInOrder() {
		if skipRequestHeader(k, conn) {
			continue
		}
		if equalFold(k, strTE) && !equalFold(trimOWS(v), strTrailers) {
			continue
		}
		_, _ = w.Write(k)
		_, _ = w.WriteString(": ")
		_, _ = w.Write(v)
		_, _ = w.WriteString("\r\n")
	}
	_, _ = w.WriteString("X-Forwarded-For: ")
	writeClientIP(w, ctx.RemoteAddr())
	_, _ = w.WriteString("\r\nX-Forwarded-Host: ") // empty without Host, as net/http's SetXForwarded
	_, _ = w.Write(host)
	_, _ = w.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Request-Id: ")
	_, _ = w.Write(id)
	_, _ = w.WriteString("\r\n")
	if len(body) > 0 || sendsLength(h.Method()) {
		var n [20]byte
		_, _ = w.WriteString("Content-Length: ")
		_, _ = w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
		_, _ = w.WriteString("\r\n")
	}
	_, _ = w.WriteString("\r\n")
	_, _ = w.Write(body)
	return w.Flush()
}

var (
	strTE              = []byte("Te")
	strTrailers        = []byte("trailers")
	strHost            = []byte("Host")
	strContentLength   = []byte("Content-Length")
	strXForwardedFor   = []byte("X-Forwarded-For")
	strXForwardedHost  = []byte("X-Forwarded-Host")
	strXForwardedProto = []byte("X-Forwarded-Proto")
	strExpect          = []byte("Expect")
	strXRequestID      = []byte(headerRequestID)
)

// skipRequestHeader: headers the fast plane writes itself or never forwards.
func skipRequestHeader(k, conn []byte) bool {
	if equalFold(k, strTE) {
		return false // kept only as "TE: trailers" (checked by the caller)
	}
	return isHop(k) || equalFold(k, strHost) || equalFold(k, strContentLength) ||
		equalFold(k, strXForwardedFor) || equalFold(k, strXForwardedHost) || equalFold(k, strXForwardedProto) ||
		equalFold(k, strExpect) || equalFold(k, strXRequestID) || // the client got its 100 Continue from this hop, and the body is here
		(len(conn) > 0 && connectionListed(conn, k))
}

// sendsLength: methods whose empty body is still announced with
// Content-Length: 0 (as net/http's Transport does).
func sendsLength(m []byte) bool {
	return string(m) == "POST" || string(m) == "PUT" || string(m) == "PATCH"
}

// stripHop removes the instance's hop-by-hop headers from its response.
func stripHop(h *fasthttp.ResponseHeader) {
	if conn := h.Peek("Connection"); len(conn) > 0 {
		var names [4][]byte
		n := 0
		for k := range h.All() {
			if n < len(names) && connectionListed(conn, k) && !isHop(k) {
				names[n] = append([]byte(nil), k...)
				n++
			}
		}
		for _, k := range names[:n] {
			h.DelBytes(k)
		}
	}
	for _, k := range HopHeaders {
		h.DelBytes(k)
	}
	h.ResetConnectionClose()
}

func writeClientIP(w *bufio.Writer, a net.Addr) {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			_, _ = w.Write(ip.Unmap().AppendTo(w.AvailableBuffer()))
			return
		}
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	_, _ = w.WriteString(host)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// fastIdempotent is isIdempotent for a fasthttp request.
func fastIdempotent(ctx *fasthttp.RequestCtx) bool {
	switch string(ctx.Method()) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	h := &ctx.Request.Header
	return len(h.Peek("Idempotency-Key")) > 0 || len(h.Peek("X-Idempotency-Key")) > 0
}

// fastPresentedKey is presentedKey for a fasthttp request.
func fastPresentedKey(ctx *fasthttp.RequestCtx, header string) []byte {
	h := &ctx.Request.Header
	if k := h.Peek(header); len(k) > 0 {
		return k
	}
	if a := h.Peek("Authorization"); len(a) > 7 && bytes.EqualFold(a[:7], []byte("bearer ")) {
		return bytes.TrimSpace(a[7:])
	}
	return nil
}

// newRequestID sets a random request id on h: 128 bits from the runtime's
// per-thread ChaCha8 generator (math/rand/v2, seeded from the system's
// entropy), as 32 hex digits. Ids must be unique, not secret; crypto/rand
// cost about 1.5 % of the fast plane's CPU (bench/proxy/results.md).
func newRequestID(h *fasthttp.RequestHeader) {
	var raw [16]byte
	var id [32]byte
	binary.LittleEndian.PutUint64(raw[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], mrand.Uint64())
	hex.Encode(id[:], raw[:])
	h.SetBytesV(headerRequestID, id[:])
}

// validRequestID reports an incoming id that is kept as is.
func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > 128 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// fastFail answers a request no try produced a response for.
func (p *Proxy) fastFail(ctx *fasthttp.RequestCtx, fx *fastExchange) {
	status, msg := 502, "no instance answered"
	retryAfter := time.Duration(0)
	switch {
	case errors.Is(fx.err, ErrNoInstance):
		status, msg, retryAfter = 503, "no ready instance", time.Second
	case errors.Is(fx.err, ErrTimeout), errors.Is(fx.err, ErrTryTimeout):
		status, msg = 504, "no instance answered in time"
	}
	p.fastError(ctx, fx, status, retryAfter, "medic: "+msg+" (request "+string(fx.id)+")")
}

// fastError writes an error answer as http.Error does.
func (p *Proxy) fastError(ctx *fasthttp.RequestCtx, fx *fastExchange, status int, retryAfter time.Duration, msg string) {
	fx.status = status
	res := &ctx.Response
	resetResponse(res)
	res.SetStatusCode(status)
	res.Header.SetBytesV(headerRequestID, fx.id)
	if retryAfter > 0 {
		var n [20]byte
		res.Header.SetBytesV("Retry-After", strconv.AppendInt(n[:0], int64(max(1, (retryAfter+time.Second-1)/time.Second)), 10))
	}
	res.Header.SetContentType("text/plain; charset=utf-8")
	res.Header.Set("X-Content-Type-Options", "nosniff")
	res.SetBodyString(msg + "\n")
}

// finishFast counts the request and writes its access log line.
func (p *Proxy) finishFast(ctx *fasthttp.RequestCtx, fx *fastExchange, start time.Time) {
	end := fx.end
	if end.IsZero() { // refused before the class's result was counted
		end = p.clock.Now()
	}
	d := end.Sub(start)
	p.m.duration().Observe(d.Seconds())
	if fx.status >= 500 || fx.status == 0 {
		p.errors.Add(1)
		p.m.errors().Inc()
	}
	if !p.access.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("service", p.service),
		slog.String("request_id", string(fx.id)),
		slog.String("method", string(ctx.Method())),
		slog.String("path", string(ctx.Path())),
		slog.String("client", ctx.RemoteAddr().String()),
		slog.String("instance", fx.instance),
		slog.Int("attempts", fx.attempts),
		slog.Int("status", fx.status),
		slog.Float64("duration_seconds", d.Seconds()),
	}
	if fx.budgetExhausted {
		attrs = append(attrs, slog.Bool("retry_budget_exhausted", true))
	}
	if fx.err != nil {
		attrs = append(attrs, slog.String("error", fx.err.Error()))
	}
	p.logAccess(context.Background(), attrs)
}
