package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/valyala/fasthttp"

	"github.com/medic-dev/medic/internal/proxy"
)

// DependencyHeader says why medic answered a call itself: open (breaker),
// shed (bulkhead), timeout or error. It is set on fallbacks too.
const DependencyHeader = "X-Medic-Dependency"

// httpDep forwards the instances' HTTP calls to one dependency through
// failsafe-go's policies, composed outermost first:
//
//	bulkhead (a slot per call, retries included; queue_timeout to get one)
//	→ retry (idempotent methods; backoff with jitter; within the budget; stops when the breaker opens)
//	→ breaker (counts every try)
//	→ timeout (per try, to the response headers)
//
// and answers a failed call with the fallback when there is one.
type httpDep struct {
	*dependency
	target *url.URL
	rp     *httputil.ReverseProxy
	fb     *fallback
	cb     circuitbreaker.CircuitBreaker[*http.Response]
	// once and retrying run the same policies (shared breaker and bulkhead);
	// only retrying retries.
	once, retrying http.RoundTripper
	transport      *http.Transport

	// The fast plane (fast.go) shares the breaker, the bulkhead and the
	// retry budget with the policies above.
	bh         bulkhead.Bulkhead[*http.Response]
	budget     retryPermits // a no-op without retries
	retryMax   int
	pathPrefix string // the url's path without its trailing slash
	fast       *fasthttp.HostClient
	// slowOnly: every call takes the net/http listener (kind model, or an
	// HTTP(S)_PROXY from the environment applies to the url: only net/http's
	// Transport goes through it).
	slowOnly bool
	handoff  *proxy.Handoff // set by serveFastHTTP
}

// noPermits is the retry budget of a dependency without retries.
type noPermits struct{}

func (noPermits) RecordExecution()       {}
func (noPermits) ReleaseExecution()      {}
func (noPermits) TryAcquirePermit() bool { return false }
func (noPermits) ReleasePermit()         {}

func newHTTP(d *dependency) (*httpDep, error) {
	target, err := url.Parse(d.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse url %q: %w", d.cfg.URL, err)
	}
	fb, err := newFallback(d.cfg.Fallback)
	if err != nil {
		return nil, err
	}
	h := &httpDep{dependency: d, target: target, fb: fb}
	c := d.cfg
	h.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(c.Timeout.D(), 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          c.Bulkhead.MaxConcurrent,
		MaxIdleConnsPerHost:   c.Bulkhead.MaxConcurrent,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   min(c.Timeout.D(), 10*time.Second),
		ExpectContinueTimeout: time.Second,
	}
	h.cb = newBreaker(c.Breaker, httpFailed, d.changed)
	bh := bulkhead.NewBuilder[*http.Response](uint(c.Bulkhead.MaxConcurrent)).WithMaxWaitTime(c.Bulkhead.QueueTimeout.D()).Build()
	to := timeout.New[*http.Response](c.Timeout.D())
	inner := roundTripFunc(h.try)
	h.once = failsafehttp.NewRoundTripper(inner, bh, h.cb, to)
	h.bh, h.budget = bh, noPermits{}
	h.pathPrefix = strings.TrimSuffix(target.Path, "/")
	h.fast = newFastClient(h)
	h.slowOnly = c.Kind == "model"
	if u, err := http.ProxyFromEnvironment(&http.Request{URL: target}); err != nil || u != nil {
		h.slowOnly = true
	}
	if n := *c.Retries.Max; n > 0 {
		bud := budget.NewBuilder().WithMaxRate(*c.Retries.Budget).WithMinConcurrency(3).Build()
		if p, ok := bud.(retryPermits); ok {
			h.budget, h.retryMax = p, n
		}
		rp := retrypolicy.NewBuilder[*http.Response]().
			HandleIf(httpFailed).
			AbortOnErrors(circuitbreaker.ErrOpen, bulkhead.ErrFull, context.Canceled).
			WithMaxRetries(n).
			WithBackoff(c.Retries.Backoff.D(), 16*c.Retries.Backoff.D()).
			WithJitterFactor(*c.Retries.Jitter).
			WithBudget(bud).
			ReturnLastFailure().
			OnRetry(func(e failsafe.ExecutionEvent[*http.Response]) {
				h.retries.Add(1)
				if r := e.LastResult(); r != nil { // the failed try's answer is dropped: free its connection
					r.Body.Close()
				}
			}).
			Build()
		h.retrying = failsafehttp.NewRoundTripper(inner, bh, rp, h.cb, to)
	} else {
		h.retrying = h.once
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
		},
		Transport:      roundTripFunc(h.roundTrip),
		ModifyResponse: h.modify,
		ErrorHandler:   h.failed,
		FlushInterval:  -1, // stream (server-sent events from model providers)
		BufferPool:     copyBuffers,
	}
	return h, nil
}

