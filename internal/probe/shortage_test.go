package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
)

// withNoDescriptors runs f while this process cannot open one more file.
func withNoDescriptors(t *testing.T, f func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	// The highest open descriptor bounds the limit that leaves no free one
	// (accept and socket take the lowest free number, below the limit).
	high := 0
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscan(e.Name(), &n); err == nil && n > high {
			high = n
		}
	}
	tight := old
	tight.Cur = uint64(high + 1)
	// Fill every hole below high so that no number is free.
	var fill []*os.File
	for range high + 1 - (len(ents) - 1) {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
		for _, f := range fill {
			f.Close()
		}
	}()
	f()
}

// A probe medic cannot run for want of descriptors is unknown, never a
// failure of the instance (it was read as "too many open files": failure).
func TestProbeOutOfDescriptorsIsUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	tcp, err := NewChecker(&config.Probe{TCP: &config.TCPProbe{Port: port}}, Target{})
	if err != nil {
		t.Fatal(err)
	}
	httpc, err := NewChecker(&config.Probe{HTTP: &config.HTTPProbe{Path: "/", Port: port}}, Target{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Outcome
	withNoDescriptors(t, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got = append(got, tcp.Check(ctx), httpc.Check(ctx))
	})
	for i, o := range got {
		if o.Health != medic.HealthUnknown || !o.Own {
			t.Errorf("check %d with no descriptors left: %+v; want unknown, medic's own shortage", i, o)
		}
	}
}

// Own-shortage results count toward nothing and are reported once per spell.
func TestWorkerShortageNeverFailsLiveness(t *testing.T) {
	short := Outcome{Health: medic.HealthUnknown, Own: true, Detail: "not judged: too many open files"}
	results := []Outcome{short, short, short, short, short, Pass("ok"), short, Fail("HTTP 500")}
	i := 0
	chk := CheckerFunc(func(context.Context) Outcome { o := results[i]; i++; return o })
	w := newWorker(medic.ProbeLiveness, &config.Probe{FailureThreshold: 2}, chk, clocktest.New(time.Unix(0, 0)))
	var told int
	w.short = func(medic.ProbeKind, Outcome) { told++ }
	var updates []Update
	w.emit = func(u Update) { updates = append(updates, u) }
	for range 7 {
		if v := w.step(context.Background()); v != keepProbing {
			t.Fatalf("step %d: verdict %v; a shortage must not hold or fail the probe", i, v)
		}
	}
	if len(updates) != 0 || told != 2 {
		t.Fatalf("updates %v, shortage reported %d times; want none and 2 (one per spell)", updates, told)
	}
}
