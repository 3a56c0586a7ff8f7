package proxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// noEjection keeps every instance in rotation, so that the retry rules are
// seen on every request rather than hidden by outlier detection.
func noEjection(cfg *config.Proxy) {
	cfg.Outlier.ConsecutiveErrors = 1000
	cfg.Outlier.ErrorRate = floatp(0)
}

func TestRetryOnDifferentInstanceAfterConnectRefused(t *testing.T) {
	cfg := baseConfig()
	noEjection(&cfg)
	h := mustStart(t, cfg, nil)
	h.p.SetBackend("web/0", deadAddr(t), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	c := client(t)
	body := bytes.Repeat([]byte("x"), 1000)
	for i := range 20 {
		// Nothing reaches a refused instance, so even a POST is retried.
		r := do(c, http.MethodPost, h.url+"/upload", body, nil)
		if r.err != nil || r.status != 200 || r.body != "b" || r.header.Get("X-Body-Bytes") != "1000" {
			t.Fatalf("request %d: %d %q body=%s err=%v", i, r.status, r.body, r.header.Get("X-Body-Bytes"), r.err)
		}
	}
	s := h.p.Stats()
	if s.Retries == 0 || instance(s, "web/0").Errors == 0 {
		t.Fatalf("the dead instance was never tried: retries=%d, web/0 errors=%d", s.Retries, instance(s, "web/0").Errors)
	}
	if s.Errors != 0 {
		t.Fatalf("%d client-visible errors", s.Errors)
	}
}

func TestRetryRules(t *testing.T) {
	cases := []struct {
		name       string
		method     string
		body       []byte
		hdr        map[string]string
		budget     float64
		wantStatus int // for requests that hit the resetting instance first
	}{
		{"idempotent GET is retried", http.MethodGet, nil, nil, 0.2, 200},
		{"PUT with a body is retried (body replayed)", http.MethodPut, []byte("payload"), nil, 0.2, 200},
		{"POST with its body sent is not retried", http.MethodPost, []byte("payload"), nil, 0.2, 502},
		{"POST with an Idempotency-Key is retried", http.MethodPost, []byte("payload"), map[string]string{"Idempotency-Key": "k1"}, 0.2, 200},
		{"budget exhausted: no retry", http.MethodGet, nil, nil, 0, 502},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			noEjection(&cfg)
			cfg.Retries.Budget = floatp(tc.budget)
			cfg.Retries.MinPerSecond = floatp(0)
			if tc.budget > 0 {
				cfg.Retries.MinPerSecond = floatp(100)
			}
			h := mustStart(t, cfg, nil)
			var resets int64Counter
			h.p.SetBackend("web/0", backend(t, resetter(&resets)), true)
			h.p.SetBackend("web/1", backend(t, named("b")), true)
			c := client(t)
			seenFirst := 0
			for i := range 30 {
				before := resets.get()
				r := do(c, tc.method, h.url+"/x", tc.body, tc.hdr)
				hitReset := resets.get() > before
				if !hitReset {
					if r.status != 200 {
						t.Fatalf("request %d avoided the resetting instance but got %d %v", i, r.status, r.err)
					}
					continue
				}
				seenFirst++
				if r.status != tc.wantStatus {
					t.Fatalf("request %d hit the resetting instance: status %d (%v), want %d", i, r.status, r.err, tc.wantStatus)
				}
				if r.status == 200 && tc.body != nil && r.header.Get("X-Body-Bytes") != "7" {
					t.Fatalf("retried request lost its body: %q bytes", r.header.Get("X-Body-Bytes"))
				}
			}
			if seenFirst == 0 {
				t.Fatal("no request hit the resetting instance; the rule was not exercised")
			}
			if tc.name == "budget exhausted: no retry" && !strings.Contains(h.logs.String(), `"retry_budget_exhausted":true`) {
				t.Errorf("access log does not say the budget was exhausted:\n%s", h.logs.String())
			}
		})
	}
}

func TestPerTryTimeoutRetriedElsewhere(t *testing.T) {
	cfg := baseConfig()
	noEjection(&cfg)
	cfg.TryTimeout = dur(200 * time.Millisecond)
	h := mustStart(t, cfg, nil)
	release := make(chan struct{})
	defer close(release)
	var hung int64Counter
	h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
		hung.add()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	c := client(t)
	for i := range 10 {
		before := hung.get()
		r := do(c, http.MethodGet, h.url+"/", nil, nil)
		if r.status != 200 || r.body != "b" {
			t.Fatalf("GET %d: %d %q %v", i, r.status, r.body, r.err)
		}
		if hung.get() > before && (r.dur < 200*time.Millisecond || r.dur > 1500*time.Millisecond) {
			t.Fatalf("GET %d went through the hung instance in %v; want about one try timeout (200ms)", i, r.dur)
		}
	}
	if hung.get() == 0 {
		t.Fatal("the hung instance was never tried")
	}
	// A POST whose body reached the hung instance is not retried: 504 after the
	// try timeout. A fresh proxy, as the first one now avoids the slow instance.
	h = mustStart(t, cfg, nil)
	h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
		hung.add()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	for range 5 {
		before := hung.get()
		r := do(c, http.MethodPost, h.url+"/", []byte("once"), nil)
		if hung.get() > before {
			if r.status != http.StatusGatewayTimeout {
				t.Fatalf("POST to the hung instance: %d, want 504", r.status)
			}
			return
		}
	}
	t.Fatal("no POST reached the hung instance")
}
