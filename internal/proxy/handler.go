package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"
)

// exchange is one client request's journey through the proxy, shared by the
// handler, Rewrite, the transport and the error handler through the context.
type exchange struct {
	id              string
	first           *backend // picked in Rewrite, handed to the transport
	firstFault      Fault
	tried           []*backend
	attempts        int
	instance        string // the instance of the last try
	sent            bool   // some try reached an instance
	budgetExhausted bool
	class           int // the client's class (Client.Class)
	status          int
	err             error
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// ServeHTTP admits the request (per-client rate limit, then the concurrency
// limit), forwards it, and writes one access log line.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.clock.Now()
	ex := &exchange{id: requestID(r.Header.Get(headerRequestID))}
	r.Header.Set(headerRequestID, ex.id)
	p.requests.Add(1)
	p.m.requests().Inc()
	defer func() { p.finishRequest(r, ex, start) }()

	var c Client
	if p.d.NeedsClient() {
		if h := p.d.SignatureHeader(); h != "" && r.Header.Get(h) != "" {
			var err error
			if c, err = p.d.IdentifySigned([]byte(r.Header.Get(h)), []byte(r.Method), []byte(r.RequestURI), start); err != nil {
				status, wait := p.d.SignedRefusal(err, start)
				if status != http.StatusUnauthorized {
					p.refuse(w, ex, status, wait, err.Error())
					return
				}
				ex.status = status
				w.Header().Set(headerRequestID, ex.id)
				http.Error(w, "medic: "+err.Error(), status)
				return
			}
		} else {
			c = p.d.Identify(presentedKey(r.Header, p.d.KeyHeader()), remoteIP(r.RemoteAddr))
		}
	}
	ex.class = c.Class
	adm := p.d.Admit(start, c, longLived(r))
	p.countClass(adm)
	if adm.Refusal != Admitted {
		p.countRefusal(adm.Refusal)
		p.refuse(w, ex, adm.Status, adm.RetryAfter, adm.Reason)
		return
	}
	if adm.Held {
		defer p.d.Release(adm)
	}
	defer func() { p.d.ClassResult(p.clock.Now(), adm, ex.status) }()
	p.m.inflight().Inc()
	defer p.m.inflight().Dec()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
}

// rewrite picks the first instance (ReverseProxy.Rewrite).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeFrom(pr.In.Context())
	pr.SetXForwarded()
	pr.Out.Host = pr.In.Host
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "no-instance.invalid"
	pick := p.d.First(p.clock.Now())
	p.emit(pick.Events)
	if pick.backend != nil {
		ex.first, ex.firstFault = pick.backend, pick.Fault
		pr.Out.URL.Host = pick.Addr()
	}
}

// modifyResponse records the status and stamps the request id.
func (p *Proxy) modifyResponse(res *http.Response) error {
	if ex := exchangeFrom(res.Request.Context()); ex != nil {
		ex.status = res.StatusCode
		res.Header.Set(headerRequestID, ex.id)
	}
	return nil
}

// errorHandler answers when no try produced a response.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	ex.err = err
	if r.Context().Err() != nil {
		ex.status = 499 // the client went away; nobody to answer (nginx's convention in the log)
		return
	}
	status, msg := http.StatusBadGateway, "no instance answered"
	switch {
	case errors.Is(err, ErrNoInstance):
		status, msg = http.StatusServiceUnavailable, "no ready instance"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrTryTimeout):
		status, msg = http.StatusGatewayTimeout, "no instance answered in time"
	case errors.Is(err, errClientBody):
		status, msg = http.StatusBadRequest, "could not read the request body"
	}
	ex.status = status
	w.Header().Set(headerRequestID, ex.id)
	http.Error(w, "medic: "+msg+" (request "+ex.id+")", status)
}

// countRefusal counts a request the decision refused.
func (p *Proxy) countRefusal(r Refusal) {
	switch r {
	case RateLimited:
		p.rateLimited.Add(1)
		p.m.rateLimited().Inc()
	case Shed:
		p.shed.Add(1)
		p.m.shed().Inc()
	}
}

// countClass counts an admission by its client class, when classes are set.
func (p *Proxy) countClass(a Admission) {
	if p.classNames == nil {
		return
	}
	result := "admitted"
	switch a.Refusal {
	case RateLimited:
		result = "rate_limited"
	case Shed:
		result = "shed"
	case ClassCircuitOpen:
		result = "breaker_open"
	}
	p.m.class(p.classNames[a.Class], result).Inc()
}

// refuse answers a request medic does not forward (429 or 503) with Retry-After.
func (p *Proxy) refuse(w http.ResponseWriter, ex *exchange, status int, wait time.Duration, msg string) {
	ex.status = status
	w.Header().Set(headerRequestID, ex.id)
	w.Header().Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(wait.Seconds())))))
	http.Error(w, "medic: "+msg, status)
}

func (p *Proxy) finishRequest(r *http.Request, ex *exchange, start time.Time) {
	d := p.clock.Now().Sub(start)
	p.m.duration().Observe(d.Seconds())
	if ex.status >= 500 || ex.status == 0 {
		p.errors.Add(1)
		p.m.errors().Inc()
	}
	if !p.access.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("service", p.service),
		slog.String("request_id", ex.id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("client", r.RemoteAddr),
		slog.String("instance", ex.instance),
		slog.Int("attempts", ex.attempts),
		slog.Int("status", ex.status),
		slog.Float64("duration_seconds", d.Seconds()),
	}
	if p.classNames != nil {
		attrs = append(attrs, slog.String("class", p.classNames[ex.class]))
	}
	if ex.budgetExhausted {
		attrs = append(attrs, slog.Bool("retry_budget_exhausted", true))
	}
	if ex.err != nil {
		attrs = append(attrs, slog.String("error", ex.err.Error()))
	}
	p.logAccess(r.Context(), attrs)
}

const headerRequestID = "X-Request-ID"

// requestID keeps a sane incoming id (propagation) or makes a new one.
func requestID(in string) string {
	if len(in) > 0 && len(in) <= 128 && strings.IndexFunc(in, func(c rune) bool {
		return c <= ' ' || c > '~'
	}) < 0 {
		return in
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// presentedKey is the API key a request presents: the key header, else a
// bearer token. Decision.Identify verifies it.
func presentedKey(h http.Header, header string) []byte {
	if k := h.Get(header); k != "" {
		return []byte(k)
	}
	if a := h.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return []byte(strings.TrimSpace(a[7:]))
	}
	return nil
}

// remoteIP is the address part of a RemoteAddr.
func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// longLived reports requests that may hold a connection open for long
// (WebSocket upgrades, server-sent events); they bypass the concurrency
// limit, whose latency signal they would otherwise distort.
func longLived(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
