package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/drill/load"
	"github.com/medic-dev/medic/internal/drill/report"
)

// sample builds a finished drill from a synthetic timeline and load through
// drill.Evaluate, as the runner does.
func sample(t *testing.T) *drill.Result {
	t.Helper()
	sc, err := drill.NewCatalog().Get("hang")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	marks := drill.Marks{Start: t0, Inject: at(2 * time.Second), Restore: at(5 * time.Second), End: at(8 * time.Second)}
	var samples []load.Sample
	for i := range 800 {
		due := at(time.Duration(i) * 10 * time.Millisecond)
		s := load.Sample{Intended: due, Latency: 2 * time.Millisecond, OK: true, Status: 200}
		if due.After(at(2*time.Second)) && due.Before(at(2500*time.Millisecond)) {
			s.Latency = 300 * time.Millisecond
		}
		if i == 230 {
			s.OK, s.Err, s.Status = false, "http 502", 502
		}
		samples = append(samples, s)
	}
	events := []drill.Observation{
		{Time: at(2200 * time.Millisecond), Seq: 41, Kind: "probe.changed", Target: "web/1", Actor: "supervisor", Reason: "liveness probe failure: <timeout>", Fields: map[string]string{"probe": "liveness", "health": "failure"}},
		{Time: at(2300 * time.Millisecond), Kind: drill.ObservedOut, Target: "web/1", Reason: "not ready (running)"},
		{Time: at(2600 * time.Millisecond), Seq: 43, Kind: "instance.stopping", Target: "web/1", Actor: "supervisor", Reason: "liveness probe failed"},
		{Time: at(3600 * time.Millisecond), Seq: 45, Kind: "instance.started", Target: "web/1", Actor: "supervisor", Reason: "started pid 42"},
		{Time: at(3700 * time.Millisecond), Seq: 47, Kind: "instance.ready", Target: "web/1", Actor: "supervisor", Reason: "ready"},
	}
	r := &drill.Result{ID: 12, Scenario: "hang", FailureMode: sc.FailureMode, Service: "web", Subject: drill.Subject{Service: "web", Instance: "web/1"},
		Actor: "api:ops", Load: drill.LoadSpec{URL: "http://127.0.0.1:8080/", RPS: 100}, Marks: marks, Definition: sc,
		Steps: []drill.Step{{Time: marks.Inject, Action: "inject", Detail: "sent SIGSTOP to web/1 pid 41", Seq: 40},
			{Time: marks.Restore, Action: "restore", Detail: "pid 41 is gone: nothing to continue", Seq: 48}},
		Timeline: events}
	r.Measurement = drill.Evaluate(drill.Input{Scenario: sc, Subject: r.Subject, Marks: marks, Events: events, Samples: samples})
	// A failure reason with markup, to check it is escaped.
	r.State = drill.StateFailed
	r.Reasons = append(r.Reasons, "restore failed: <b>boom</b>")
	r.Passed = false
	return r
}

func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := report.Markdown(&b, sample(t)); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# Drill 12: hang on web/1 — FAILED",
		"| detected after | 0.20s (probe.changed on web/1, audit #41) |",
		"| recovered after | 1.70s (instance.ready on web/1, audit #47) |",
		"| client-visible errors | 1 of 800 requests |",
		"- restore failed: <b>boom</b>",
		"| during | 300 |",
		"- +0.00s inject #40: sent SIGSTOP to web/1 pid 41",
		"- +0.60s #43 instance.stopping web/1 (supervisor): liveness probe failed",
		"- +0.30s observed.out_of_rotation web/1 (observed by the drill): not ready (running)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}

func TestHTMLIsSelfContainedAndEscaped(t *testing.T) {
	var b bytes.Buffer
	if err := report.HTML(&b, sample(t)); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, bad := range []string{"<script", "http://cdn", "https://", "<b>boom</b>", "<timeout>"} {
		if strings.Contains(h, bad) {
			t.Errorf("HTML contains %q", bad)
		}
	}
	for _, want := range []string{"<svg", `class="p99" points="`, `class="err"`, "fault injected", "#43 instance.stopping web/1",
		"&lt;b&gt;boom&lt;/b&gt;", "<b>0.20s</b>", "audit #47", `class="badge failed"`} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

func TestWriteThreeFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	path, err := report.Write(dir, sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, report.HTMLFile) {
		t.Fatalf("path %s", path)
	}
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var back drill.Result
	if err := json.Unmarshal(b, &back); err != nil || back.ID != 12 || back.TTD == nil {
		t.Fatalf("report.json: %v %+v", err, back.TTD)
	}
	if _, err := os.Stat(filepath.Join(dir, report.MarkdownFile)); err != nil {
		t.Fatal(err)
	}
}

// TestHTMLRendersInChromium loads the report in headless Chromium: the page
// must parse (the DOM holds the chart) and draw (the screenshot holds the
// p99 line's colour).
func TestHTMLRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("chromium not found and MEDIC_REQUIRE_INTEGRATION=1")
		}
		t.Skip("chromium not installed (apt-get install -y chromium); skipping the rendering check")
	}
	dir := t.TempDir()
	path, err := report.Write(dir, sample(t))
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) ([]byte, []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + filepath.Join(dir, "profile"),
			"--window-size=1100,1300", "--enable-logging=stderr", "--v=0"}, args...)
		cmd := exec.CommandContext(ctx, bin, append(args, "file://"+path)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes(), errb.Bytes()
	}
	dom, logs := run("--dump-dom")
	if !bytes.Contains(dom, []byte("<polyline")) || !bytes.Contains(dom, []byte("Drill 12: hang on web/1")) {
		t.Fatalf("the DOM lacks the chart or the title:\n%.2000s", dom)
	}
	for _, bad := range []string{"Uncaught", "Refused to", "ERR_FILE_NOT_FOUND", "net::ERR"} {
		if bytes.Contains(logs, []byte(bad)) {
			t.Errorf("chromium logged %q:\n%s", bad, logs)
		}
	}
	shot := filepath.Join(dir, "shot.png")
	run("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0 // pixels of the p50 (#0969da) and p99 (#8250df) lines
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if near(r, 0x82) && near(g, 0x50) && near(b, 0xdf) || near(r, 0x09) && near(g, 0x69) && near(b, 0xda) {
				lines++
			}
		}
	}
	if lines < 500 {
		t.Fatalf("screenshot %dx%d shows %d pixels of the latency lines: the chart was not drawn", bnd.Dx(), bnd.Dy(), lines)
	}
	t.Logf("screenshot %s: %dx%d, %d pixels of latency lines", shot, bnd.Dx(), bnd.Dy(), lines)
}

func near(c uint32, want uint32) bool {
	v := c >> 8
	return v+12 >= want && v <= want+12
}
