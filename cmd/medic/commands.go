package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/medic-dev/medic/internal/fleetview"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/demoapp"
	"github.com/medic-dev/medic/internal/safetext"
	"github.com/medic-dev/medic/internal/supervise"
)

func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	path := configPath(cmd)
	if path == "" {
		return nil, usageError{fmt.Errorf("no config: pass -c FILE (or create medic.yaml here)")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, errReported
	}
	return cfg, nil
}

func runCmd() *cobra.Command {
	var detach bool
	var logJSON bool
	var superviseSelfFlag bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: supervise the services of -c FILE",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			agentMemoryDefaults()
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if superviseSelfFlag {
				var rest []string
				for _, a := range os.Args[1:] {
					if a != "--supervise-self" && a != "--supervise-self=true" {
						rest = append(rest, a)
					}
				}
				return superviseSelf(cfg, rest)
			}
			for _, w := range config.Lint(cfg) {
				fmt.Fprintln(os.Stderr, w)
			}
			var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
			if logJSON {
				h = slog.NewJSONHandler(os.Stderr, nil)
			}
			m := &app.Main{Config: cfg, Logger: slog.New(h), Detach: detach, Upgrades: true}
			trimAfterStart(m.Logger)
			defer cpuProfile(m.Logger)()
			return m.Run(context.Background())
		},
	}
	c.Flags().BoolVar(&detach, "detach", false, "on exit, leave the services running (for an upgrade of medic)")
	c.Flags().BoolVar(&logJSON, "log-json", false, "write logs as JSON lines")
	c.Flags().BoolVar(&superviseSelfFlag, "supervise-self", false, "run the agent as a child and start it again when it dies (for hosts without systemd); the services are adopted, not restarted")
	return c
}

func validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check a config file; print every error as file:line:col: field: message",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			for _, w := range config.Lint(cfg) {
				fmt.Fprintln(os.Stderr, w)
			}
			// What `medic run` and a reload refuse on this host (MEDIC_CGROUPS as they read it).
			if err := supervise.CheckHostLimits(cfg, os.Getenv("MEDIC_CGROUPS")); err != nil {
				return err
			}
			fmt.Printf("%s: ok (%d services)\n", cfg.Path, len(cfg.Services))
			return nil
		},
	}
}

func statusCmd() *cobra.Command {
	var asJSON, fleetWide bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show services and instances of the running agent",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			if fleetWide {
				return printFleetStatus(os.Stdout, cl, asJSON)
			}
			var doc api.StatusDoc
			if asJSON {
				resp, err := cl.do("GET", "/v1/status", 10*time.Second)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(os.Stdout, resp.Body)
				return err
			}
			if err := cl.getJSON("GET", "/v1/status", 10*time.Second, &doc); err != nil {
				return err
			}
			printStatus(os.Stdout, doc)
			statusDrills(os.Stdout, cl)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as one JSON document")
	c.Flags().BoolVar(&fleetWide, "fleet", false, "every host of the fleet, from the summaries they publish in etcd")
	return c
}

