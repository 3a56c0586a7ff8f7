package fleetview_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/fleetview"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// chain builds n records chained from the first.
func chain(n int) []audit.Record {
	var out []audit.Record
	var h audit.Head
	for i := range n {
		r := audit.Next(h, audit.Record{Time: t0.Add(time.Duration(i) * time.Second), Actor: "test", Kind: "k", Reason: fmt.Sprint("record ", i+1)})
		out = append(out, r)
		h = r.Head()
	}
	return out
}

// rechain recomputes every hash from record i (0-based) on: the strong
// rewrite, which the host's own verify cannot see.
func rechain(recs []audit.Record, i int) {
	var h audit.Head
	if i > 0 {
		h = recs[i-1].Head()
	}
	for j := i; j < len(recs); j++ {
		recs[j] = audit.Next(h, recs[j])
		h = recs[j].Head()
	}
}

func anchorOf(recs []audit.Record, seqs ...int64) fleetview.Anchor {
	a := fleetview.Anchor{Host: "h2", At: t0}
	for _, s := range seqs {
		a = a.Extend(recs[s-1].Head(), "", t0)
	}
	a.Host = "h2"
	return a
}

func check(a fleetview.Anchor, recs []audit.Record) error {
	c := fleetview.NewChecker(a)
	for _, r := range recs {
		if r.Seq > c.Want() {
			break
		}
		if err := c.Add(r); err != nil {
			return err
		}
	}
	return c.Done()
}

func TestCheckerFindsRewrites(t *testing.T) {
	good := chain(30)
	a := anchorOf(good, 5, 12, 20, 28)
	if err := check(a, good); err != nil {
		t.Fatalf("untouched log: %v", err)
	}
	// Records after the newest anchor are not checked against it but must link.
	if err := check(a, good[:28]); err != nil {
		t.Fatalf("log ending at the anchor: %v", err)
	}
	if err := audit.Verify(good); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		edit func([]audit.Record) []audit.Record
		want string
	}{
		{"reason edited, hash left", func(r []audit.Record) []audit.Record { r[16].Reason = "nothing happened"; return r },
			"record 17 was changed after it was written"},
		{"reason edited, chain recomputed", func(r []audit.Record) []audit.Record {
			r[16].Reason = "nothing happened"
			rechain(r, 16)
			return r
		}, "a record in 13–20 was rewritten"},
		{"anchored record itself rewritten", func(r []audit.Record) []audit.Record {
			r[4].Actor = "someone else"
			rechain(r, 4)
			return r
		}, "a record in 1–5 was rewritten"},
		{"record removed, chain recomputed", func(r []audit.Record) []audit.Record {
			r = append(r[:9:9], r[10:]...)
			for i := 9; i < len(r); i++ {
				r[i].Seq--
			}
			rechain(r, 9)
			return r
		}, "a record in 6–12 was rewritten"},
		{"tail removed", func(r []audit.Record) []audit.Record { return r[:25] },
			"its log ends at record 25 but record 28 was anchored"},
		{"record removed, seq gap", func(r []audit.Record) []audit.Record { return append(r[:9:9], r[10:]...) },
			"record 10 was removed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := tc.edit(append([]audit.Record(nil), good...))
			err := check(a, recs)
			if !errors.Is(err, fleetview.ErrRewritten) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "host h2") {
				t.Fatalf("got %v, want ErrRewritten naming host h2 and %q", err, tc.want)
			}
		})
	}
	// The strong rewrite passes the host's own check: only the anchor finds it.
	recs := append([]audit.Record(nil), good...)
	recs[16].Reason = "nothing happened"
	rechain(recs, 16)
	if err := audit.Verify(recs); err != nil {
		t.Fatalf("a recomputed chain should verify on its own: %v", err)
	}
}

