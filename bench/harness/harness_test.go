package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// The generated medic.yaml files must load under medic's strict config
// parser: a drift in the config shape has to fail here, not mid-benchmark.
func TestGeneratedMedicConfigsParse(t *testing.T) {
	for name, probes := range map[string]string{"crash": "", "footprint": medicFootprintProbes, "hang": medicHangProbes} {
		dir := t.TempDir()
		s := spec{app: []string{"/usr/bin/demo app", "demoapp"}, basePort: 21000, n: 50, medic: medicSettings{apiPort: 21100, probes: probes}}
		tg, err := newMedic("/bin/medic", dir, s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "medic.yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(path, data)
		if err != nil {
			t.Fatalf("%s: generated config does not parse: %v\n%s", name, err, data)
		}
		svc := cfg.Services["demo"]
		if svc == nil || svc.Instances != 50 || svc.Port != 21000 || svc.Command[0] != "/usr/bin/demo app" || svc.Command[3] != "127.0.0.1:${PORT}" {
			t.Fatalf("%s: service = %+v", name, svc)
		}
		if cfg.API.Listen != "127.0.0.1:21100" || !slices.Equal(tg.argv, []string{"/bin/medic", "run", "-c", path}) {
			t.Fatalf("%s: api %q, argv %q", name, cfg.API.Listen, tg.argv)
		}
		if (probes != "") != (svc.Probes.Liveness != nil) {
			t.Fatalf("%s: liveness probe = %+v", name, svc.Probes.Liveness)
		}
		if name == "hang" && (svc.Probes.Liveness.Period.D() != hangPeriod || svc.Probes.Liveness.Timeout.D() != hangTimeout ||
			svc.Probes.Liveness.FailureThreshold != hangThreshold || svc.Stop.Grace.D() != hangGrace) {
			t.Fatalf("hang: probe %+v, stop %+v do not match the reported settings", svc.Probes.Liveness, svc.Stop)
		}
	}
}

func TestShellJoinRoundTrips(t *testing.T) {
	args := []string{"plain", "with space", "it's", "$HOME", "`id`", "a\"b", "127.0.0.1:80", ""}
	got, err := exec.Command("sh", "-c", "set -- "+shellJoin(args)+`; for a in "$@"; do printf '[%s]' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "[" + strings.Join(args, "][") + "]"
	if string(got) != want {
		t.Fatalf("sh saw %s, want %s", got, want)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{5, 1, 4, 2, 3, 10, 6, 7, 8, 9}, 2)
	if s.N != 10 || s.Failed != 2 || s.Median != 5.5 || s.Min != 1 || s.Max != 10 || math.Abs(float64(s.P90)-9.1) > 1e-9 {
		t.Fatalf("summary = %+v", s)
	}
	if e := summarize(nil, 3); !math.IsNaN(float64(e.Median)) || e.Failed != 3 {
		t.Fatalf("empty summary = %+v", e)
	}
	if b, _ := summarize(nil, 0).Median.MarshalJSON(); string(b) != "null" {
		t.Fatalf("NaN encodes as %s, want null", b)
	}
	if r := ratio(num(30), num(10)); r != "3.00×" {
		t.Fatalf("ratio = %q", r)
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() || st.start == 0 || st.state == 0 {
		t.Fatalf("stat = %+v, want ppid %d", st, os.Getppid())
	}
	if kb, err := rssKB(os.Getpid()); err != nil || kb == 0 {
		t.Fatalf("rss = %d, %v", kb, err)
	}
}

// A process that ignores the stop signal is killed with its group, and a
// descendant that left the group is killed by PID.
func TestStopKillsWhatIgnoresTheSignal(t *testing.T) {
	dir := t.TempDir()
	script := `trap '' TERM; setsid sleep 60 & sleep 60 & echo started; wait`
	p, err := startProc("stubborn", []string{"sh", "-c", script}, dir, filepath.Join(dir, "log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var kids []procID
	deadline := time.Now().Add(10 * time.Second)
	for len(kids) < 2 {
		if time.Now().After(deadline) {
			p.stop(syscall.SIGKILL, time.Second, descendants(p.pid))
			t.Fatalf("children did not start: %v", kids)
		}
		time.Sleep(5 * time.Millisecond)
		kids = descendants(p.pid)
	}
	start := time.Now()
	forced := p.stop(syscall.SIGTERM, 300*time.Millisecond, kids)
	if !p.exited() {
		t.Fatal("sh still running after stop")
	}
	for _, k := range kids {
		if k.alive() {
			t.Fatalf("descendant %d still alive after stop", k.pid)
		}
	}
	if len(forced) == 0 || time.Since(start) > 10*time.Second {
		t.Fatalf("forced = %q after %v: want the kills reported", forced, time.Since(start))
	}
}
