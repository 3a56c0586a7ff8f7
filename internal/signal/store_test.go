package signal_test

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/signal"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLabelsKey(t *testing.T) {
	for _, c := range []struct {
		l    signal.Labels
		want string
	}{
		{nil, ""},
		{signal.Labels{}, ""},
		{signal.Labels{"service": "web", "instance": "web/0"}, `instance="web/0",service="web"`},
		{signal.Labels{"a": `x"y,z=`}, `a="x\"y,z="`},
	} {
		if got := c.l.Key(); got != c.want {
			t.Errorf("%v.Key() = %q, want %q", map[string]string(c.l), got, c.want)
		}
	}
	// Keys are injective where naive joining is not.
	a := signal.Labels{"a": `1",b="2`}
	b := signal.Labels{"a": "1", "b": "2"}
	if a.Key() == b.Key() {
		t.Errorf("distinct label sets share key %q", a.Key())
	}
	if !b.Matches(signal.Labels{"a": "1"}) || b.Matches(signal.Labels{"a": "2"}) || !b.Matches(nil) {
		t.Error("Matches")
	}
	if !b.Matches(signal.Labels{"c": ""}) || b.Matches(signal.Labels{"a": ""}) {
		t.Error(`Matches with an empty value selects series lacking the label`)
	}
}

func TestStoreRangeLatest(t *testing.T) {
	s := signal.NewStore(signal.Options{})
	web0 := signal.Labels{"service": "web", "instance": "web/0"}
	web1 := signal.Labels{"service": "web", "instance": "web/1"}
	db := signal.Labels{"service": "db", "instance": "db/0"}
	for i := range 10 {
		at := t0.Add(time.Duration(i) * time.Second)
		s.Add("rss", web0, at, float64(i))
		s.Add("rss", web1, at, float64(10*i))
		s.Add("rss", db, at, 1)
	}
	got := s.Range("rss", signal.Labels{"service": "web"}, t0.Add(2*time.Second), t0.Add(4*time.Second))
	if len(got) != 2 {
		t.Fatalf("Range returned %d series, want 2: %+v", len(got), got)
	}
	if got[0].Labels["instance"] != "web/0" || len(got[0].Points) != 3 || got[0].Points[0].V != 2 || got[0].Points[2].V != 4 {
		t.Errorf("web/0 = %+v, want points 2,3,4", got[0])
	}
	if got[1].Labels["instance"] != "web/1" || got[1].Points[1].V != 30 {
		t.Errorf("web/1 = %+v", got[1])
	}
	// The result is a copy.
	got[0].Labels["instance"] = "mutated"
	got[0].Points[0].V = -1
	if again := s.Range("rss", web0, t0, t0.Add(time.Hour)); again[0].Labels["instance"] != "web/0" || again[0].Points[2].V != 2 {
		t.Error("Range shares memory with the store")
	}
	lat := s.Latest("rss", signal.Labels{"service": "web"})
	if len(lat) != 2 || lat[0].V != 9 || lat[1].V != 90 || !lat[0].T.Equal(t0.Add(9*time.Second)) {
		t.Errorf("Latest = %+v", lat)
	}
	if s.Range("nope", nil, t0, t0.Add(time.Hour)) != nil || s.Latest("nope", nil) != nil {
		t.Error("unknown signal returned series")
	}
}