func printStatus(w io.Writer, doc api.StatusDoc) {
	if doc.Audit.Degraded {
		// First, before the table: while it lasts, medic takes no remediation.
		fmt.Fprintf(w, "AUDIT DEGRADED: %s; remediation paused until appends work again\n\n", safetext.Line(fmt.Sprint(doc.Audit)))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// UP is how long the process has run, across medic restarts (an adopted
	// process keeps its start); AGE is how long the instance is in its state.
	fmt.Fprintln(tw, "INSTANCE\tSTATE\tREADY\tPID\tUP\tPORT\tRESTARTS\tAGE\tRSS\tLAST EXIT / REASON")
	for _, s := range doc.Services {
		for _, in := range s.Instances {
			ready := "no"
			if in.Ready {
				ready = "yes"
			}
			age := "-"
			if !in.Since.IsZero() {
				age = shortDur(doc.Time.Sub(in.Since))
			}
			rss := "-"
			if in.RSSBytes > 0 {
				rss = fmt.Sprintf("%.1fMiB", float64(in.RSSBytes)/(1<<20))
			}
			pid, up := "-", "-"
			if in.PID > 0 {
				pid = fmt.Sprint(in.PID)
				if !in.StartedAt.IsZero() {
					up = shortDur(doc.Time.Sub(in.StartedAt))
				}
			}
			why := in.Reason
			if in.LastExit != nil && in.State == medic.StateRunning {
				why = "last: " + in.LastExit.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", safetext.Line(in.ID), in.State, ready, pid, up, in.Port, in.Restarts, age, rss, trim(safetext.Line(why), 80))
		}
	}
	tw.Flush()
	for _, s := range doc.Services {
		rollout := ""
		if s.Rollout != "" {
			rollout = "; rollout " + trim(safetext.Line(s.Rollout), 80)
		}
		fmt.Fprintf(w, "%s: %d/%d ready (min_available %d)%s\n", safetext.Line(s.Name), s.Ready, s.Desired, s.MinAvailable, rollout)
	}
	printDependencies(w, doc)
}

// printDependencies lists the dependency listeners: breaker, calls, what medic refused or answered itself.
func printDependencies(w io.Writer, doc api.StatusDoc) {
	if len(doc.Dependencies) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPENDENCY\tLISTEN\tTARGET\tBREAKER\tTIMEOUT\tCALLS\tFAILED\tTIMED OUT\tREFUSED\tFALLBACKS\tP99")
	for _, d := range doc.Dependencies {
		state := d.State
		if d.Fault != nil {
			state += " (drill fault)"
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\n", d.Service, d.Dependency, d.Listen, trim(d.Target, 40), state,
			d.Timeout, d.Total(), d.Calls["error"], d.Calls["timeout"], d.Calls["open"]+d.Calls["shed"], d.Fallbacks,
			time.Duration(d.LatencyP99*float64(time.Second)).Round(time.Microsecond))
	}
	tw.Flush()
}

func shortDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func trim(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func eventsCmd() *cobra.Command {
	var follow, asJSON, fleetWide bool
	c := &cobra.Command{
		Use:   "events",
		Short: "Print recent events; -f follows new ones",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			if fleetWide {
				if follow {
					return usageError{fmt.Errorf("--fleet lists each host's newest %d events; it does not follow", fleetview.MaxEvents)}
				}
				return printFleetEvents(os.Stdout, cl, asJSON)
			}
			q := "?follow=0"
			var timeout = 10 * time.Second
			if follow {
				q, timeout = "?follow=1", 0
			}
			resp, err := cl.do("GET", "/v1/events"+q, timeout)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return sse(resp.Body, func(data []byte) error {
				if asJSON {
					fmt.Println(string(data))
					return nil
				}
				var ev medic.Event
				if err := json.Unmarshal(data, &ev); err != nil {
					return err
				}
				fmt.Printf("%s  %-18s %-10s %s\n", ev.Time.Local().Format("15:04:05.000"), safetext.Line(string(ev.Kind)), safetext.Line(ev.Target), safetext.Line(ev.Reason))
				return nil
			})
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	c.Flags().BoolVar(&asJSON, "json", false, "print each event as a JSON line")
	c.Flags().BoolVar(&fleetWide, "fleet", false, "the newest events of every host of the fleet, merged by time")
	return c
}

func logsCmd() *cobra.Command {
	var follow bool
	var tail int
	c := &cobra.Command{
		Use:   "logs SERVICE[/INDEX]",
		Short: "Print an instance's stdout and stderr (instance 0 by default)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			q := fmt.Sprintf("/v1/logs/%s/%d?tail=%d", id.Service, id.Index, tail)
			timeout := 10 * time.Second
			if follow {
				q, timeout = q+"&follow=1", 0
			}
			resp, err := cl.do("GET", q, timeout)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(os.Stdout, resp.Body)
			return err
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	c.Flags().IntVar(&tail, "tail", 100, "lines of history to print first")
	return c
}

func parseTarget(s string) (medic.InstanceID, error) {
	if !strings.Contains(s, "/") {
		return medic.InstanceID{Service: s}, nil
	}
	id, err := medic.ParseInstanceID(s)
	if err != nil {
		return id, usageError{err}
	}
	return id, nil
}

func restartCmd() *cobra.Command {
	var readyTimeout time.Duration
	c := &cobra.Command{
		Use:   "restart SERVICE | SERVICE/INDEX",
		Short: "Rolling restart of a service within its disruption budget, or restart one instance",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			if strings.Contains(args[0], "/") {
				return instanceAction(cl, args[0], "restart")
			}
			var out map[string]string
			if err := cl.getJSON("POST", fmt.Sprintf("/v1/services/%s/restart?ready_timeout=%s", args[0], readyTimeout), 0, &out); err != nil {
				return err
			}
			fmt.Printf("%s: rolling restart done\n", args[0])
			return nil
		},
	}
	c.Flags().DurationVar(&readyTimeout, "ready-timeout", 2*time.Minute, "how long to wait for each instance to be ready again")
	return c
}

func instanceAction(cl *client, target, action string) error {
	id, err := medic.ParseInstanceID(target)
	if err != nil {
		return usageError{err}
	}
	var out map[string]string
	if err := cl.getJSON("POST", fmt.Sprintf("/v1/instances/%s/%d/%s", id.Service, id.Index, action), 3*time.Minute, &out); err != nil {
		return err
	}
	fmt.Printf("%s: %s done\n", id, action)
	return nil
}

func instanceCmd(action string) *cobra.Command {
	return &cobra.Command{
		Use:   action + " SERVICE/INDEX",
		Short: strings.ToUpper(action[:1]) + action[1:] + " one instance",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			return instanceAction(cl, args[0], action)
		},
	}
}

func reloadCmd() *cobra.Command {
	return postCmd("reload", "Reload the agent's config file (as SIGHUP does); an invalid file is rejected", 0,
		func([]string) string { return "/v1/reload" }, func([]string) string { return "" },
		func([]string) string { return "reloaded" })
}

func schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of medic.yaml (for editors)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := config.Schema()
			if err != nil {
				return err
			}
			os.Stdout.Write(b)
			return nil
		},
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print medic's version",
		Args:  exactArgs(0),
		Run:   func(cmd *cobra.Command, args []string) { fmt.Println("medic", medic.Version) },
	}
}

