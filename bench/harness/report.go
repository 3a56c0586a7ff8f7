package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// report is everything one harness run measured, written as markdown (for
// people) and JSON (for tools) side by side.
type report struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Env       env               `json:"environment"`
	Settings  map[string]string `json:"settings"`
	Crash     *crashReport      `json:"crash,omitempty"`
	Footprint []footprintRow    `json:"footprint,omitempty"`
	Hang      *hangReport       `json:"hang,omitempty"`
}

type env struct {
	Kernel      string `json:"kernel"`
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	LoadBefore  string `json:"loadavg_before"`
	LoadAfter   string `json:"loadavg_after"`
	Go          string `json:"go"`
	Medic       string `json:"medic"`
	Supervisord string `json:"supervisord"`
	Runit       string `json:"runit"`
	Monit       string `json:"monit"`
}

func environment(medicBin string) env {
	e := env{
		Kernel:      firstLine(cmdOut("uname", "-sr")),
		CPUs:        runtime.NumCPU(),
		LoadBefore:  loadavg(),
		Go:          runtime.Version(),
		Medic:       firstLine(cmdOut("git", "log", "-1", "--format=%h %cs")),
		Supervisord: firstLine(cmdOut("supervisord", "--version")),
		Runit:       firstLine(cmdOut("dpkg-query", "-W", "-f=${Version}", "runit")),
		Monit:       firstLine(cmdOut("dpkg-query", "-W", "-f=${Version}", "monit")),
	}
	if e.Medic == "" {
		e.Medic = "(no git revision)"
	}
	if fi, err := os.Stat(medicBin); err == nil {
		e.Medic += fmt.Sprintf(", binary %s (%.1f MiB, built %s)", filepath.Base(medicBin), float64(fi.Size())/(1<<20), fi.ModTime().UTC().Format(time.RFC3339))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return e
}

func (b *bench) settings(app string) map[string]string {
	return map[string]string{
		"app":          app + ": " + strings.Join(b.app, " ") + " --listen 127.0.0.1:PORT",
		"peers":        strings.Join(b.peers, ","),
		"crash_runs":   fmt.Sprint(b.runs),
		"min_uptime":   b.minUptime.String(),
		"poll":         fmt.Sprintf("GET / on a fresh connection, %v between failed polls", pollInterval),
		"hang_runs":    fmt.Sprint(b.hangRuns),
		"instances":    fmt.Sprint(b.fpInstances),
		"samples":      fmt.Sprintf("%d × 1s after %v warm-up", b.fpSamples, b.fpWarmup),
		"work_dir":     b.dir,
		"medic_binary": b.medicBin,
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func firstLine(s string) string { l, _, _ := strings.Cut(strings.TrimSpace(s), "\n"); return l }

// write stores the report as results-<time>.{md,json} in dir.
func (r *report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results dir: %w", err)
	}
	stem := filepath.Join(dir, "results-"+r.Started.Format("20060102-150405"))
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(stem+".json", append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(stem+".md", []byte(r.markdown()), 0o644); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	return []string{stem + ".md", stem + ".json"}, nil
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# medic vs peers — %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs (%s); load %s before, %s after. %s.\n", r.Env.Kernel, r.Env.CPUs, r.Env.CPUModel, r.Env.LoadBefore, r.Env.LoadAfter, r.Env.Go)
	fmt.Fprintf(&b, "medic %s; %s; runit %s; monit %s. Demo service: `%s`.\n", r.Env.Medic, r.Env.Supervisord, r.Env.Runit, r.Env.Monit, r.Settings["app"])
	fmt.Fprintf(&b, "Run time %v. The machine is shared: compare medians from this one run, not across runs.\n", r.Finished.Sub(r.Started).Round(time.Second))
	if c := r.Crash; c != nil {
		fmt.Fprintf(&b, "\n## (a) Crash → serving again\n\nSIGKILL the instance, then %s until it answers 200 from a new PID. %d runs each, interleaved; each killed instance had run at least %s.\n\n",
			r.Settings["poll"], c.Runs, c.MinUptime)
		b.WriteString("| | runs ok | failed | median ms | p90 ms | min ms | max ms | median vs medic |\n|---|---|---|---|---|---|---|---|\n")
		var medic *series
		for _, s := range c.Targets {
			if s.Name == "medic" {
				medic = s
			}
		}
		row := func(s *series) {
			vs := "–"
			if medic != nil {
				vs = ratio(s.Summary.Median, medic.Summary.Median)
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %s |\n", s.Name, s.Summary.N, s.Summary.Failed,
				fmtMS(s.Summary.Median), fmtMS(s.Summary.P90), fmtMS(s.Summary.Min), fmtMS(s.Summary.Max), vs)
		}
		for _, s := range c.Targets {
			row(s)
		}
		row(&c.Direct)
		if medic != nil && medic.Summary.N > 0 && c.Direct.Summary.N > 0 {
			over := float64(medic.Summary.Median - c.Direct.Summary.Median)
			fmt.Fprintf(&b, "\nmedic's restart minus the demoapp's own start (medians): %s ms (target: within 20 ms).\n", fmtMS(num(over)))
		}
		for name, why := range c.Unavailable {
			fmt.Fprintf(&b, "\n%s: not measured: %s\n", name, oneLine(why))
		}
		writeErrors(&b, append(append([]*series{}, c.Targets...), &c.Direct))
	}
	if len(r.Footprint) > 0 {
		fmt.Fprintf(&b, "\n## (b) Agent footprint\n\nThe supervisor's own processes (not the instances): RSS from /proc/PID/status VmRSS, CPU from utime+stime in /proc/PID/stat, sampled %s.\n\n", r.Settings["samples"])
		b.WriteString("| | instances | probes | processes | median RSS MiB | median PSS MiB | median CPU % (1 s) | p90 CPU % | mean CPU % |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range r.Footprint {
			if f.Error != "" {
				fmt.Fprintf(&b, "| %s | %d | %s | – | – | – | – | – | not measured: %s |\n", f.Name, f.Instances, f.Probes, oneLine(f.Error))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f |\n", f.Name, f.Instances, f.Probes, f.Processes,
				float64(f.RSSMiB.Median), float64(f.PSSMiB.Median), float64(f.CPUPct.Median), float64(f.CPUPct.P90), f.CPUMean)
		}
		b.WriteString("\nRSS and PSS are summed over the supervisor's processes; PSS shares each shared page among its users, so it is the fair sum for runit's one runsv per instance. CPU % is of one core; a 1 s sample resolves 1 % (USER_HZ = 100), so the mean over the window is the finer figure.\n")
	}
	if h := r.Hang; h != nil {
		fmt.Fprintf(&b, "\n## (c) Hung instance (medic only; supervisord and runit have no health checks and never recover)\n\nPOST /fault/hang, then GET / (25 ms timeout) until 200 from a new PID. Settings: %s. Expected: %s.\n\n", h.Settings, h.Expected)
		if h.Unavailable != "" {
			fmt.Fprintf(&b, "not measured: %s\n", oneLine(h.Unavailable))
		} else {
			s := h.Series.Summary
			b.WriteString("| runs ok | failed | median s | p90 s | min s | max s |\n|---|---|---|---|---|---|\n")
			fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.2f | %.2f |\n", s.N, s.Failed, float64(s.Median)/1000, float64(s.P90)/1000, float64(s.Min)/1000, float64(s.Max)/1000)
			writeErrors(&b, []*series{&h.Series})
		}
	}
	return b.String()
}

func writeErrors(b *strings.Builder, ss []*series) {
	for _, s := range ss {
		for i, e := range s.Errors {
			if i == 3 {
				fmt.Fprintf(b, "- %s: … %d more\n", s.Name, len(s.Errors)-3)
				break
			}
			fmt.Fprintf(b, "- %s failed run: %s\n", s.Name, oneLine(e))
		}
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
