package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/netguard"
)

// Errors the transport returns; the error handler maps them to statuses.
var (
	// ErrNoInstance: no instance of the service is ready (503).
	ErrNoInstance = errors.New("proxy: no ready instance")
	// ErrTryTimeout: one try got no response headers within try_timeout (504 when it was the last try).
	ErrTryTimeout = errors.New("proxy: try timed out")
	// ErrTimeout: the request got no response headers within timeout over all its tries (504).
	ErrTimeout = errors.New("proxy: request timed out")
)

// retrier is the proxy's http.RoundTripper. ReverseProxy's Rewrite picks the
// first instance; retrier makes the try and, when the rules allow it, further
// tries on instances not tried yet. ReverseProxy itself never retries.
type retrier struct {
	p    *Proxy
	base http.RoundTripper
}

// RoundTrip sends req to the instance chosen in Rewrite and retries on others.
func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	if ex == nil {
		return t.base.RoundTrip(req)
	}
	p := t.p
	b, fault := ex.first, ex.firstFault
	ex.first = nil
	if b == nil {
		closeBody(req)
		return nil, ErrNoInstance
	}
	body, err := newReplay(req, int64(p.cfg.Retries.MaxBody))
	if err != nil {
		p.d.Abandon(b)
		p.d.Done(b)
		return nil, err
	}
	ctx, cancel := req.Context(), context.CancelCauseFunc(func(error) {})
	var overall clock.Timer = stoppedTimer{}
	if p.overallBinds {
		ctx, cancel = context.WithCancelCause(ctx)
		overall = p.clock.AfterFunc(p.cfg.Timeout.D(), func() { cancel(ErrTimeout) })
	}
	idempotent := isIdempotent(req)
	for {
		res, o, err := t.try(ctx, req, b, fault, body, ex)
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		traits := Traits{Idempotent: idempotent, Replayable: body.replayable(), Untouched: body.untouched(), Class: ex.class}
		r := p.d.Retry(p.clock.Now(), o, status, traits, ex.attempts, ex.tried)
		p.emit(r.Next.Events)
		if r.Next.backend == nil {
			ex.budgetExhausted = ex.budgetExhausted || r.BudgetExhausted
			return t.finish(res, err, overall, cancel, body)
		}
		next, nextFault := r.Next.backend, r.Next.Fault
		if res != nil {
			drainClose(res.Body)
		}
		p.retries.Add(1)
		p.m.retries().Inc()
		b, fault = next, nextFault
	}
}

// finish stops the overall timeout once headers arrived (or nothing will) and
// ties the remaining cleanup to the response body.
func (t *retrier) finish(res *http.Response, err error, overall clock.Timer, cancel context.CancelCauseFunc, body *replay) (*http.Response, error) {
	overall.Stop()
	if res == nil {
		cancel(nil)
		body.close()
		return nil, err
	}
	res.Body = onClose(res.Body, func() { cancel(nil); body.close() })
	return res, nil
}

// try makes one try on b. On success the response body releases the
// instance when closed; on failure the instance is released here.
func (t *retrier) try(ctx context.Context, req *http.Request, b *backend, fault Fault, body *replay, ex *exchange) (*http.Response, Outcome, error) {
	p := t.p
	ex.attempts++
	ex.instance = b.id
	ex.tried = append(ex.tried, b)

	tctx, tcancel := context.WithCancelCause(ctx)
	var tr trace
	tctx = httptrace.WithClientTrace(tctx, tr.hooks())
	timer := p.clock.AfterFunc(p.cfg.TryTimeout.D(), func() { tcancel(ErrTryTimeout) })

	out := req.WithContext(tctx)
	u := *req.URL
	u.Host = b.addr()
	out.URL = &u
	out.Body, out.GetBody = body.reader(), body.getBody()

	start := p.clock.Now()
	res, err := t.send(tctx, out, fault, &tr)
	now := p.clock.Now()
	elapsed := now.Sub(start)
	timerStopped := timer.Stop()

	o := OutcomeOK
	switch {
	case err != nil && ctx.Err() != nil:
		o, err = OutcomeCanceled, context.Cause(ctx)
	case err != nil && (errors.Is(context.Cause(tctx), ErrTryTimeout) || !timerStopped && tctx.Err() != nil):
		o, err = OutcomeTimeout, fmt.Errorf("try on %s: no response headers within %v: %w", b.id, p.cfg.TryTimeout.D(), ErrTryTimeout)
	case err != nil && !tr.gotConn.Load() && netguard.OwnShortage(err):
		// medic itself is out of descriptors (or ports, memory): not the instance's fault.
		o, err = OutcomeCanceled, fmt.Errorf("try on %s: medic is short of resources: %w", b.id, err)
	case err != nil && !tr.gotConn.Load():
		o, err = OutcomeConnect, fmt.Errorf("try on %s: connect %s: %w", b.id, b.addr(), err)
	case err != nil && !tr.wroteHeaders.Load():
		o, err = OutcomeNotSent, fmt.Errorf("try on %s: connection failed before the request was sent: %w", b.id, err)
	case err != nil:
		o, err = OutcomeReset, fmt.Errorf("try on %s: connection failed before the response: %w", b.id, err)
	case res.StatusCode >= 500:
		o = OutcomeStatus
	}
	ex.sent = ex.sent || o.Sent()
	status := 0
	if res != nil {
		status = res.StatusCode
	}
	p.recordTry(now, b, o, status, elapsed)

	if res == nil {
		tcancel(nil)
		p.d.Done(b)
		return nil, o, err
	}
	res.Body = onClose(res.Body, func() { tcancel(nil); p.d.Done(b) })
	return res, o, nil
}