func TestAnchorKeepsTheLastHeads(t *testing.T) {
	var a fleetview.Anchor
	for i := range fleetview.MaxAnchors + 10 {
		a = a.Extend(audit.Head{Seq: int64(i + 1)}, "http://x", t0)
	}
	if len(a.Heads) != fleetview.MaxAnchors || a.Heads[0].Seq != 11 || a.Newest().Seq != int64(fleetview.MaxAnchors+10) {
		t.Fatalf("heads %d, first %d, newest %d", len(a.Heads), a.Heads[0].Seq, a.Newest().Seq)
	}
}

func TestFitBoundsTheSummary(t *testing.T) {
	s := fleetview.Summary{Host: "h1"}
	for i := range 500 {
		s.Services = append(s.Services, fleetview.Service{Name: fmt.Sprintf("svc-%03d-%s", i, strings.Repeat("x", 100))})
	}
	for i := range 100 {
		s.Events = append(s.Events, fleetview.Event{Time: t0.Add(time.Duration(i)), Kind: "k", Reason: strings.Repeat("é", 400)})
	}
	got, b := fleetview.Fit(s)
	if len(b) > fleetview.MaxBytes || !got.Truncated || len(got.Services) > fleetview.MaxServices || len(got.Events) > fleetview.MaxEvents {
		t.Fatalf("bytes %d, truncated %v, services %d, events %d", len(b), got.Truncated, len(got.Services), len(got.Events))
	}
	for _, e := range got.Events {
		if len(e.Reason) > fleetview.MaxText || !strings.HasSuffix(e.Reason, "…") {
			t.Fatalf("reason %d bytes, %q", len(e.Reason), e.Reason[len(e.Reason)-5:])
		}
	}
	if len(got.Events) > 0 && !got.Events[len(got.Events)-1].Time.Equal(t0.Add(99)) {
		t.Fatalf("the newest event was dropped: %v", got.Events[len(got.Events)-1].Time)
	}
	small, b := fleetview.Fit(fleetview.Summary{Host: "h1", Events: s.Events[:3]})
	if small.Truncated || len(small.Events) != 3 || len(b) > fleetview.MaxBytes {
		t.Fatalf("a small summary was cut: %+v", small)
	}
}

func member(host string, st fleet.State) fleet.Member {
	return fleet.Member{Info: fleet.Info{Host: host}, State: st}
}

func answers(a ...string) []fleetview.Answer {
	var out []fleetview.Answer
	for i, x := range a {
		out = append(out, fleetview.Answer{ID: fmt.Sprint("q", i+1), Answer: x, Why: "evidence"})
	}
	return out
}

