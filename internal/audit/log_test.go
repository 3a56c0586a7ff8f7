package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/sqlite"
)

// MustOpenLog opens a store in dir (a fresh temporary one when empty) and a
// Log on it with a fake clock at t0. The store is closed when the test ends.
func MustOpenLog(tb testing.TB, dir string) (*audit.Log, *sqlite.DB, *clocktest.Fake) {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	db, err := sqlite.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	clk := clocktest.New(t0)
	l, err := audit.Open(db, clk)
	if err != nil {
		tb.Fatal(err)
	}
	return l, db, clk
}

func mustAppend(tb testing.TB, l *audit.Log, r audit.Record) audit.Record {
	tb.Helper()
	got, err := l.Append(context.Background(), r)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func mustVerify(tb testing.TB, l *audit.Log, wantN int) {
	tb.Helper()
	n, err := l.Verify(context.Background())
	if err != nil || n != wantN {
		tb.Fatalf("Verify = %d, %v; want %d, nil", n, err, wantN)
	}
}

func rec(actor, kind, target string) audit.Record {
	return audit.Record{Actor: actor, Kind: kind, Target: target, Reason: "because"}
}

func TestAppendAssignsAndStores(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	ctx := context.Background()
	a := mustAppend(t, l, audit.Record{Actor: "runbook:r", Kind: "action.start", Target: "web/1",
		Correlation: "inc-1", Fields: map[string]string{"step": "restart"}})
	clk.Advance(time.Second)
	own := t0.Add(-time.Hour).In(time.FixedZone("X", 7200))
	b := mustAppend(t, l, audit.Record{Actor: "runbook:r", Kind: "action.end", Time: own})

	if a.Seq != 1 || b.Seq != 2 || a.Prev != (audit.Hash{}) || b.Prev != a.Hash {
		t.Fatalf("seq/prev not assigned: a=%+v b=%+v", a, b)
	}
	if !a.Time.Equal(t0) || a.Time.Location() != time.UTC {
		t.Errorf("a.Time = %v, want the clock's %v in UTC", a.Time, t0)
	}
	if !b.Time.Equal(own) || b.Time.Location() != time.UTC {
		t.Errorf("b.Time = %v, want the caller's %v in UTC", b.Time, own)
	}
	if l.Head() != b.Head() {
		t.Errorf("Head = %+v, want %+v", l.Head(), b.Head())
	}
	got, err := l.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []audit.Record{a, b}) {
		t.Fatalf("List = %+v\nwant %+v", got, []audit.Record{a, b})
	}
	mustVerify(t, l, 2)
}

func TestAppendRejectsAndNormalizes(t *testing.T) {
	l, _, _ := MustOpenLog(t, "")
	ctx := context.Background()
	for _, r := range []audit.Record{
		{Kind: "x"},
		{Actor: "x"},
		{Actor: "x", Kind: "y", Time: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := l.Append(ctx, r); err == nil {
			t.Errorf("Append(%+v) succeeded", r)
		}
	}
	fields := map[string]string{"k\xff": "v\xfe"}
	r := mustAppend(t, l, audit.Record{Actor: "a\xff", Kind: "k", Fields: fields, Seq: 99, Hash: audit.Hash{9}})
	if r.Seq != 1 || r.Actor != "a\uFFFD" || r.Fields["k\uFFFD"] != "v\uFFFD" {
		t.Fatalf("stored %+v", r)
	}
	fields["other"] = "x" // the Log must not retain the caller's map
	got, err := l.List(ctx, audit.Filter{})
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], r) {
		t.Fatalf("List = %+v, %v; want [%+v]", got, err, r)
	}
	mustVerify(t, l, 1)
}

