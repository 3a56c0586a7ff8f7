package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// kind classifies one request as the client saw it.
type kind uint8

const (
	kindOK      kind = iota // 2xx
	kindStatus              // any other status
	kindShed                // 503 with Retry-After (the proxy refused it on purpose)
	kindSocket              // connection refused, reset, EOF
	kindTimeout             // no answer within the client timeout
)

type sample struct {
	at   time.Duration // since the load started (open loop: the scheduled send time)
	lat  time.Duration
	kind kind
	code int16 // HTTP status, 0 without a response
}

func classify(res *http.Response, err error) kind {
	var ne net.Error
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		return kindTimeout
	case err != nil:
		return kindSocket
	case res.StatusCode/100 == 2:
		return kindOK
	case res.StatusCode == 503 && res.Header.Get("Retry-After") != "":
		return kindShed
	}
	return kindStatus
}

func get(c *http.Client, url string) (kind, int16) {
	res, err := c.Get(url)
	if err != nil {
		return classify(nil, err), 0
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return classify(nil, err), int16(res.StatusCode)
	}
	return classify(res, nil), int16(res.StatusCode)
}

// closedLoop runs conns clients, each on its own keep-alive connection, each
// sending its next request when the previous one ended, for d. events run at
// their offsets from the start.
func closedLoop(url string, conns int, d, timeout time.Duration, events map[time.Duration]func()) []sample {
	start := time.Now()
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for range conns {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true,
			DialContext: (&net.Dialer{Timeout: timeout}).DialContext}
		c := &http.Client{Transport: tr, Timeout: timeout}
		wg.Go(func() {
			defer tr.CloseIdleConnections()
			var mine []sample
			for {
				t := time.Now()
				if t.Sub(start) >= d {
					break
				}
				k, code := get(c, url)
				mine = append(mine, sample{at: t.Sub(start), lat: time.Since(t), kind: k, code: code})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	var ev sync.WaitGroup
	for at, fn := range events {
		ev.Go(func() {
			time.Sleep(time.Until(start.Add(at)))
			fn()
		})
	}
	wg.Wait()
	ev.Wait()
	return all
}

// openLoop sends rate requests per second for d whatever the answers (arrivals
// do not wait for responses, as with many independent users). Latency counts
// from the scheduled send time, so a stalled generator cannot hide queueing.
func openLoop(url string, rate int, d, timeout time.Duration) []sample {
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: timeout}).DialContext}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: timeout}
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	out := make([]sample, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		wg.Go(func() {
			k, code := get(c, url)
			out[i] = sample{at: due.Sub(start), lat: time.Since(due), kind: k, code: code}
		})
	}
	wg.Wait()
	return out
}

// summary of a set of samples.
type summary struct {
	n, ok, status, shed, socket, timeout int
	p50, p99, max                        time.Duration // over the 2xx answers
	p99all                               time.Duration // over every request, whatever its outcome
	perSec                               float64
	codes                                map[int16]int // non-2xx statuses
}

// codeList renders the non-2xx statuses as "502×12, 504×3".
func (s summary) codeList() string {
	keys := make([]int, 0, len(s.codes))
	for c := range s.codes {
		keys = append(keys, int(c))
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, c := range keys {
		parts[i] = fmt.Sprintf("%d×%d", c, s.codes[int16(c)])
	}
	return strings.Join(parts, ", ")
}

func (s summary) errors() int { return s.status + s.shed + s.socket + s.timeout }

func summarize(ss []sample, from, to time.Duration) summary {
	var s summary
	var lats, all []time.Duration
	for _, x := range ss {
		if x.at < from || x.at >= to {
			continue
		}
		s.n++
		all = append(all, x.lat)
		if x.code != 0 && x.code/100 != 2 {
			if s.codes == nil {
				s.codes = map[int16]int{}
			}
			s.codes[x.code]++
		}
		switch x.kind {
		case kindOK:
			s.ok++
			lats = append(lats, x.lat)
		case kindStatus:
			s.status++
		case kindShed:
			s.shed++
		case kindSocket:
			s.socket++
		case kindTimeout:
			s.timeout++
		}
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		s.p50 = lats[len(lats)/2]
		s.p99 = lats[len(lats)*99/100]
		s.max = lats[len(lats)-1]
	}
	if len(all) > 0 {
		slices.Sort(all)
		s.p99all = all[len(all)*99/100]
	}
	s.perSec = float64(s.n) / (to - from).Seconds()
	return s
}
