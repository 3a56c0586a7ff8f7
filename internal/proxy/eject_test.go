package proxy_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/proxy"
)

// toggle answers 500 while failing is set, else 200 with its name.
func toggle(name string, failing *atomic.Bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, name+" failing", http.StatusInternalServerError)
			return
		}
		named(name)(w, r)
	}
}

func TestEjectionAndReturn(t *testing.T) {
	clk := clocktest.New(t0)
	cfg := baseConfig()
	cfg.Outlier.BaseEjection = dur(10 * time.Second)
	h := mustStart(t, cfg, clk)
	var failing atomic.Bool
	failing.Store(true)
	h.p.SetBackend("web/0", backend(t, toggle("a", &failing)), true)
	h.p.SetBackend("web/1", backend(t, named("b")), true)
	c := client(t)

	// 5xx answers count: three in a row eject web/0. Until then a client may see them
	// (500 is not in retries.on_status).
	for i := 0; instance(h.p.Stats(), "web/0").Breaker != proxy.Open; i++ {
		if i > 100 {
			t.Fatal("web/0 answers 500 to everything and is still not ejected")
		}
		do(c, http.MethodGet, h.url+"/", nil, nil)
	}
	if n := instance(h.p.Stats(), "web/0").Ejections; n != 1 {
		t.Fatalf("ejections %d, want 1", n)
	}
	for i := range 20 {
		if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.body != "b" {
			t.Fatalf("request %d while web/0 is ejected: %d %q", i, r.status, r.body)
		}
	}

	// The ejection time passes; web/0 still fails, so its trial request re-ejects it for twice as long.
	clk.Advance(10 * time.Second)
	if st := instance(h.p.Stats(), "web/0").Breaker; st != proxy.HalfOpen {
		t.Fatalf("after the ejection time: %v, want half-open", st)
	}
	do(c, http.MethodGet, h.url+"/", nil, nil) // the trial
	is := instance(h.p.Stats(), "web/0")
	if is.Breaker != proxy.Open || is.Ejections != 2 || !is.EjectedUntil.Equal(clk.Now().Add(20*time.Second)) {
		t.Fatalf("after a failed trial: %v, %d ejections, until %v; want open, 2, now+20s", is.Breaker, is.Ejections, is.EjectedUntil)
	}

	// Healthy again: after the ejection time, the trial succeeds and web/0 is back.
	failing.Store(false)
	clk.Advance(20 * time.Second)
	if r := do(c, http.MethodGet, h.url+"/", nil, nil); r.body != "a" {
		t.Fatalf("trial request went to %q, want the half-open instance a", r.body)
	}
	if st := instance(h.p.Stats(), "web/0").Breaker; st != proxy.Closed {
		t.Fatalf("after a successful trial: %v, want closed", st)
	}

	// Ejected again, then brought back at once by a readiness edge.
	failing.Store(true)
	for i := 0; instance(h.p.Stats(), "web/0").Breaker != proxy.Open; i++ {
		if i > 100 {
			t.Fatal("not ejected the second time")
		}
		do(c, http.MethodGet, h.url+"/", nil, nil)
	}
	failing.Store(false)
	h.p.SetBackend("web/0", instance(h.p.Stats(), "web/0").Addr, false)
	h.p.SetBackend("web/0", instance(h.p.Stats(), "web/0").Addr, true)
	if st := instance(h.p.Stats(), "web/0").Breaker; st != proxy.Closed {
		t.Fatalf("after a readiness edge: %v, want closed", st)
	}
	sawA := false
	for range 50 {
		if do(c, http.MethodGet, h.url+"/", nil, nil).body == "a" {
			sawA = true
			break
		}
	}
	if !sawA {
		t.Fatal("web/0 gets no traffic after its readiness edge")
	}
}

func TestMaxEjectionPercentAndPanic(t *testing.T) {
	clk := clocktest.New(t0)
	cfg := baseConfig()
	h := mustStart(t, cfg, clk)
	var failing atomic.Bool
	failing.Store(true)
	for i, name := range []string{"a", "b", "c"} {
		h.p.SetBackend("web/"+string(rune('0'+i)), backend(t, toggle(name, &failing)), true)
	}
	c := client(t)
	for range 60 {
		do(c, http.MethodGet, h.url+"/", nil, nil)
	}
	ejected := 0
	for _, is := range h.p.Stats().Instances {
		if is.Breaker != proxy.Closed {
			ejected++
		}
	}
	// max_ejection_percent 50 of 3 ready instances: one.
	if ejected != 1 {
		t.Fatalf("%d of 3 instances ejected, want 1 (max_ejection_percent 50)", ejected)
	}
	if !containsAll(h.logs.String(), "max_ejection_percent already reached") {
		t.Errorf("refused ejection not logged")
	}

	// With every instance allowed to go, all are ejected and panic mode serves from all of them:
	// clients get the instances' answers, not "no ready instance".
	cfg.Outlier.MaxEjectionPercent = intp(100)
	h = mustStart(t, cfg, clk)
	h.p.SetBackend("web/0", backend(t, toggle("a", &failing)), true)
	h.p.SetBackend("web/1", backend(t, toggle("b", &failing)), true)
	for range 20 {
		do(c, http.MethodGet, h.url+"/", nil, nil)
	}
	s := h.p.Stats()
	if !s.Panic {
		t.Fatalf("not in panic mode with every instance ejected: %+v", s.Instances)
	}
	r := do(c, http.MethodGet, h.url+"/", nil, nil)
	if r.status != 500 || !containsAll(r.body, "failing") {
		t.Fatalf("panic mode answer %d %q, want an instance's own 500", r.status, r.body)
	}
}
