package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	drillreport "github.com/medic-dev/medic/internal/drill/report"
)

// printDrillModes prints, per failure mode, when it was last drilled and the
// last measured time to recover: "when did you last test recovery?". It
// prints nothing when no drill ever ran, and a note when the agent has no
// drill routes (an older agent).
func printDrillModes(w io.Writer, cl *client) error {
	var doc struct{ Modes []drill.ModeRecord }
	if err := cl.getJSON("GET", "/v1/drills/modes", 10*time.Second, &doc); err != nil {
		return err
	}
	if len(doc.Modes) == 0 {
		fmt.Fprintln(w, "no drill has run yet: try 'medic drill kill --service NAME'")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAILURE MODE\tLAST DRILLED\tRESULT\tLAST TTR\tSCENARIO\tSERVICE")
	for _, m := range doc.Modes {
		res := "failed"
		if m.Passed {
			res = "passed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.FailureMode, ago(m.LastDrilled), res, drillreport.Secs(m.LastTTR), m.Scenario, m.Service)
	}
	return tw.Flush()
}

// statusDrills is the drills section of `medic status`: one call from the
// status command after the services table. Errors are not fatal there.
func statusDrills(w io.Writer, cl *client) {
	fmt.Fprintln(w)
	if err := printDrillModes(w, cl); err != nil {
		fmt.Fprintf(w, "drills: %v\n", err)
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Local().Format("2006-01-02")
}
