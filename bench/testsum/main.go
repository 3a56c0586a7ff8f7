// Command testsum reads `go test -json` on its standard input and prints what
// a plain `go test` would print (each package's ok/FAIL line, build errors)
// plus the full output of every failed test, keeps the JSON in a file, and
// ends with the slowest top-level tests.
//
// .ci/run pipes each `go test -json` through it; the JSON files it keeps
// under .ci/artifacts can be summarised again later:
//
//	go run ./bench/testsum -top 40 < .ci/artifacts/e2e.json
//
// With -q it prints only that list: `cat a.json b.json | testsum -q`.
//
// With -cpu (only meaningful live, and only for tests that run one at a
// time, as e2e's do) each test's line also gives how many of the machine's
// cores were busy on average while it ran (from /proc/stat: the whole
// machine's, so other work on it counts too).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Elapsed    float64
	Output     string
}

// result is a finished top-level test.
type result struct {
	pkg, name, action string
	elapsed           float64
	cores             float64 // -1 when not measured
}

type key struct{ pkg, test string }

func main() {
	jsonOut := flag.String("json", "", "also write the JSON read to this `file`")
	top := flag.Int("top", 25, "list this many of the slowest top-level tests at the end (0: none)")
	quiet := flag.Bool("q", false, "print only the list of the slowest tests (to summarise kept JSON files again)")
	cpu := flag.Bool("cpu", false, "measure the machine's busy cores during each top-level test (live runs of one test at a time)")
	flag.Parse()
	var raw io.Writer = io.Discard
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsum:", err)
			os.Exit(2)
		}
		defer f.Close()
		raw = f // unbuffered: what a killed run had written is kept
	}
	out := bufio.NewWriter(os.Stdout)
	s := &summary{
		out:     out,
		buf:     map[key]*strings.Builder{},
		cpuAt:   map[key]cpuSample{},
		measure: *cpu,
	}
	if *quiet {
		s.out = bufio.NewWriter(io.Discard)
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			raw.Write(line)
			s.line(line)
			s.out.Flush()
		}
		if err != nil {
			break
		}
	}
	s.unfinished("")
	s.out.Flush()
	s.out = out
	s.report(*top)
	s.out.Flush()
}

type summary struct {
	out     *bufio.Writer
	buf     map[key]*strings.Builder // top-level test → its output and its subtests'
	order   []key                    // tests in the order they started
	started map[key]time.Time        // top-level test → its first event
	cpuAt   map[key]cpuSample
	measure bool
	results []result
}

func top(test string) string {
	if i := strings.IndexByte(test, '/'); i >= 0 {
		return test[:i]
	}
	return test
}

func (s *summary) line(line []byte) {
	var e event
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
		s.out.Write(line) // not JSON (a go command's own message): as it came
		return
	}
	switch {
	case e.Action == "build-output":
		s.out.WriteString(e.Output)
		return
	case e.Test == "":
		if e.Action == "output" && e.Output != "PASS\n" {
			s.out.WriteString(e.Output)
		}
		if e.Action == "pass" || e.Action == "fail" {
			s.unfinished(e.Package) // a crash or timeout ends the package without its tests' results
		}
		return
	}
	k := key{e.Package, top(e.Test)}
	b := s.buf[k]
	if b == nil {
		b = &strings.Builder{}
		s.buf[k] = b
		s.order = append(s.order, k)
		if s.started == nil {
			s.started = map[key]time.Time{}
		}
		s.started[k] = e.Time
		if s.measure {
			s.cpuAt[k] = readCPU()
		}
	}
	if e.Action == "output" {
		b.WriteString(e.Output)
	}
	if e.Test != k.test || (e.Action != "pass" && e.Action != "fail" && e.Action != "skip") {
		return
	}
	r := result{pkg: e.Package, name: e.Test, action: e.Action, elapsed: e.Elapsed, cores: -1}
	// A test whose subtests all call t.Parallel reports 0 s of its own: its
	// wall time is from its first event to its result.
	if t0, ok := s.started[k]; ok && !t0.IsZero() && e.Time.Sub(t0).Seconds() > r.elapsed {
		r.elapsed = e.Time.Sub(t0).Seconds()
	}
	delete(s.started, k)
	if s.measure {
		r.cores = busyCores(s.cpuAt[k], readCPU())
	}
	s.results = append(s.results, r)
	if e.Action == "fail" {
		s.out.WriteString(b.String())
	}
	delete(s.buf, k)
}

// unfinished prints the output of the tests of pkg ("": of every package)
// that never reported a result.
func (s *summary) unfinished(pkg string) {
	kept := s.order[:0]
	for _, k := range s.order {
		b, ok := s.buf[k]
		if !ok {
			continue
		}
		if pkg != "" && k.pkg != pkg {
			kept = append(kept, k)
			continue
		}
		fmt.Fprintf(s.out, "--- %s %s: no result (the test binary ended while it ran); its output:\n%s", k.pkg, k.test, b.String())
		delete(s.buf, k)
	}
	s.order = kept
}

func (s *summary) report(n int) {
	if n <= 0 || len(s.results) == 0 {
		return
	}
	rs := append([]result(nil), s.results...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].elapsed > rs[j].elapsed })
	var total float64
	for _, r := range rs {
		total += r.elapsed
	}
	if n > len(rs) {
		n = len(rs)
	}
	fmt.Fprintf(s.out, "--- the %d slowest of %d tests (%.0f s in all):\n", n, len(rs), total)
	for _, r := range rs[:n] {
		pkg := r.pkg[strings.LastIndexByte(r.pkg, '/')+1:]
		cores := ""
		if r.cores >= 0 {
			cores = fmt.Sprintf("  %.2f cores busy", r.cores)
		}
		fmt.Fprintf(s.out, "%8.2fs  %-4s %s.%s%s\n", r.elapsed, r.action, pkg, r.name, cores)
	}
}

// cpuSample is the machine's CPU time from /proc/stat, in clock ticks.
type cpuSample struct{ busy, total float64 }

func readCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var c cpuSample
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is counted in user already
			break
		}
		c.total += x
		if i != 3 && i != 4 {
			c.busy += x
		}
	}
	return c
}

// busyCores is the average number of cores busy between a and b.
func busyCores(a, b cpuSample) float64 {
	if b.total <= a.total {
		return -1
	}
	n := 0
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) > 3 && l[:3] == "cpu" && l[3] >= '0' && l[3] <= '9' {
				n++
			}
		}
	}
	return (b.busy - a.busy) / (b.total - a.total) * float64(n)
}
