package proxy_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testPolicy() proxy.OutlierPolicy {
	return proxy.OutlierPolicy{
		ConsecutiveErrors: 3, ErrorRate: 0.5, MinRequests: 10, Window: 10 * time.Second,
		BaseEjection: 5 * time.Second, MaxEjection: 40 * time.Second,
	}
}

// TestOutlierTimeline walks one instance through ejection, trial, re-ejection
// with a growing ejection time, return, and the error-rate rule.
func TestOutlierTimeline(t *testing.T) {
	type step struct {
		at    time.Duration
		op    string // ok, fail, eject, return, allow
		want  string // verdict: "", "eject", "returned"; for allow: "true"/"false"
		state proxy.BreakerState
		eject time.Duration // for op eject: the ejection time returned
	}
	steps := []step{
		{0, "fail", "", proxy.Closed, 0},
		{1 * time.Millisecond, "fail", "", proxy.Closed, 0},
		{2 * time.Millisecond, "ok", "", proxy.Closed, 0}, // a success breaks the run
		{3 * time.Millisecond, "fail", "", proxy.Closed, 0},
		{4 * time.Millisecond, "fail", "", proxy.Closed, 0},
		{5 * time.Millisecond, "fail", "eject", proxy.Closed, 0}, // 3 in a row: the rule trips
		{5 * time.Millisecond, "eject", "", proxy.Open, 5 * time.Second},
		{1 * time.Second, "allow", "false", proxy.Open, 0},
		{2 * time.Second, "fail", "", proxy.Open, 0},                                    // late outcome of an earlier request: ignored
		{5*time.Second + 5*time.Millisecond, "allow", "true", proxy.HalfOpen, 0},        // the trial
		{5*time.Second + 6*time.Millisecond, "allow", "false", proxy.HalfOpen, 0},       // one at a time
		{5*time.Second + 7*time.Millisecond, "fail", "eject", proxy.HalfOpen, 0},        // trial failed
		{5*time.Second + 7*time.Millisecond, "eject", "", proxy.Open, 10 * time.Second}, // doubled
		{15 * time.Second, "allow", "false", proxy.Open, 0},
		{15*time.Second + 7*time.Millisecond, "allow", "true", proxy.HalfOpen, 0},
		{15*time.Second + 8*time.Millisecond, "ok", "returned", proxy.Closed, 0}, // trial succeeded
		{16 * time.Second, "fail", "", proxy.Closed, 0},
		{16 * time.Second, "fail", "", proxy.Closed, 0},
		{16 * time.Second, "fail", "eject", proxy.Closed, 0},
		{16 * time.Second, "eject", "", proxy.Open, 20 * time.Second}, // third in a row: 20s
		{17 * time.Second, "return", "", proxy.Closed, 0},             // readiness edge
		{18 * time.Second, "fail", "", proxy.Closed, 0},
		{18 * time.Second, "fail", "", proxy.Closed, 0},
		{18 * time.Second, "fail", "eject", proxy.Closed, 0},
		{18 * time.Second, "eject", "", proxy.Open, 40 * time.Second}, // capped at max
		{58 * time.Second, "ok", "returned", proxy.Closed, 0},
		// Healthy for longer than max_ejection: the next ejection starts at base again.
		{100 * time.Second, "ok", "", proxy.Closed, 0},
		{101 * time.Second, "fail", "", proxy.Closed, 0},
		{101 * time.Second, "fail", "", proxy.Closed, 0},
		{101 * time.Second, "fail", "eject", proxy.Closed, 0},
		{101 * time.Second, "eject", "", proxy.Open, 5 * time.Second},
	}
	o := proxy.NewOutlier(testPolicy())
	for i, s := range steps {
		now := t0.Add(s.at)
		var got string
		switch s.op {
		case "ok", "fail":
			v := o.Record(now, s.op == "ok")
			switch {
			case v.Eject:
				got = "eject"
			case v.Returned:
				got = "returned"
			}
			if (v.Eject || v.Returned) != (v.Reason != "") {
				t.Errorf("step %d: verdict %+v without a matching reason", i, v)
			}
		case "eject":
			if d := o.Eject(now); d != s.eject {
				t.Fatalf("step %d +%v: ejection %v, want %v", i, s.at, d, s.eject)
			}
		case "return":
			o.Return()
		case "allow":
			if o.Allow(now) {
				got = "true"
			} else {
				got = "false"
			}
		}
		if got != s.want {
			t.Fatalf("step %d +%v %s: got %q, want %q", i, s.at, s.op, got, s.want)
		}
		if st := o.State(now); st != s.state {
			t.Fatalf("step %d +%v %s: state %v, want %v", i, s.at, s.op, st, s.state)
		}
	}
}

func TestOutlierErrorRate(t *testing.T) {
	o := proxy.NewOutlier(testPolicy())
	// Alternate ok/fail: never 3 in a row, but a 50% error rate once 10 requests are seen.
	for i := range 9 {
		if v := o.Record(t0.Add(time.Duration(i)*time.Millisecond), i%2 == 0); v.Eject {
			t.Fatalf("request %d: ejected before min_requests: %s", i, v.Reason)
		}
	}
	v := o.Record(t0.Add(10*time.Millisecond), false)
	if !v.Eject {
		t.Fatalf("10th request (5 of 10 failed): no ejection")
	}
	t.Logf("reason: %s", v.Reason)

	// Failures older than the window are forgotten.
	o = proxy.NewOutlier(testPolicy())
	for i := range 8 {
		o.Record(t0.Add(time.Duration(i)*time.Millisecond), i%2 == 0)
	}
	later := t0.Add(30 * time.Second)
	for i := range 9 {
		if v := o.Record(later.Add(time.Duration(i)*time.Millisecond), true); v.Eject {
			t.Fatalf("ejected on old failures: %s", v.Reason)
		}
	}
	if v := o.Record(later.Add(time.Second), false); v.Eject {
		t.Fatalf("1 failure in 10 recent requests ejected: %s", v.Reason)
	}
}

func TestOutlierAbandonedTrial(t *testing.T) {
	o := proxy.NewOutlier(testPolicy())
	o.Eject(t0)
	now := t0.Add(6 * time.Second)
	if !o.Allow(now) {
		t.Fatal("no trial after the ejection time")
	}
	o.Abandon()
	if !o.Allow(now) {
		t.Fatal("an abandoned trial blocks the next one")
	}
}
