package detect_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

func TestSlope(t *testing.T) {
	var pts []signal.Point
	for i := range 20 {
		x := float64(i) * 7.5
		pts = append(pts, signal.Point{T: t0.Add(time.Duration(x * float64(time.Second))), V: 1e12 + 3 - 2*x})
	}
	if got := detect.Slope(pts); math.Abs(got-(-2)) > 1e-6 {
		t.Errorf("slope = %v, want -2", got)
	}
	if got := detect.Slope(pts[:1]); got != 0 {
		t.Errorf("slope of one point = %v", got)
	}
	same := []signal.Point{{T: t0, V: 1}, {T: t0, V: 5}}
	if got := detect.Slope(same); got != 0 {
		t.Errorf("slope without time spread = %v", got)
	}
}

// TestTrendLeak: RSS growing 300 MiB/h under noise fires a 200 MiB/h trend
// once half the window has data and `for` has passed; a flat series and one
// growing 100 MiB/h do not.
func TestTrendLeak(t *testing.T) {
	c := mustCondition(t, `{signal: instance_rss_bytes, labels: {service: web}, trend: {window: 10m, above_per_hour: 200MiB}, for: 1m}`)
	rng := rand.New(rand.NewPCG(7, 7))
	store := signal.NewStore(signal.Options{})
	rates := map[string]float64{"web/0": 300, "web/1": 0, "web/2": 100} // MiB per hour
	firstPending, firstFiring := map[string]time.Duration{}, map[string]time.Duration{}
	for i := 0; i <= 180; i++ { // 30 minutes, one sample every 10s
		at := time.Duration(i) * 10 * time.Second
		for inst, r := range rates {
			v := 500*float64(1<<20) + r*float64(1<<20)*at.Hours() + rng.NormFloat64()*5*float64(1<<20)
			store.Add("instance_rss_bytes", signal.Labels{"service": "web", "instance": inst}, t0.Add(at), v)
		}
		for _, tr := range c.Eval(t0.Add(at), store) {
			inst := tr.Labels["instance"]
			switch tr.To {
			case detect.StatePending:
				if _, ok := firstPending[inst]; !ok {
					firstPending[inst] = at
				}
			case detect.StateFiring:
				if _, ok := firstFiring[inst]; !ok {
					firstFiring[inst] = at
				}
				if tr.Value < 250<<20 || tr.Value > 350<<20 {
					t.Errorf("firing slope %v MiB/h, want about 300", tr.Value/(1<<20))
				}
			case detect.StateInactive:
				t.Errorf("+%v: %s resolved: %s", at, inst, tr.Reason)
			}
		}
	}
	if firstPending["web/0"] != 5*time.Minute || firstFiring["web/0"] != 6*time.Minute {
		t.Errorf("web/0 pending at %v, firing at %v; want 5m (half the window) and 6m (+for)",
			firstPending["web/0"], firstFiring["web/0"])
	}
	for _, inst := range []string{"web/1", "web/2"} {
		if at, ok := firstFiring[inst]; ok {
			t.Errorf("%s fired at %v", inst, at)
		}
	}
}

func TestTrendFalling(t *testing.T) {
	c := mustCondition(t, `{signal: host_disk_free_bytes, trend: {window: 1m, below_per_hour: -10GiB, min_points: 3}}`)
	store := signal.NewStore(signal.Options{})
	l := signal.Labels{"path": "/data"}
	var got []detect.Transition
	for i := 0; i <= 12; i++ {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		store.Add("host_disk_free_bytes", l, at, 100*(1<<30)-float64(i)*(1<<30)) // 1 GiB per 5 s
		got = append(got, c.Eval(at, store)...)
	}
	if summary(got) != `inactive>firing{path="/data"}` || !got[0].At.Equal(t0.Add(30*time.Second)) {
		t.Errorf("transitions %s", reasons(got))
	}
}