func TestAppendHonoursContext(t *testing.T) {
	l, _, _ := MustOpenLog(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, rec("a", "k", "")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
	mustVerify(t, l, 0)
}

func TestList(t *testing.T) {
	l, _, clk := MustOpenLog(t, "")
	ctx := context.Background()
	// seq:   1        2        3        4        5        6
	// actor: alice    bob      alice    bob      alice    bob
	// kind:  approve  restart  approve  restart  approve  restart
	// target web/1    web/2    web/1    web/2    web/1    web/2
	// time:  t0       t0+1s    t0+2s    t0+3s    t0+4s    t0+5s
	for i := range 6 {
		if i%2 == 0 {
			mustAppend(t, l, rec("alice", "approve", "web/1"))
		} else {
			mustAppend(t, l, rec("bob", "restart", "web/2"))
		}
		clk.Advance(time.Second)
	}
	tests := []struct {
		f    audit.Filter
		want []int64
	}{
		{audit.Filter{}, []int64{1, 2, 3, 4, 5, 6}},
		{audit.Filter{Target: "web/2"}, []int64{2, 4, 6}},
		{audit.Filter{Actor: "alice"}, []int64{1, 3, 5}},
		{audit.Filter{Kind: "restart", Actor: "alice"}, nil},
		{audit.Filter{Since: t0.Add(2 * time.Second)}, []int64{3, 4, 5, 6}},
		{audit.Filter{Until: t0.Add(2 * time.Second)}, []int64{1, 2}},
		{audit.Filter{Since: t0.Add(time.Second), Until: t0.Add(3 * time.Second)}, []int64{2, 3}},
		{audit.Filter{AfterSeq: 4}, []int64{5, 6}},
		{audit.Filter{Limit: 2}, []int64{5, 6}},                     // the tail
		{audit.Filter{Limit: 2, AfterSeq: 1}, []int64{2, 3}},        // the next page
		{audit.Filter{Limit: 2, Target: "web/1"}, []int64{3, 5}},    // the tail of a selection
		{audit.Filter{Limit: 10, AfterSeq: 5}, []int64{6}},          // a short last page
		{audit.Filter{Limit: 1, AfterSeq: 6}, nil},                  // nothing new
		{audit.Filter{Target: "db", Since: t0, Limit: 3}, nil},      // no match
		{audit.Filter{Kind: "approve", AfterSeq: 2}, []int64{3, 5}}, // filters combine
	}
	for _, tt := range tests {
		got, err := l.List(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if !reflect.DeepEqual(seqs, tt.want) {
			t.Errorf("List(%+v) = %v, want %v", tt.f, seqs, tt.want)
		}
	}
}

func TestConcurrentAppendsKeepTheChain(t *testing.T) {
	l, _, _ := MustOpenLog(t, "")
	const writers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	seqs := make(chan int64, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r, err := l.Append(context.Background(), rec(fmt.Sprintf("w%d", w), "tick", fmt.Sprint(i)))
				if err != nil {
					errs <- err
					return
				}
				seqs <- r.Seq
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(seqs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	for s := int64(1); s <= writers*each; s++ {
		if !seen[s] {
			t.Fatalf("seq %d never acknowledged", s)
		}
	}
	mustVerify(t, l, writers*each)
}

func TestReopenContinuesTheChain(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, rec("a", "k", ""))
	last := mustAppend(t, l, rec("a", "k", ""))
	db.Close()

	l2, _, _ := MustOpenLog(t, dir)
	if l2.Head() != last.Head() {
		t.Fatalf("Head after reopen = %+v, want %+v", l2.Head(), last.Head())
	}
	if r := mustAppend(t, l2, rec("a", "k", "")); r.Seq != 3 || r.Prev != last.Hash {
		t.Fatalf("append after reopen: %+v", r)
	}
	mustVerify(t, l2, 3)
}

func TestTriggersRefuseRewrites(t *testing.T) {
	l, db, _ := MustOpenLog(t, "")
	mustAppend(t, l, rec("a", "k", ""))
	for _, q := range []string{"UPDATE audit SET reason = 'x'", "DELETE FROM audit"} {
		if _, err := db.SQL().Exec(q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
	mustVerify(t, l, 1)
}

func writeHead(t *testing.T, dir string, h audit.Head) {
	t.Helper()
	line := fmt.Sprintf("v1 %d %s\n", h.Seq, h.Hash)
	if err := os.WriteFile(filepath.Join(dir, audit.HeadFile), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A crash between the commit and the head file rewrite leaves the file one
// record behind; that is not tampering.
func TestVerifyToleratesALaggingHeadFile(t *testing.T) {
	l, db, _ := MustOpenLog(t, "")
	var rs []audit.Record
	for range 3 {
		rs = append(rs, mustAppend(t, l, rec("a", "k", "")))
	}
	writeHead(t, db.Dir(), rs[1].Head())
	mustVerify(t, l, 3)

	writeHead(t, db.Dir(), audit.Head{Seq: 2, Hash: rs[0].Hash}) // behind, but not a record that exists
	_, err := l.Verify(context.Background())
	checkChainErr(t, err, audit.ErrEdited, 2)
}
