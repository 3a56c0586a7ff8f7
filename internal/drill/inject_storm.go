package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill/load"
	"github.com/medic-dev/medic/internal/proxy"
)

// ClassTraffic is a Traffic whose proxies sort clients into classes
// (proxy.clients): a drill makes keys for its own clients with it.
type ClassTraffic interface {
	// ClientKey makes a key that stands for a client named name of class at
	// service's proxy until remove is called, and names the header that carries it.
	ClientKey(service, name, class string) (header, key string, remove func(), err error)
}

// stormCounts are what the storm's clients saw.
type stormCounts struct {
	sent, ok, limited, shed, failed atomic.Int64 // every try, retries included
	spoofSent, spoofOK              atomic.Int64
}

func (c *stormCounts) add(status int, err error, spoofed bool) {
	c.sent.Add(1)
	if spoofed {
		c.spoofSent.Add(1)
	}
	switch {
	case err != nil:
		c.failed.Add(1)
	case status == http.StatusTooManyRequests:
		c.limited.Add(1)
	case status == http.StatusServiceUnavailable:
		c.shed.Add(1)
	case status < 400:
		c.ok.Add(1)
		if spoofed {
			c.spoofOK.Add(1)
		}
	default:
		c.failed.Add(1)
	}
}

// injectClientStorm is the agent-retry-storm fault: clients of one class
// (param class, default agent) send tries at ratio × the drill's load rate
// (default 10), open loop: a refused or failed request is tried again in the
// next slot, with no backoff and Retry-After ignored, so the tries keep
// arriving at that rate whatever the proxy answers. A share spoof of the
// tries (default 0.1) present a fresh made-up key each, the old bypass, to
// show that a key medic cannot verify gains nothing. The drill's own load is
// sent as load_class (the scenario's human class). Restore stops the storm
// and notes what each side saw.
func injectClientStorm(ctx context.Context, t *Target) (Restore, error) {
	ct, ok := t.Traffic.(ClassTraffic)
	if !ok || t.Traffic == nil {
		return nil, errors.New("fault client-storm: this agent has no proxies")
	}
	class := t.param("class", "agent")
	ratio, err := strconv.ParseFloat(t.param("ratio", "10"), 64)
	if err != nil || ratio <= 0 || ratio > 100 {
		return nil, fmt.Errorf("fault client-storm: ratio %q: want a number above 0, at most 100", t.param("ratio", ""))
	}
	spoof, err := strconv.ParseFloat(t.param("spoof", "0.1"), 64)
	if err != nil || spoof < 0 || spoof > 1 {
		return nil, fmt.Errorf("fault client-storm: spoof %q: want a fraction", t.param("spoof", ""))
	}
	url := ""
	var before proxy.Stats
	for _, ps := range t.Traffic.Stats() {
		if ps.Service == t.Service && ps.Mode != config.ProxyModeTCP {
			url, before = "http://"+ps.Listen+"/", ps
		}
	}
	if url == "" {
		return nil, fmt.Errorf("fault client-storm: service %s has no HTTP proxy", t.Service)
	}
	header, key, remove, err := ct.ClientKey(t.Service, fmt.Sprintf("drill-%d-%s", t.Drill, class), class)
	if err != nil {
		return nil, fmt.Errorf("fault client-storm: %w", err)
	}
	base := t.LoadRPS
	if base <= 0 {
		base = 50
	}
	rate := ratio * base
	tr := &http.Transport{Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 256,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, DisableCompression: true}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var counts stormCounts
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	every := int64(0)
	if spoof > 0 {
		every = max(1, int64(1/spoof+0.5))
	}
	start := t.Clock.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		load.Schedule(sctx, t.Clock, rate, 256, func(i int64, _ time.Time) {
			spoofed := every > 0 && i%every == 0
			k := key
			if spoofed {
				var raw [16]byte
				_, _ = rand.Read(raw[:])
				k = "made-up-" + hex.EncodeToString(raw[:]) // a fresh key per request: the old bypass
			}
			status, err := stormSend(sctx, hc, url, header, k)
			if sctx.Err() == nil {
				counts.add(status, err, spoofed)
			}
		})
	}()
	t.Note("%s clients: %.0f tries/s (%.0f× the load) at %s, refusals retried in the next slot without backoff; %.0f%% with a fresh made-up key; the load is sent as %s",
		class, rate, ratio, url, 100*spoof, t.param("load_class", "the default class"))
	return func(context.Context) error {
		stop()
		wg.Wait()
		tr.CloseIdleConnections()
		remove()
		secs := t.Clock.Now().Sub(start).Seconds()
		t.Figure("storm_tries", float64(counts.sent.Load()))
		t.Figure("storm_admitted", float64(counts.ok.Load()))
		t.Figure("storm_rate_limited", float64(counts.limited.Load()))
		t.Figure("storm_shed", float64(counts.shed.Load()))
		t.Figure("spoofed_tries", float64(counts.spoofSent.Load()))
		t.Figure("spoofed_admitted", float64(counts.spoofOK.Load()))
		t.Note("%s storm over %.1fs: %d tries, %d served, %d refused 429, %d refused 503, %d failed; made-up keys: %d tries, %d served",
			class, secs, counts.sent.Load(), counts.ok.Load(), counts.limited.Load(), counts.shed.Load(), counts.failed.Load(),
			counts.spoofSent.Load(), counts.spoofOK.Load())
		var after proxy.Stats
		for _, ps := range t.Traffic.Stats() {
			if ps.Service == t.Service {
				after = ps
			}
		}
		t.Note("the proxy's classes during the storm: %s", classDelta(before.Classes, after.Classes))
		// Made-up keys land in the default class, never in a bucket of their own:
		// they may not get more than the default class's rate allows.
		if svc := t.Config.Services[t.Service]; svc != nil && svc.Proxy != nil && svc.Proxy.Clients.Enabled() {
			c := svc.Proxy.Clients
			if d := c.Classes[c.Default]; d != nil && d.Rate > 0 {
				bound := d.Rate*secs + float64(max(d.Burst, 1))
				if got := counts.spoofOK.Load(); float64(got) > bound {
					t.Fail(fmt.Sprintf("made-up keys gained: %d served, more than the default class %s allows (%.0f/s for %.1fs + burst %d)",
						got, c.Default, d.Rate, secs, d.Burst))
				}
			}
		}
		return nil
	}, nil
}

func stormSend(ctx context.Context, hc *http.Client, url, header, key string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(header, key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// classDelta renders each class's admitted, shed and rate-limited requests between two snapshots.
func classDelta(a, b []proxy.ClassStats) string {
	prev := map[string]proxy.ClassStats{}
	for _, c := range a {
		prev[c.Name] = c
	}
	s := ""
	for _, c := range b {
		p := prev[c.Name]
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("%s %d admitted, %d shed, %d rate-limited", c.Name, c.Admitted-p.Admitted, c.Shed-p.Shed, c.RateLimited-p.RateLimited)
	}
	if s == "" {
		return "no classes"
	}
	return s
}
