package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

func TestFleetAPI(t *testing.T) {
	for _, tc := range []struct{ listen, address, want string }{
		{"0.0.0.0:7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{":7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{"[::]:7070", "web-1.internal", "http://web-1.internal:7070"},
		{"10.0.0.11:7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{"127.0.0.1:7070", "10.0.0.11", ""},
		{"localhost:7070", "10.0.0.11", ""},
		{"127.0.0.1:7070", "127.0.0.2", "http://127.0.0.1:7070"},
		{"0.0.0.0:7070", "", ""},
		{"garbage", "10.0.0.11", ""},
	} {
		if got := fleetAPI(tc.listen, tc.address); got != tc.want {
			t.Errorf("fleetAPI(%q, %q) = %q, want %q", tc.listen, tc.address, got, tc.want)
		}
	}
}

// TestServeChainBounds: the unauthenticated chain endpoint refuses hostile
// parameters with 400 naming the field, and a flood past its burst gets
// 429 with Retry-After (the limiter is asked before anything is read).
func TestServeChainBounds(t *testing.T) {
	get := func(lim *rate.Limiter, query string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		serveChain(w, httptest.NewRequest("GET", "/v1/fleet/audit/chain?"+query, nil), nil, "h1", lim)
		return w
	}
	for _, q := range []string{"after=-1", "after=abc", "after=99999999999999999999", "limit=0", "limit=1000000", "limit=x"} {
		w := get(rate.NewLimiter(chainRate, chainBurst), q)
		field := strings.SplitN(q, "=", 2)[0]
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), field) {
			t.Errorf("%s: %d %s, want 400 naming %s", q, w.Code, w.Body, field)
		}
	}
	lim := rate.NewLimiter(chainRate, chainBurst)
	passed, limited := 0, 0
	for range 200 {
		w := get(lim, "after=bad") // past the limiter: 400 without a read
		switch w.Code {
		case http.StatusBadRequest:
			passed++
		case http.StatusTooManyRequests:
			limited++
			if w.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("status %d", w.Code)
		}
	}
	// 200 requests in well under a second: the burst and at most a few refills.
	if passed < chainBurst || passed > chainBurst+5 || limited != 200-passed {
		t.Errorf("%d passed the limiter, %d limited; want about the burst %d", passed, limited, chainBurst)
	}
}
