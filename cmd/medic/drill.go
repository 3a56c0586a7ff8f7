package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	drillreport "github.com/medic-dev/medic/internal/drill/report"
)

func drillCmd() *cobra.Command {
	var req drill.Request
	var instance int
	var reportDir string
	var asJSON bool
	var dur time.Duration
	c := &cobra.Command{
		Use:   "drill SCENARIO",
		Short: "Inject a fault into a service under load, measure detection and recovery, and give a verdict",
		Long: `Runs one drill against the running agent and waits for its verdict: the agent
injects the scenario's fault into a service that allows drills, drives open-loop
load through the service's proxy, and judges detection and recovery from its
own events. Exit status 0 when the drill passed, 1 when it failed.

Scenarios: kill, hang, crashloop, unready, latency, errors, reset,
dependency-down, disk-full, leak, crashloop-rollback, db-*, the fleet drills
host-kill and host-partition (--host) and etcd-member-loss (--member, or
one whose loss keeps the quorum; needs fleet.etcd_member on the host that
runs it, see docs/fleet.md) and those of medic.yaml (see 'medic drills --scenarios').
Ctrl-C aborts the drill; the agent removes the fault either way.`,
		Example: `  medic drill kill --service web
  medic drill host-kill --host h3 --service web --load 200   # sent to h1's agent
  medic drill etcd-member-loss --member e2 --load 100        # from any agent
  medic drill hang --service web --load 100 --report ./drill-report
  medic drill abort`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Scenario = args[0]
			if cmd.Flags().Changed("instance") {
				req.Instance = &instance
			}
			if req.LoadRPS > 0 && req.Connections > 0 {
				return usageError{errors.New("--load and --connections exclude each other")}
			}
			req.Duration = config.Duration(dur)
			return runDrill(cmd, req, reportDir, asJSON)
		},
	}
	c.Flags().StringVar(&req.Service, "service", "", "service to drill (it must allow drills); for a fleet drill, the fleet service to load and measure (default: the only one)")
	c.Flags().StringVar(&req.Member, "member", "", "etcd-member-loss: the etcd member to stop (default: one whose loss keeps the quorum, declared by its host's fleet.etcd_member)")
	c.Flags().StringVar(&req.Host, "host", "", "host-kill, host-partition: the fleet host whose loss is simulated (send the drill to another host's agent, which measures)")
	c.Flags().IntVar(&instance, "instance", 0, "instance index to put under fault (default: the highest ready one)")
	c.Flags().StringVar(&req.Dependency, "dependency", "", "dependency-down: the service to stop (default: the first depends_on), or a dependency declared under dependencies: (dependency-slow, -errors, -down)")
	c.Flags().StringVar(&req.Path, "path", "", "request path of the load (default /), such as one that calls the drilled dependency")
	c.Flags().Float64Var(&req.LoadRPS, "load", 0, "open-loop load through the proxy, requests per second (default 50)")
	c.Flags().IntVar(&req.Connections, "connections", 0, "closed-loop load: this many connections instead of --load")
	c.Flags().DurationVar(&dur, "duration", 0, "time allowed from the injection to the recovery (default: the scenario's deadline)")
	c.Flags().StringVar(&reportDir, "report", "", "write report.html, report.md and report.json into this directory")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	c.AddCommand(drillAbortCmd())
	return c
}