func demoappCmd() *cobra.Command {
	var o demoapp.Options
	c := &cobra.Command{
		Use:   "demoapp",
		Short: "Run the demo service: a web server that can crash, hang, leak or slow down on command",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !(o.ErrorRate >= 0 && o.ErrorRate <= 1) || !(o.EventRate >= 0 && o.EventRate <= 1) {
				return usageError{fmt.Errorf("--error-rate %v, --event-rate %v: want shares from 0 to 1", o.ErrorRate, o.EventRate)}
			}
			if o.Latency < 0 || o.Latency > time.Minute || !(o.LatencySpread >= 0 && o.LatencySpread <= 3) {
				return usageError{fmt.Errorf("--latency %s, --latency-spread %v: want 0 to 1m and 0 to 3", o.Latency, o.LatencySpread)}
			}
			if o.Grandchildren < 0 || o.Grandchildren > demoapp.MaxGrandchildren {
				return usageError{fmt.Errorf("--fork %d: want 0 to %d", o.Grandchildren, demoapp.MaxGrandchildren)}
			}
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return demoapp.Run(ctx, o)
		},
	}
	c.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to serve on")
	c.Flags().StringVar(&o.ID, "id", "", "instance id (default $MEDIC_INSTANCE, else the listen address)")
	c.Flags().DurationVar(&o.StartupDelay, "startup-delay", 0, "wait this long before listening")
	c.Flags().DurationVar(&o.Latency, "latency", 0, "answer GET / after this long (the median with --latency-spread)")
	c.Flags().Float64Var(&o.LatencySpread, "latency-spread", 0, "sigma of the log-normal latency around --latency (0.3: p99 about 2x the median)")
	c.Flags().Float64Var(&o.ErrorRate, "error-rate", 0, "answer this share of GET / with 500 (0 to 1)")
	c.Flags().Float64Var(&o.EventRate, "event-rate", 0, "count this share of GET / in demo_backend_errors_total (GET /metrics) while answering 200 (0 to 1)")
	c.Flags().IntVar(&o.Grandchildren, "fork", 0, "start this many child processes (sleep) and leave them running (0 to 64): its supervisor must stop them")
	c.Flags().BoolVar(&o.Setsid, "setsid", false, "start one more child in a session of its own (setsid), out of the process group")
	return c
}
