package main

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestParallelSubtestsWallTime: a top-level test whose subtests run in
// parallel reports Elapsed 0 itself; its result is the wall time from its
// first event to its own pass.
func TestParallelSubtestsWallTime(t *testing.T) {
	in := `{"Time":"2026-12-07T20:53:01.992Z","Action":"run","Package":"p","Test":"TestQ"}
{"Time":"2026-12-07T20:53:01.993Z","Action":"run","Package":"p","Test":"TestQ/a"}
{"Time":"2026-12-07T20:53:29.386Z","Action":"pass","Package":"p","Test":"TestQ/a","Elapsed":27.39}
{"Time":"2026-12-07T20:53:29.387Z","Action":"pass","Package":"p","Test":"TestQ","Elapsed":0}
{"Time":"2026-12-07T20:53:29.400Z","Action":"run","Package":"p","Test":"TestR"}
{"Time":"2026-12-07T20:53:30.400Z","Action":"pass","Package":"p","Test":"TestR","Elapsed":1.2}
`
	s := &summary{out: bufio.NewWriter(io.Discard), buf: map[key]*strings.Builder{}}
	for _, l := range strings.SplitAfter(in, "\n") {
		s.line([]byte(l))
	}
	if len(s.results) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(s.results), s.results)
	}
	if q := s.results[0]; q.name != "TestQ" || q.elapsed < 27.3 || q.elapsed > 27.5 {
		t.Errorf("TestQ: %+v, want its wall time 27.4 s", q)
	}
	if r := s.results[1]; r.name != "TestR" || r.elapsed != 1.2 {
		t.Errorf("TestR: %+v, want its own Elapsed 1.2 s (more than the 1 s between its events)", r)
	}
}