func TestFleetCardIsYesOnlyFromEveryHost(t *testing.T) {
	ids := []string{"q1", "q2", "q3"}
	all := fleetview.Summary{Scorecard: answers("yes", "yes", "yes")}
	st := func(members []fleet.Member, sums map[string]fleetview.Summary, watching bool) fleetview.Status {
		return fleetview.Combine(fleet.Status{Fleet: "prod", Self: "h1", Watching: true, Hosts: members}, sums, watching, t0)
	}
	three := []fleet.Member{member("h1", fleet.Up), member("h2", fleet.Up), member("h3", fleet.Up)}
	cases := []struct {
		name     string
		members  []fleet.Member
		sums     map[string]fleetview.Summary
		watching bool
		want     []string
	}{
		{"every host yes", three, map[string]fleetview.Summary{"h1": all, "h2": all, "h3": all}, true, []string{"yes", "yes", "yes"}},
		{"one host without summary", three, map[string]fleetview.Summary{"h1": all, "h2": all}, true, []string{"unknown", "unknown", "unknown"}},
		{"one host says no", three, map[string]fleetview.Summary{"h1": all, "h2": all,
			"h3": {Scorecard: answers("yes", "no", "unknown")}}, true, []string{"yes", "no", "unknown"}},
		{"scorecard not evaluated", three, map[string]fleetview.Summary{"h1": all, "h2": all, "h3": {}}, true, []string{"unknown", "unknown", "unknown"}},
		{"suspect host", []fleet.Member{member("h1", fleet.Up), member("h2", fleet.Up), member("h3", fleet.Suspect)},
			map[string]fleetview.Summary{"h1": all, "h2": all}, true, []string{"unknown", "unknown", "unknown"}},
		{"lost host excluded", []fleet.Member{member("h1", fleet.Up), member("h2", fleet.Up), member("h3", fleet.Lost)},
			map[string]fleetview.Summary{"h1": all, "h2": all}, true, []string{"yes", "yes", "yes"}},
		{"not watching yet", three, map[string]fleetview.Summary{"h1": all, "h2": all, "h3": all}, false, []string{"unknown", "unknown", "unknown"}},
		{"no host", nil, nil, true, []string{"unknown", "unknown", "unknown"}},
		{"a question the host does not know", three, map[string]fleetview.Summary{"h1": all, "h2": all,
			"h3": {Scorecard: answers("yes", "yes")}}, true, []string{"yes", "yes", "unknown"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fleetview.FleetCard(st(tc.members, tc.sums, tc.watching), ids, t0)
			var got []string
			for _, it := range c.Items {
				got = append(got, it.Answer)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v (%+v)", got, tc.want, c)
			}
		})
	}
	c := fleetview.FleetCard(st([]fleet.Member{member("h1", fleet.Up), member("h3", fleet.Lost)}, map[string]fleetview.Summary{"h1": all}, true), ids, t0)
	if fmt.Sprint(c.Excluded) != "[h3]" || c.Yes != 3 {
		t.Fatalf("excluded %v, yes %d", c.Excluded, c.Yes)
	}
}

func TestCombineMergesEventsByTime(t *testing.T) {
	sums := map[string]fleetview.Summary{
		"h1": {Events: []fleetview.Event{{Time: t0, Kind: "a"}, {Time: t0.Add(2 * time.Second), Kind: "c"}}},
		"h2": {Events: []fleetview.Event{{Time: t0.Add(time.Second), Kind: "b"}}},
	}
	st := fleetview.Combine(fleet.Status{Self: "h1", Watching: true, Hosts: []fleet.Member{member("h1", fleet.Up)}}, sums, true, t0)
	if len(st.Hosts) != 2 || st.Hosts[1].Host != "h2" || st.Hosts[1].Summary == nil {
		t.Fatalf("hosts %+v", st.Hosts)
	}
	var got []string
	for _, e := range st.Events() {
		got = append(got, e.Host+":"+e.Kind)
	}
	if fmt.Sprint(got) != "[h1:a h2:b h1:c]" {
		t.Fatalf("events %v", got)
	}
}

// memLog is an audit log in memory for the Anchorer.
type memLog struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (l *memLog) append(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range n {
		var h audit.Head
		if len(l.recs) > 0 {
			h = l.recs[len(l.recs)-1].Head()
		}
		l.recs = append(l.recs, audit.Next(h, audit.Record{Time: t0, Kind: "k", Reason: fmt.Sprint(len(l.recs))}))
	}
}

func (l *memLog) head() audit.Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) == 0 {
		return audit.Head{}
	}
	return l.recs[len(l.recs)-1].Head()
}

func (l *memLog) at(_ context.Context, seq int64) (audit.Record, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < 1 || seq > int64(len(l.recs)) {
		return audit.Record{}, false, nil
	}
	return l.recs[seq-1], true, nil
}

