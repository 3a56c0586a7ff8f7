// Command db measures database failover side by side: medic at its default
// timings, and Patroni 3.0.2 + etcd + HAProxy (Debian's packages) at
// Patroni's defaults and at its tightest accepted timings, on the same
// machine, the same etcd binary and the same write load (100 single-row
// transactions per second, every acknowledgment logged).
//
// Scenarios:
//
//	kill        the primary's host is lost: agent and postgres SIGKILLed; RTO = last
//	            acknowledgment before → first after; acknowledged writes lost
//	cut         the primary's agent is cut off from etcd (a TCP link between them);
//	            both postgres are probed directly all along for two writable members
//	switchover  a graceful switchover through each system's API
//	stall       60s of both cores saturated and a 2s SIGSTOP of the primary's agent:
//	            a failover here is a false one
//
// Run as root on Debian 12 with postgresql-15, etcd-server, patroni and haproxy:
//
//	go run ./bench/db -systems medic,patroni,patroni-tight -scenarios kill,cut,switchover,stall -runs 20
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	systems := flag.String("systems", "medic,patroni-tight,patroni", "systems: medic, patroni (defaults), patroni-tight")
	scenarios := flag.String("scenarios", "kill,switchover,cut,stall", "scenarios: kill, cut, switchover, stall")
	runs := flag.Int("runs", 5, "runs per system and scenario (stall: at most 1)")
	mode := flag.String("mode", "sync", "replication mode: sync or async")
	medicBin := flag.String("medic", "", "medic binary (default: go build ./cmd/medic)")
	out := flag.String("out", "", "also write the markdown table to this file")
	keep := flag.Bool("keep", false, "keep the working directory (logs)")
	flag.DurationVar(&backAfter, "back", 0, "kill: start the lost member again this long after the kill (issue 14's quick return: 1s, 5s, 30s), "+
		"and count it as a failure when it does not stream from the new primary within 30s of its return; 0: start it once the failover is over")
	flag.Parse()

	work, err := os.MkdirTemp("", "medic-bench-db-")
	if err != nil {
		fatal(err)
	}
	os.Chmod(work, 0o755)
	if !*keep {
		defer os.RemoveAll(work)
	}
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	if *medicBin == "" && strings.Contains(*systems, "medic") {
		*medicBin = filepath.Join(work, "medic")
		b := exec.Command("go", "build", "-o", *medicBin, "./cmd/medic")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			fatal(fmt.Errorf("build medic (run from the repository root): %w", err))
		}
	}
	var results []result
	for _, sys := range strings.Split(*systems, ",") {
		for _, scen := range strings.Split(*scenarios, ",") {
			n := *runs
			if scen == "stall" {
				n = 1
			}
			dir := filepath.Join(work, sys+"-"+scen)
			mk := func(dir, etcd string) (cluster, error) {
				switch sys {
				case "medic":
					return newMedic(*medicBin, dir, etcd, *mode)
				case "patroni":
					return newPatroni(dir, etcd, *mode, patroniDefaults)
				case "patroni-tight":
					return newPatroni(dir, etcd, *mode, patroniTight)
				}
				return nil, fmt.Errorf("unknown system %q", sys)
			}
			log("=== %s, %s, %d runs, %s mode", sys, scen, n, *mode)
			results = append(results, run(sys, scen, n, *mode, dir, mk, log))
		}
	}
	table := report(results, *mode)
	fmt.Print(table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			fatal(err)
		}
	}
	if *keep {
		log("logs kept in %s", work)
	}
}

func report(rs []result, mode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s mode, write load 100 tx/s; RTO = last acknowledgment before the fault → first after.\n\n", mode)
	fmt.Fprintln(&b, "| system | scenario | runs | RTO median | RTO max | acked writes lost | two writable (probe rounds) | false failovers | errors |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		lost, dual, ff := "-", "-", "-"
		switch r.scenario {
		case "kill":
			lost = fmt.Sprintf("%d of %d", r.lost, r.acked)
		case "cut":
			dual = fmt.Sprint(r.dual)
		case "stall":
			ff = fmt.Sprint(r.failovers)
		}
		rtoMed, rtoMax := fmtDur(median(r.rtos)), fmtDur(maxDur(r.rtos))
		if r.scenario == "stall" {
			rtoMed, rtoMax = "-", fmtDur(maxDur(r.rtos))+" (longest write gap)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", r.system, r.scenario, r.runs, rtoMed, rtoMax, lost, dual, ff, strings.Join(r.errs, "; "))
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/db:", err)
	os.Exit(1)
}
