// Package flood is a hostile client for tests and benchmarks: idle
// connections, slowloris connections, and a legitimate client at a fixed
// rate whose errors and latency are measured. Every loop is bounded in count
// and ends with its context.
package flood

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Attack holds Idle connections that send nothing and Slow connections that
// send a request's headers one line every SlowEvery (slowloris) against Addr,
// from the loopback Sources (round robin; 127.0.0.2… keeps the attacker apart
// from the legitimate client on 127.0.0.1). A connection the server closes is
// opened again after Redial (with jitter), as an attacker would.
type Attack struct {
	Addr       string
	Idle, Slow int
	Sources    []string
	SlowEvery  time.Duration // default 1s
	Redial     time.Duration // default 1s
}

// Counts of an attack.
type Counts struct {
	Dials, DialErrors, ClosedByServer atomic.Int64
	Open                              atomic.Int64
}

// Run holds the connections until ctx ends, then closes them all.
func (a Attack) Run(ctx context.Context, c *Counts) {
	if a.SlowEvery <= 0 {
		a.SlowEvery = time.Second
	}
	if a.Redial <= 0 {
		a.Redial = time.Second
	}
	if len(a.Sources) == 0 {
		a.Sources = []string{"127.0.0.1"}
	}
	var wg sync.WaitGroup
	for i := range a.Idle + a.Slow {
		src := a.Sources[i%len(a.Sources)]
		slow := i >= a.Idle
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.slot(ctx, c, src, slow)
		}()
		if i%200 == 199 { // open in bursts, not all in one instant
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	wg.Wait()
}

func (a Attack) slot(ctx context.Context, c *Counts, src string, slow bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	for ctx.Err() == nil {
		c.Dials.Add(1)
		conn, err := d.DialContext(ctx, "tcp", a.Addr)
		if err != nil {
			c.DialErrors.Add(1)
		} else {
			c.Open.Add(1)
			a.hold(ctx, c, conn, slow)
			c.Open.Add(-1)
		}
		wait := a.Redial + rand.N(a.Redial)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// hold keeps conn until the server closes it or ctx ends.
func (a Attack) hold(ctx context.Context, c *Counts, conn net.Conn, slow bool) {
	defer conn.Close()
	closed := make(chan struct{})
	go func() { // a read returns only when the server closes (or answers a refusal)
		defer close(closed)
		io.Copy(io.Discard, conn)
	}()
	var tick <-chan time.Time
	if slow {
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
			return
		}
		t := time.NewTicker(a.SlowEvery)
		defer t.Stop()
		tick = t.C
	}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			conn.Close()
			<-closed
			return
		case <-closed:
			c.ClosedByServer.Add(1)
			return
		case <-tick:
			fmt.Fprintf(conn, "X-%d: %d\r\n", n, n)
		}
	}
}

// Load is the legitimate client: GET URL at Rate per second for Duration,
// each request cut at Timeout (default 2s), over keep-alive connections.
type Load struct {
	URL      string
	Rate     int
	Duration time.Duration
	Timeout  time.Duration
}

// Result of a load run.
type Result struct {
	Requests, Errors int
	NewConns         int             // connections the client opened (not reused): the server closed its keep-alives
	Latencies        []time.Duration // of successful requests, sorted
	Timeline         []Sample        // every successful request: when it started and how long it took
	FirstErrors      []string        // up to 5
}

// Sample is one request: when it started after the load began, and its latency.
type Sample struct{ At, Took time.Duration }

// TailBySecond counts, per second of the load, the requests that took at
// least the q quantile: where in the run the tail is.
func (r Result) TailBySecond(q float64) []int {
	th := r.Quantile(q)
	var out []int
	for _, s := range r.Timeline {
		i := int(s.At / time.Second)
		for len(out) <= i {
			out = append(out, 0)
		}
		if s.Took >= th {
			out[i]++
		}
	}
	return out
}

// Quantile of the successful latencies (0 when none).
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(len(r.Latencies)-1, int(q*float64(len(r.Latencies))))]
}

// ErrorRate is Errors/Requests.
func (r Result) ErrorRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Errors) / float64(r.Requests)
}

func (r Result) String() string {
	return fmt.Sprintf("%d requests, %d errors (%.2f%%), p50 %v, p99 %v, max %v, %d new connections", r.Requests, r.Errors, 100*r.ErrorRate(),
		r.Quantile(0.5), r.Quantile(0.99), r.Quantile(1), r.NewConns)
}

// Run sends the load and returns what the client saw.
func (l Load) Run(ctx context.Context) Result {
	if l.Timeout <= 0 {
		l.Timeout = 2 * time.Second
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: l.Timeout}
	var mu sync.Mutex
	var res Result
	var newConns atomic.Int64
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			newConns.Add(1)
		}
	}}
	var wg sync.WaitGroup
	every := time.Second / time.Duration(max(1, l.Rate))
	begin := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	end := time.After(l.Duration)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", l.URL, nil)
			if err != nil {
				panic(err) // the URL is the test's own
			}
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
			}
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			res.Requests++
			if err != nil {
				res.Errors++
				if len(res.FirstErrors) < 5 {
					res.FirstErrors = append(res.FirstErrors, err.Error())
				}
				return
			}
			res.Latencies = append(res.Latencies, took)
			res.Timeline = append(res.Timeline, Sample{At: start.Sub(begin), Took: took})
		}()
	}
	wg.Wait()
	res.NewConns = int(newConns.Load())
	slices.Sort(res.Latencies)
	return res
}