// copyBuffers are the 32 KiB buffers the reverse proxy copies bodies with,
// reused across calls instead of allocated for each one.
var copyBuffers httputil.BufferPool = &bufferPool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// idempotent methods may be sent again after a failed try (RFC 9110 §9.2.2).
func idempotent(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func (h *httpDep) roundTrip(r *http.Request) (*http.Response, error) {
	if idempotent(r.Method) || r.Header.Get("Idempotency-Key") != "" {
		return h.retrying.RoundTrip(r)
	}
	return h.once.RoundTrip(r)
}

// try is one try: the injected fault, then the dependency.
func (h *httpDep) try(r *http.Request) (*http.Response, error) {
	if f := h.fault.Load(); f != nil {
		if f.Latency > 0 {
			t := h.clock.NewTimer(f.Latency)
			select {
			case <-t.C():
			case <-r.Context().Done():
				t.Stop()
				return nil, r.Context().Err()
			}
		}
		if f.Down {
			return nil, errInjectedDown
		}
		if f.fails() {
			return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error",
				Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r,
				Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader("injected fault\n"))}, nil
		}
	}
	return h.transport.RoundTrip(r)
}

// statusError turns a 5xx answer into a failed call when a fallback may answer it.
type statusError struct{ code int }

func (e statusError) Error() string { return "dependency answered " + strconv.Itoa(e.code) }

type callStart struct{}

func (h *httpDep) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.clock.Now()
	h.touch(now)
	limit := int64(h.cfg.MaxBody)
	if r.ContentLength > limit {
		h.tooLarge(w, "request body", r.ContentLength)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if !h.admit() {
		h.answer(w, r, OutcomeShed, http.StatusServiceUnavailable, now)
		return
	}
	defer h.release()
	h.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callStart{}, call{start: now, key: h.fb.requestKey(r)})))
}

// call is what ServeHTTP knows of a call that the reverse proxy's hooks
// need: when it started, and its last-good key as the application made it
// (the outgoing request's URL carries the url's path).
type call struct {
	start time.Time
	key   string
}

func startOf(r *http.Request, fallback time.Time) time.Time {
	if c, ok := r.Context().Value(callStart{}).(call); ok {
		return c.start
	}
	return fallback
}

func keyOf(r *http.Request) string {
	c, _ := r.Context().Value(callStart{}).(call)
	return c.key
}