func runDrill(cmd *cobra.Command, req drill.Request, reportDir string, asJSON bool) error {
	cl, err := newClient(cmd)
	if err != nil {
		return err
	}
	if req.Service == "" && req.Host == "" && req.Scenario != "etcd-member-loss" {
		return usageError{errors.New("--service is required (or --host for a fleet drill; etcd-member-loss takes neither)")}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var res drill.Result
	if err := cl.postJSON("/v1/drills", string(body), 30*time.Second, &res); err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(os.Stderr, "drill %d: %s on %s started (%s); Ctrl-C aborts\n", res.ID, res.Scenario, targetOf(res), loadOf(res.Load))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err = waitDrill(ctx, cl, res.ID, asJSON)
	if err != nil {
		return err
	}
	if reportDir != "" {
		path, err := drillreport.Write(reportDir, &res)
		if err != nil {
			return err
		}
		res.Report = path
	} else {
		res.Report = fmt.Sprintf("%s/v1/drills/%d/report.html", cl.web, res.ID)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printDrill(os.Stdout, res)
	}
	if !res.Passed {
		return errReported
	}
	return nil
}

// waitDrill polls the drill until its verdict; the first interrupt asks the
// agent to abort it (and waits for the restoration), a second one leaves.
func waitDrill(ctx context.Context, cl *client, id int64, quiet bool) (drill.Result, error) {
	var res drill.Result
	phase := ""
	aborted := false
	for {
		if err := cl.getJSON("GET", fmt.Sprintf("/v1/drills/%d", id), 10*time.Second, &res); err != nil {
			return res, err
		}
		if res.Done() {
			return res, nil
		}
		if res.Phase != phase && !quiet {
			fmt.Fprintf(os.Stderr, "  %s\n", res.Phase)
			phase = res.Phase
		}
		select {
		case <-ctx.Done():
			if aborted {
				return res, fmt.Errorf("drill %d: left while the agent restores; see 'medic drills'", id)
			}
			aborted = true
			fmt.Fprintf(os.Stderr, "aborting drill %d: the agent removes the fault …\n", id)
			var out drill.Result
			if err := cl.postJSON("/v1/drills/abort", "", 2*time.Minute, &out); err != nil {
				return res, err
			}
			ctx = context.Background()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func targetOf(r drill.Result) string {
	if r.Subject.Host != "" {
		return r.Subject.Host
	}
	if r.Subject.Instance != "" {
		return r.Subject.Instance
	}
	return r.Service
}

func loadOf(l drill.LoadSpec) string {
	switch {
	case l.URL == "":
		return l.Note
	case l.RPS > 0:
		return fmt.Sprintf("%.0f requests/s through %s", l.RPS, l.URL)
	}
	return fmt.Sprintf("%d connections through %s", l.Connections, l.URL)
}

func printDrill(w io.Writer, r drill.Result) {
	fmt.Fprintf(w, "drill %d: %s on %s — %s\n", r.ID, r.Scenario, targetOf(r), strings.ToUpper(r.State))
	for _, why := range r.Reasons {
		fmt.Fprintf(w, "  ✗ %s\n", why)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	seqOf := func(o *drill.Observation) string {
		if o == nil {
			return ""
		}
		s := "(" + o.Kind
		if o.Seq > 0 {
			s += fmt.Sprintf(", audit #%d", o.Seq)
		}
		return s + ")"
	}
	fmt.Fprintf(tw, "  detected after\t%s\t%s\n", drillreport.Secs(r.TTD), seqOf(r.Detected))
	fmt.Fprintf(tw, "  recovered after\t%s\t%s\n", drillreport.Secs(r.TTR), seqOf(r.Recovered))
	fmt.Fprintf(tw, "  full capacity after\t%s\t\n", drillreport.Secs(r.FullCapacity))
	fmt.Fprintf(tw, "  client errors\t%d of %d\timpact %s\n", r.ClientErrors, r.Requests, drillreport.Secs(r.ClientImpact))
	if w := r.Writes; w != nil {
		fmt.Fprintf(tw, "  writes\t%d acknowledged, %d lost\tRTO %s\n", w.Acked, w.Lost, drillreport.Secs(w.RTO))
	}
	fmt.Fprintf(tw, "  latency p99\tbefore %s\tduring %s · after %s\n", msOf(r.Latency.Before.P99), msOf(r.Latency.During.P99), msOf(r.Latency.After.P99))
	if len(r.Figures) > 0 {
		names := make([]string, 0, len(r.Figures))
		for k := range r.Figures {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("%s %.3g", k, r.Figures[k]))
		}
		fmt.Fprintf(tw, "  figures\t%s\t\n", strings.Join(parts, ", "))
	}
	tw.Flush()
	for _, a := range r.Actions {
		seq := ""
		if a.Seq > 0 {
			seq = fmt.Sprintf("#%d ", a.Seq)
		}
		fmt.Fprintf(w, "  %+7.2fs  %s%s %s: %s\n", a.Time.Sub(r.Marks.Inject).Seconds(), seq, a.Kind, a.Target, trim(a.Reason, 80))
	}
	fmt.Fprintf(w, "  report: %s\n", r.Report)
}

func msOf(s float64) string { return fmt.Sprintf("%.1fms", s*1000) }

func drillAbortCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "abort",
		Short: "Abort the running drill; the agent removes its fault and records the abort",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			var res drill.Result
			if err := cl.postJSON("/v1/drills/abort", "", 2*time.Minute, &res); err != nil {
				return err
			}
			fmt.Printf("drill %d (%s on %s) aborted; restored: %s\n", res.ID, res.Scenario, targetOf(res), restoredOf(res))
			return nil
		},
	}
}

func restoredOf(r drill.Result) string {
	for _, s := range r.Steps {
		if s.Action == "restore" {
			if s.Error != "" {
				return "FAILED: " + s.Error
			}
			return s.Detail
		}
	}
	return "nothing was injected"
}

func drillsCmd() *cobra.Command {
	var asJSON, scenarios, modes bool
	var limit int
	c := &cobra.Command{
		Use:   "drills",
		Short: "List past drills (or, with --modes, when each failure mode was last drilled)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			path := fmt.Sprintf("/v1/drills?limit=%d", limit)
			switch {
			case scenarios:
				path = "/v1/drills/scenarios"
			case modes:
				path = "/v1/drills/modes"
			}
			if asJSON {
				resp, err := cl.do("GET", path, 30*time.Second)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(os.Stdout, resp.Body)
				return err
			}
			switch {
			case scenarios:
				var doc struct{ Scenarios []drill.Scenario }
				if err := cl.getJSON("GET", path, 30*time.Second, &doc); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SCENARIO\tFAILURE MODE\tFAULT\tDEADLINE\tNEEDS")
				for _, s := range doc.Scenarios {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", s.Name, s.FailureMode, s.Fault.Kind, s.Deadline, strings.Join(s.Requires, ","))
				}
				return tw.Flush()
			case modes:
				return printDrillModes(os.Stdout, cl)
			}
			var doc struct{ Drills []drill.Brief }
			if err := cl.getJSON("GET", path, 30*time.Second, &doc); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTARTED\tSCENARIO\tTARGET\tRESULT\tDETECTED\tRECOVERED\tCLIENT ERRORS")
			for _, b := range doc.Drills {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\n", b.ID, b.Started.Local().Format("2006-01-02 15:04:05"),
					b.Scenario, b.Target, b.State, drillreport.Secs(b.TTD), drillreport.Secs(b.TTR), b.ClientErrors, b.Requests)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	c.Flags().BoolVar(&scenarios, "scenarios", false, "list the scenarios a drill may name")
	c.Flags().BoolVar(&modes, "modes", false, "per failure mode: when it was last drilled and its last time to recover")
	c.Flags().IntVar(&limit, "limit", 50, "newest drills to list")
	return c
}