func readAnchor(t *testing.T, cli *etcd.Client, key string) fleetview.Anchor {
	t.Helper()
	kv, ok, err := cli.Get(context.Background(), key)
	if err != nil || !ok {
		t.Fatalf("anchor %s: ok %v, %v", key, ok, err)
	}
	var a fleetview.Anchor
	if err := json.Unmarshal(kv.Value, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAnchorerAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := fleetview.AnchorsPrefix("/medic", "prod") + "/h2"
	log := &memLog{}
	log.append(3)
	run := func(l *memLog) (stop func(), refused chan error) {
		refused = make(chan error, 1)
		an := &fleetview.Anchorer{Etcd: cli, Key: key, Host: "h2", API: "http://10.0.0.2:7070", Head: l.head, At: l.at,
			Every: 50 * time.Millisecond, Refused: func(_ context.Context, err error) { refused <- err }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); an.Run(ctx) }()
		return func() { cancel(); <-done }, refused
	}
	stop, _ := run(log)
	waitFor(t, "head 3 anchored", 10*time.Second, func() bool {
		kv, ok, _ := cli.Get(context.Background(), key)
		return ok && strings.Contains(string(kv.Value), `"seq":3`)
	})
	log.append(4)
	waitFor(t, "head 7 anchored", 10*time.Second, func() bool {
		a := readAnchor(t, cli, key)
		return a.Newest().Seq == 7
	})
	stop()
	a := readAnchor(t, cli, key)
	if a.API != "http://10.0.0.2:7070" || len(a.Heads) < 2 || a.Heads[0].Seq != 3 {
		t.Fatalf("anchor %+v", a)
	}
	if err := check(a, log.recs); err != nil {
		t.Fatalf("the host's own log against its anchor: %v", err)
	}
	all, err := fleetview.ReadAnchors(context.Background(), cli, fleetview.AnchorsPrefix("/medic", "prod"))
	if err != nil || all["h2"].Newest().Seq != 7 {
		t.Fatalf("ReadAnchors: %v, %+v", err, all)
	}

	// A store rewritten under the fleet (chain recomputed after record 2),
	// then the agent restarted on it: the anchor is kept, never overwritten.
	bad := &memLog{recs: append([]audit.Record(nil), log.recs...)}
	bad.recs[1].Reason = "rewritten"
	rechain(bad.recs, 1)
	bad.append(5)
	stop, refused := run(bad)
	defer stop()
	select {
	case err := <-refused:
		if !errors.Is(err, fleetview.ErrRewritten) || !strings.Contains(err.Error(), "record 7") {
			t.Fatalf("refused with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the anchorer did not refuse a log that does not extend its anchor")
	}
	if got := readAnchor(t, cli, key); got.Newest() != a.Newest() {
		t.Fatalf("the anchor was overwritten: %+v, was %+v", got.Newest(), a.Newest())
	}
}

func TestPublisherAndCacheAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	lease, err := cli.Raw().Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fleetview.SummariesPrefix("/medic", "prod")
	var mu sync.Mutex
	ready := 1
	pub := &fleetview.Publisher{Etcd: cli, Key: prefix + "/h1", Lease: func() int64 { return int64(lease.ID) },
		Every: 50 * time.Millisecond, Build: func(context.Context) fleetview.Summary {
			mu.Lock()
			defer mu.Unlock()
			return fleetview.Summary{Host: "h1", Services: []fleetview.Service{{Name: "web", Desired: 2, Ready: ready}}}
		}}
	cache := &fleetview.Cache{}
	wg.Add(2)
	go func() { defer wg.Done(); pub.Run(ctx) }()
	go func() { defer wg.Done(); _ = cache.Follow(ctx, cli, prefix, nil, nil) }()
	readyOf := func() int {
		s, _ := cache.Summaries()
		if len(s["h1"].Services) == 0 {
			return -1
		}
		return s["h1"].Services[0].Ready
	}
	waitFor(t, "h1's summary seen", 10*time.Second, func() bool { return readyOf() == 1 })
	mu.Lock()
	ready = 2
	mu.Unlock()
	waitFor(t, "h1's new summary seen", 10*time.Second, func() bool { return readyOf() == 2 })
	// The summary goes with the lease.
	if _, err := cli.Raw().Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "h1's summary gone with its lease", 10*time.Second, func() bool {
		s, _ := cache.Summaries()
		_, ok := s["h1"]
		return !ok
	})
}