// modify sees the dependency's answer: a 5xx becomes a failure when there is
// a fallback; a 2xx GET is kept for last_good.
func (h *httpDep) modify(resp *http.Response) error {
	r := resp.Request
	limit := int64(h.cfg.MaxBody)
	if resp.ContentLength > limit {
		resp.Body.Close()
		return responseTooLarge{resp.ContentLength}
	}
	resp.Body = readCloser{&capReader{r: resp.Body, left: limit}, resp.Body}
	if resp.StatusCode >= 500 && h.fb != nil {
		resp.Body.Close()
		return statusError{resp.StatusCode}
	}
	outcome := OutcomeOK
	if resp.StatusCode >= 500 {
		outcome = OutcomeError
	}
	now := h.clock.Now()
	h.done(outcome, now.Sub(startOf(r, now)))
	if k := keyOf(r); k != "" && resp.StatusCode/100 == 2 && resp.ContentLength <= lastGoodMaxBody {
		head, err := io.ReadAll(io.LimitReader(resp.Body, lastGoodMaxBody+1))
		if err == nil && len(head) <= lastGoodMaxBody {
			h.fb.store(k, answer{status: resp.StatusCode, header: resp.Header.Clone(), body: head, at: now})
		}
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// failed answers a call that got no usable answer.
func (h *httpDep) failed(w http.ResponseWriter, r *http.Request, err error) {
	var se statusError
	var mbe *http.MaxBytesError
	var rtl responseTooLarge
	switch {
	case errors.As(err, &mbe):
		h.tooLarge(w, "request body", -1)
	case errors.As(err, &rtl):
		h.done(OutcomeError, h.clock.Now().Sub(startOf(r, h.clock.Now())))
		http.Error(w, fmt.Sprintf("medic: dependency %s/%s: response body of %d bytes exceeds max_body %d", h.service, h.name, rtl.n, h.cfg.MaxBody), http.StatusBadGateway)
	case errors.Is(err, circuitbreaker.ErrOpen):
		h.answer(w, r, OutcomeOpen, http.StatusServiceUnavailable, h.clock.Now())
	case errors.Is(err, bulkhead.ErrFull):
		h.answer(w, r, OutcomeShed, http.StatusServiceUnavailable, h.clock.Now())
	case errors.Is(err, timeout.ErrExceeded):
		h.answer(w, r, OutcomeTimeout, http.StatusGatewayTimeout, h.clock.Now())
	case errors.As(err, &se):
		h.answer(w, r, OutcomeError, se.code, h.clock.Now())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		now := h.clock.Now()
		h.done(OutcomeCanceled, now.Sub(startOf(r, now)))
	default:
		h.answer(w, r, OutcomeError, http.StatusBadGateway, h.clock.Now())
	}
}

// answer writes the fallback, or the status with the reason.
func (h *httpDep) answer(w http.ResponseWriter, r *http.Request, outcome string, status int, now time.Time) {
	defer func() { h.done(outcome, h.clock.Now().Sub(startOf(r, now))) }()
	w.Header().Set(DependencyHeader, outcome)
	key := keyOf(r)
	if key == "" {
		key = h.fb.requestKey(r) // refused before ServeHTTP's context
	}
	if a, kind, ok := h.fb.pick(key, now); ok {
		h.fallback.Add(1)
		h.met.fellBack(h.service, h.name, kind)
		for k, v := range a.header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.Header().Set(FallbackHeader, kind)
		w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
		w.WriteHeader(a.status)
		w.Write(a.body)
		return
	}
	switch outcome {
	case OutcomeOpen:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(h.cb.RemainingDelay().Seconds()))))
	case OutcomeShed:
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, fmt.Sprintf("medic: dependency %s/%s: %s", h.service, h.name, outcome), status)
}

func (h *httpDep) Stats() Stats { return h.stats("http", h.cfg.URL) }

// responseTooLarge: the dependency declared a body larger than max_body.
type responseTooLarge struct{ n int64 }

func (e responseTooLarge) Error() string { return "response body exceeds max_body" }

// errBodyCap cuts a streamed answer where it passes max_body.
var errBodyCap = errors.New("response body exceeds max_body")

// capReader reads at most left bytes, then fails.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errBodyCap
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// tooLarge refuses a call whose request body passes max_body (413): the
// instance's fault, not the dependency's, so no breaker counts it.
func (h *httpDep) tooLarge(w http.ResponseWriter, what string, n int64) {
	h.tooBig.Add(1)
	size := "more"
	if n >= 0 {
		size = strconv.FormatInt(n, 10) + " bytes"
	}
	w.Header().Set("Connection", "close")
	http.Error(w, fmt.Sprintf("medic: dependency %s/%s: %s of %s exceeds max_body %d", h.service, h.name, what, size, h.cfg.MaxBody), http.StatusRequestEntityTooLarge)
}
