// Package load drives HTTP load through a service's proxy during a drill and
// keeps every request's outcome.
//
// The default mode is open loop: requests are due at a fixed rate whatever
// happens to earlier ones, and each latency is measured from the moment the
// request was due, not from when it could be sent. A closed-loop client
// (send, wait, send) stops sending while the service stalls and so records one
// slow request where users saw hundreds: coordinated omission. Here a 2 s
// stall at 100 requests per second shows as about 200 slow samples.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/clock"
)

// Sample is one request's outcome.
type Sample struct {
	// Intended is when the request was due (open loop) or sent (closed loop).
	Intended time.Time `json:"t"`
	// Latency runs from Intended to the end of the response body, so it
	// includes any wait for a free slot.
	Latency time.Duration `json:"latency"`
	// Status is the HTTP status, 0 when no response arrived.
	Status int `json:"status,omitempty"`
	// OK: a response with status below 400.
	OK bool `json:"ok"`
	// Err classifies a failure: "timeout", "refused", "reset", "http 503", … ("" when OK).
	Err string `json:"err,omitempty"`
}

// Done returns when the response ended.
func (s Sample) Done() time.Time { return s.Intended.Add(s.Latency) }

// Options configure Run. URL and one of Rate or Connections are required.
type Options struct {
	// URL receives GET requests.
	URL string
	// Rate is the open-loop request rate per second.
	Rate float64
	// Connections, used when Rate is 0, runs that many closed-loop workers
	// (each sends its next request when the previous one ended). Their
	// latencies hide stalls (see the package doc); prefer Rate.
	Connections int
	// Timeout bounds one request; a request cut by it is a client error. Default 10s.
	Timeout time.Duration
	// MaxInFlight caps concurrent requests in open loop: due requests wait
	// for a slot, and their latency grows from the time they were due. Default 1000.
	MaxInFlight int
	// Header is added to every request (a client class's key).
	Header http.Header
	// Client sends the requests. Default: a client with its own transport,
	// no proxy from the environment and keep-alive connections.
	Client *http.Client
	// Clock times the schedule and the latencies. Default clock.Real.
	Clock clock.Clock
	// OnSample receives each finished request, from many goroutines. Requests
	// cut short because ctx ended are not reported: the drill stopped them,
	// not the service.
	OnSample func(Sample)
}

// Run sends load until ctx ends and returns once every request it started has
// ended. It returns an error only for invalid options.
func Run(ctx context.Context, o Options) error {
	if o.URL == "" {
		return errors.New("load: no URL")
	}
	if o.Rate < 0 || o.Rate > 100_000 {
		return fmt.Errorf("load: rate %v: want 0 to 100000 requests per second", o.Rate)
	}
	if o.Rate == 0 && (o.Connections <= 0 || o.Connections > 10_000) {
		return fmt.Errorf("load: want a rate, or 1 to 10000 connections (got %d)", o.Connections)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1000
	}
	o.Clock = clock.Or(o.Clock)
	if o.OnSample == nil {
		o.OnSample = func(Sample) {}
	}
	if o.Client == nil {
		conns := o.Connections
		if o.Rate > 0 {
			conns = min(o.MaxInFlight, 256)
		}
		tr := &http.Transport{Proxy: nil, MaxIdleConns: conns, MaxIdleConnsPerHost: conns,
			DialContext: (&net.Dialer{Timeout: o.Timeout}).DialContext, DisableCompression: true}
		defer tr.CloseIdleConnections()
		o.Client = &http.Client{Transport: tr}
	}
	if o.Rate > 0 {
		return openLoop(ctx, o)
	}
	return closedLoop(ctx, o)
}

func openLoop(ctx context.Context, o Options) error {
	Schedule(ctx, o.Clock, o.Rate, o.MaxInFlight, func(i int64, due time.Time) {
		if s, ok := send(ctx, o, due); ok {
			o.OnSample(s)
		}
	})
	return nil
}

// Schedule is the open-loop schedule: it calls do for the i-th operation
// (from 0) in its own goroutine when it is due, rate per second from the
// start, whatever happened to earlier ones, with at most maxInFlight running
// (a due operation waits for a slot and is late by that much: do measures
// from due). It returns once ctx ended and every do it started returned.
func Schedule(ctx context.Context, clk clock.Clock, rate float64, maxInFlight int, do func(i int64, due time.Time)) {
	clk = clock.Or(clk)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, max(maxInFlight, 1))
	start := clk.Now()
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if wait := due.Sub(clk.Now()); wait > 0 {
			t := clk.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			do(i, due)
		}()
	}
}

func closedLoop(ctx context.Context, o Options) error {
	var wg sync.WaitGroup
	for range o.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if s, ok := send(ctx, o, o.Clock.Now()); ok {
					o.OnSample(s)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// send makes one request due at due; ok is false when ctx ended it.
func send(ctx context.Context, o Options, due time.Time) (Sample, bool) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s := Sample{Intended: due}
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, o.URL, nil)
	if err != nil {
		s.Err = "bad request"
		s.Latency = o.Clock.Now().Sub(due)
		return s, true
	}
	for k, v := range o.Header {
		req.Header[k] = v
	}
	resp, err := o.Client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.Status = resp.StatusCode
	}
	s.Latency = o.Clock.Now().Sub(due)
	if ctx.Err() != nil {
		return s, false
	}
	switch {
	case err != nil:
		s.Err = classify(err)
	case s.Status >= 400:
		s.Err = fmt.Sprintf("http %d", s.Status)
	default:
		s.OK = true
	}
	return s, true
}

// classify names a transport error in a few stable words for reports.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	}
	return "error"
}

// Recorder keeps samples in memory, up to a cap; it is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	limit   int
	samples []Sample
	dropped int
}

// NewRecorder keeps at most limit samples (beyond it, newer ones are counted
// as dropped): 1e6 samples take about 50 MB.
func NewRecorder(limit int) *Recorder { return &Recorder{limit: limit} }

// Add keeps s.
func (r *Recorder) Add(s Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) >= r.limit {
		r.dropped++
		return
	}
	r.samples = append(r.samples, s)
}

// Samples returns a copy of the kept samples, in completion order, and how
// many were dropped.
func (r *Recorder) Samples() ([]Sample, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.samples...), r.dropped
}
