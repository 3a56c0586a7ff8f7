package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// TestClassBreakerIsolates runs both data planes with real sockets: the
// agent class's requests to a failing endpoint open the agent class's own
// breaker, after which the agent is refused at once (503, even on endpoints
// that work) while the human class keeps reaching the service; after
// open_for a successful trial closes it.
func TestClassBreakerIsolates(t *testing.T) {
	for _, plane := range []string{config.ProxyDataPlaneFast, config.ProxyDataPlaneNetHTTP} {
		t.Run(plane, func(t *testing.T) {
			cfg := baseConfig()
			cfg.DataPlane = plane
			cfg.Clients = &config.ProxyClients{
				KeysFile: writeKeys(t, map[string][2]string{"a-secret": {"bot", "agent"}, "h-secret": {"web", "human"}}),
				Default:  "anonymous",
				Classes: map[string]*config.ProxyClass{
					"agent":     {Breaker: &config.ProxyClassBreaker{Failures: 3, Window: dur(time.Minute), OpenFor: dur(time.Second)}},
					"human":     {Breaker: &config.ProxyClassBreaker{Failures: 1000}},
					"anonymous": {},
				},
			}
			changes := make(chan proxy.ClassBreakerChange, 16)
			h := mustStartWith(t, cfg, nil, func(o *proxy.Options) {
				o.OnClassBreaker = func(ch proxy.ClassBreakerChange) { changes <- ch }
			})
			var hits = make(chan string, 1000)
			h.p.SetBackend("web/0", backend(t, func(w http.ResponseWriter, r *http.Request) {
				hits <- r.URL.Path
				if r.URL.Path == "/fail" {
					http.Error(w, "broken", http.StatusInternalServerError)
					return
				}
				w.Write([]byte("ok"))
			}), true)
			c := client(t)
			agent := map[string]string{"X-API-Key": "a-secret"}
			human := map[string]string{"X-API-Key": "h-secret"}
			for i := range 3 {
				if r := do(c, http.MethodGet, h.url+"/fail", nil, agent); r.status != 500 {
					t.Fatalf("agent failure %d: %d %q", i, r.status, r.body)
				}
			}
			drain := func() int {
				n := 0
				for {
					select {
					case <-hits:
						n++
					default:
						return n
					}
				}
			}
			drain()
			start := time.Now()
			for i := range 20 {
				r := do(c, http.MethodGet, h.url+"/", nil, agent)
				if r.status != 503 || !strings.Contains(r.body, "circuit open for client class agent") || r.header.Get("Retry-After") == "" {
					t.Fatalf("agent request %d after its breaker opened: %d %q", i, r.status, r.body)
				}
			}
			if n := drain(); n != 0 {
				t.Fatalf("%d agent requests reached the instance while its breaker was open", n)
			}
			if el := time.Since(start); el > 900*time.Millisecond {
				t.Logf("20 refusals took %v (open_for 1 s): the breaker may have half-opened meanwhile", el)
			}
			// The human class is not touched, even on the failing endpoint.
			for i := range 5 {
				if r := do(c, http.MethodGet, h.url+"/fail", nil, human); r.status != 500 || r.body == "" || strings.Contains(r.body, "circuit open") {
					t.Fatalf("human request %d to /fail: %d %q; want the instance's own 500", i, r.status, r.body)
				}
				if r := do(c, http.MethodGet, h.url+"/", nil, human); r.status != 200 {
					t.Fatalf("human request %d: %d %q", i, r.status, r.body)
				}
			}
			var st string
			var opened, refused uint64
			for _, cs := range h.p.Stats().Classes {
				if cs.Name == "agent" {
					st, opened, refused = cs.Breaker, cs.BreakerOpened, cs.BreakerRefused
				}
				if cs.Name == "human" && cs.Breaker != "closed" {
					t.Fatalf("human breaker %s", cs.Breaker)
				}
			}
			if opened != 1 || refused < 20 || (st != "open" && st != "half-open") {
				t.Fatalf("agent breaker in status: %s, opened %d, refused %d", st, opened, refused)
			}
			// After open_for, a trial goes through and its success closes the breaker.
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := do(c, http.MethodGet, h.url+"/", nil, agent)
				if r.status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the agent breaker never let a trial through: %d %q", r.status, r.body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r := do(c, http.MethodGet, h.url+"/", nil, agent); r.status != 200 {
				t.Fatalf("after a successful trial: %d %q", r.status, r.body)
			}
			for _, cs := range h.p.Stats().Classes {
				if cs.Name == "agent" && cs.Breaker != "closed" {
					t.Fatalf("agent breaker after a good trial: %s", cs.Breaker)
				}
			}
			// Every transition reached OnClassBreaker, in order: the agent
			// records them as events (proxy.class_breaker).
			var got []string
			for len(got) < 3 {
				select {
				case ch := <-changes:
					if ch.Service != "web" || ch.Class != "agent" || ch.Reason == "" || ch.At.IsZero() {
						t.Fatalf("class breaker change %+v", ch)
					}
					got = append(got, ch.From+">"+ch.To)
				case <-time.After(5 * time.Second):
					t.Fatalf("class breaker changes seen: %v; want closed>open, open>half-open, half-open>closed", got)
				}
			}
			if want := "closed>open open>half-open half-open>closed"; strings.Join(got, " ") != want {
				t.Fatalf("class breaker changes %v; want %s", got, want)
			}
		})
	}
}