// send applies the instance's fault, if any, then makes the request.
func (t *retrier) send(ctx context.Context, out *http.Request, f Fault, tr *trace) (*http.Response, error) {
	if f.IsZero() {
		return t.base.RoundTrip(out)
	}
	if d := f.Latency.D(); d > 0 {
		tr.gotConn.Store(true) // injected latency stands for a slow instance: the request counts as sent
		tr.wroteHeaders.Store(true)
		tm := t.p.clock.NewTimer(d)
		select {
		case <-tm.C():
		case <-ctx.Done():
			tm.Stop()
			return nil, ctx.Err()
		}
	}
	switch f.roll() {
	case faultError:
		return &http.Response{
			StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error (injected fault)",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: out,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   io.NopCloser(strings.NewReader("injected fault\n")), ContentLength: 15,
		}, nil
	case faultReset:
		tr.gotConn.Store(true)
		tr.wroteHeaders.Store(true)
		return nil, errInjectedReset
	}
	return t.base.RoundTrip(out)
}

// isIdempotent follows RFC 9110 §9.2.2, plus the Idempotency-Key convention
// net/http's Transport also honours.
func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// recordTry hands one try's outcome to the decision and counts it.
func (p *Proxy) recordTry(now time.Time, b *backend, o Outcome, status int, elapsed time.Duration) {
	evs, limit := p.d.Record(now, b, o, status, elapsed)
	p.emit(evs)
	if limit >= 0 {
		p.m.limit().Set(float64(limit))
	}
	p.m.try(b, o.Failed(), elapsed)
}

// stoppedTimer stands for the overall timeout when it cannot bind.
type stoppedTimer struct{}

func (stoppedTimer) C() <-chan time.Time      { return nil }
func (stoppedTimer) Stop() bool               { return false }
func (stoppedTimer) Reset(time.Duration) bool { return false }

// trace records how far a try got, from httptrace hooks.
type trace struct {
	gotConn, wroteHeaders atomic.Bool
}

func (tr *trace) hooks() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { tr.gotConn.Store(true) },
		WroteHeaders: func() { tr.wroteHeaders.Store(true) },
	}
}

// onClose wraps a response body so that fn runs once when it is closed. A
// 101 Switching Protocols body stays an io.ReadWriteCloser, as ReverseProxy
// requires for upgrades.
func onClose(rc io.ReadCloser, fn func()) io.ReadCloser {
	c := closeHook{ReadCloser: rc, fn: fn, once: new(sync.Once)}
	if rwc, ok := rc.(io.ReadWriteCloser); ok {
		return rwcHook{closeHook: c, w: rwc}
	}
	return c
}

type closeHook struct {
	io.ReadCloser
	fn   func()
	once *sync.Once
}

func (c closeHook) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.fn)
	return err
}

type rwcHook struct {
	closeHook
	w io.Writer
}

func (c rwcHook) Write(p []byte) (int, error) { return c.w.Write(p) }

// drainClose reads a little of a discarded body so its connection can be reused.
func drainClose(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, 4<<10)
	_ = rc.Close()
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}