func TestStoreOutOfOrderAndReplace(t *testing.T) {
	s := signal.NewStore(signal.Options{})
	s.Add("x", nil, t0.Add(2*time.Second), 1)
	s.Add("x", nil, t0.Add(2*time.Second), 5) // same time: replaces
	s.Add("x", nil, t0.Add(1*time.Second), 9) // older: dropped
	pts := s.Range("x", nil, t0, t0.Add(time.Minute))[0].Points
	if len(pts) != 1 || pts[0].V != 5 {
		t.Errorf("points = %+v, want one point of value 5", pts)
	}
	s.Add("x", nil, t0.Add(3*time.Second), math.NaN())
	s.Add("x", nil, t0.Add(4*time.Second), math.Inf(1))
	if st := s.Stats(); st.DroppedOutOfOrder != 1 || st.DroppedNonFinite != 2 || st.Points != 1 || st.Series != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// TestStoreRing: a series keeps at most MaxPoints points, the newest ones,
// in order, across the growth and wrap of its ring.
func TestStoreRing(t *testing.T) {
	for _, maxPoints := range []int{1, 3, 16, 17, 100} {
		s := signal.NewStore(signal.Options{MaxPoints: maxPoints, Retention: 24 * time.Hour})
		const n = 250
		for i := range n {
			s.Add("x", nil, t0.Add(time.Duration(i)*time.Second), float64(i))
		}
		pts := s.Range("x", nil, t0, t0.Add(time.Hour))[0].Points
		if len(pts) != maxPoints {
			t.Fatalf("max %d: kept %d points", maxPoints, len(pts))
		}
		for i, p := range pts {
			if want := float64(n - maxPoints + i); p.V != want {
				t.Fatalf("max %d: point %d = %v, want %v", maxPoints, i, p.V, want)
			}
		}
	}
}

// TestStoreRetention: points older than the retention before the newest
// point of their series go, and so do whole series that stopped reporting.
func TestStoreRetention(t *testing.T) {
	s := signal.NewStore(signal.Options{Retention: time.Minute})
	for i := range 120 {
		s.Add("x", nil, t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	pts := s.Range("x", nil, t0, t0.Add(time.Hour))[0].Points
	if first := pts[0]; first.T.Before(t0.Add(59*time.Second)) || len(pts) != 61 {
		t.Errorf("kept %d points from %v; want the last minute (61 points)", len(pts), first.T.Sub(t0))
	}
	s.Add("gone", signal.Labels{"instance": "web/3"}, t0.Add(2*time.Minute), 1)
	for i := range 300 {
		s.Add("x", nil, t0.Add(2*time.Minute+time.Duration(i)*time.Second), 1)
	}
	if got := s.Latest("gone", nil); got != nil {
		t.Errorf("a series silent for 5 retentions is still there: %+v", got)
	}
	if st := s.Stats(); st.Series != 1 {
		t.Errorf("series = %d, want 1", st.Series)
	}
}

// TestStoreMaxSeries: a new series over the limit is dropped and counted,
// existing series keep receiving samples, and room made by stale series is
// reused.
func TestStoreMaxSeries(t *testing.T) {
	s := signal.NewStore(signal.Options{MaxSeries: 3, Retention: time.Minute})
	for i := range 5 {
		s.Add("x", signal.Labels{"i": fmt.Sprint(i)}, t0, 1)
	}
	st := s.Stats()
	if st.Series != 3 || st.DroppedSeriesLimit != 2 {
		t.Fatalf("stats = %+v, want 3 series and 2 dropped", st)
	}
	s.Add("x", signal.Labels{"i": "0"}, t0.Add(time.Second), 2)
	if got := s.Latest("x", signal.Labels{"i": "0"}); len(got) != 1 || got[0].V != 2 {
		t.Errorf("existing series stopped receiving: %+v", got)
	}
	// Two minutes on, only i=0 still reports; the others are stale and make room.
	s.Add("x", signal.Labels{"i": "0"}, t0.Add(2*time.Minute), 3)
	s.Add("x", signal.Labels{"i": "new"}, t0.Add(2*time.Minute), 4)
	if got := s.Latest("x", signal.Labels{"i": "new"}); len(got) != 1 {
		t.Errorf("no room made by stale series: stats %+v", s.Stats())
	}
	if n := s.Delete("x", signal.Labels{"i": "new"}); n != 1 || s.Stats().Series != 1 {
		t.Errorf("Delete removed %d, stats %+v", n, s.Stats())
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := signal.NewStore(signal.Options{MaxPoints: 50, MaxSeries: 20})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				l := signal.Labels{"w": fmt.Sprint(w % 4)}
				s.Add("x", l, t0.Add(time.Duration(i)*time.Millisecond), float64(i))
				s.Range("x", nil, t0, t0.Add(time.Second))
				s.Latest("x", l)
				s.Stats()
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Series != 4 || st.Points > 4*50 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRates(t *testing.T) {
	var r signal.Rates
	l := signal.Labels{"instance": "web/0"}
	steps := []struct {
		at     time.Duration
		v      float64
		want   float64
		wantOK bool
	}{
		{0, 10, 0, false},               // first observation
		{10 * time.Second, 30, 2, true}, // +20 in 10 s
		{10 * time.Second, 40, 0, false},
		{20 * time.Second, 5, 0.5, true}, // reset: +5 since the restart
	}
	for _, s := range steps {
		got, ok := r.Rate("cpu", l, t0.Add(s.at), s.v)
		if got != s.want || ok != s.wantOK {
			t.Errorf("+%v v=%v: got %v,%v want %v,%v", s.at, s.v, got, ok, s.want, s.wantOK)
		}
	}
	r.Prune(t0.Add(time.Hour))
	if _, ok := r.Rate("cpu", l, t0.Add(2*time.Hour), 1); ok {
		t.Error("a pruned series still has a previous value")
	}
}

// TestStoreHistory: after SetHistory a signal keeps the points its readers
// need (its window before the newest point), one no reader names keeps its
// newest point only, and what a series held beyond that is dropped at once;
// a later, longer history keeps points from then on.
func TestStoreHistory(t *testing.T) {
	s := signal.NewStore(signal.Options{Retention: time.Hour})
	l := signal.Labels{"instance": "web/0"}
	for i := range 600 {
		at := t0.Add(time.Duration(i) * time.Second)
		s.Add("read", l, at, float64(i))
		s.Add("unread", l, at, float64(i))
	}
	if st := s.Stats(); st.Points != 1200 {
		t.Fatalf("before SetHistory: %d points, want 1200 (every signal keeps Retention)", st.Points)
	}
	s.SetHistory(map[string]time.Duration{"read": time.Minute})
	all := t0.Add(-time.Hour)
	end := t0.Add(time.Hour)
	if pts := s.Range("read", nil, all, end)[0].Points; len(pts) != 61 || pts[0].V != 539 || pts[60].V != 599 {
		t.Fatalf("read after SetHistory: %d points from %v to %v, want 61 from 539 to 599", len(pts), pts[0].V, pts[len(pts)-1].V)
	}
	if pts := s.Range("unread", nil, all, end)[0].Points; len(pts) != 1 || pts[0].V != 599 {
		t.Fatalf("unread after SetHistory: %+v, want the newest point only", pts)
	}
	if st := s.Stats(); st.Points != 62 || st.Series != 2 {
		t.Fatalf("stats %+v, want 62 points in 2 series", st)
	}
	for i := 600; i < 700; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		s.Add("read", l, at, float64(i))
		s.Add("unread", l, at, float64(i))
		s.Add("new", l, at, float64(i))
	}
	if pts := s.Range("read", nil, all, end)[0].Points; len(pts) != 61 || pts[60].V != 699 {
		t.Fatalf("read: %d points, newest %v; want 61, newest 699", len(pts), pts[len(pts)-1].V)
	}
	for _, name := range []string{"unread", "new"} {
		if l := s.Latest(name, nil); len(l) != 1 || l[0].V != 699 || !l[0].T.Equal(t0.Add(699*time.Second)) {
			t.Fatalf("Latest(%s) = %+v, want 699 at %v", name, l, t0.Add(699*time.Second))
		}
		if pts := s.Range(name, nil, all, end)[0].Points; len(pts) != 1 {
			t.Fatalf("%s keeps %d points, want 1", name, len(pts))
		}
	}
	s.SetHistory(map[string]time.Duration{"read": time.Minute, "unread": time.Hour})
	for i := 700; i < 710; i++ {
		s.Add("unread", l, t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	if pts := s.Range("unread", nil, all, end)[0].Points; len(pts) != 11 || pts[0].V != 699 {
		t.Fatalf("unread with an hour: %d points from %v, want 11 from 699 (dropped points are not restored)", len(pts), pts[0].V)
	}
	s.SetHistory(nil)
	if pts := s.Range("read", nil, all, end)[0].Points; len(pts) != 1 {
		t.Fatalf("SetHistory(nil): read keeps %d points, want 1 (nil names no signal)", len(pts))
	}
}

// TestStoreTimes: a point's time comes back as the same instant (in UTC),
// and a range from the zero time reads from the start.
func TestStoreTimes(t *testing.T) {
	s := signal.NewStore(signal.Options{})
	at := time.Date(2026, 3, 4, 5, 6, 7, 891, time.FixedZone("X", 3600))
	s.Add("x", nil, at, 1)
	got := s.Range("x", nil, time.Time{}, at)
	if len(got) != 1 || !got[0].Points[0].T.Equal(at) || got[0].Points[0].T.Location() != time.UTC {
		t.Fatalf("Range from the zero time = %+v, want the point at %v in UTC", got, at)
	}
	if got := s.Range("x", nil, at.Add(time.Nanosecond), at.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("Range after the point = %+v, want none", got)
	}
}

// BenchmarkStoreHour is the store of the footprint scenario after an hour:
// 50 instances × the six instance signals the supervisor's poll adds every
// second, 3 600 samples each; it reports the heap the store holds (MB) with
// every signal kept for an hour (as before SetHistory) and with a history
// where one signal is read by a trend over 10 minutes and the rest by
// nothing. go test -run '^$' -bench StoreHour -benchtime 1x ./internal/signal
func BenchmarkStoreHour(b *testing.B) {
	names := []string{"instance_ready", "instance_restarts_total", "instance_rss_bytes",
		"instance_open_fds", "instance_cpu_seconds_total", "instance_cpu_cores"}
	for _, c := range []struct {
		name    string
		history map[string]time.Duration
	}{
		{"all-kept", nil},
		{"conditions", map[string]time.Duration{"instance_rss_bytes": 10 * time.Minute}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s := signal.NewStore(signal.Options{Retention: time.Hour})
				if c.history != nil {
					s.SetHistory(c.history)
				}
				labels := make([]signal.Labels, 50)
				for i := range labels {
					labels[i] = signal.Labels{"service": "demo", "instance": fmt.Sprintf("demo/%d", i)}
				}
				for sec := range 3600 {
					at := t0.Add(time.Duration(sec) * time.Second)
					for _, l := range labels {
						for _, n := range names {
							s.Add(n, l, at, float64(sec))
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "MB")
				b.ReportMetric(float64(s.Stats().Points), "points")
				runtime.KeepAlive(s)
			}
		})
	}
}
