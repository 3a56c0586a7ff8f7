package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/medic-dev/medic/internal/safetext"
	"github.com/spf13/cobra"
)

// jsonOrTable fetches path and prints it raw with --json, else through table.
func jsonOrTable(cmd *cobra.Command, path string, asJSON bool, table func(raw []byte) error) error {
	cl, err := newClient(cmd)
	if err != nil {
		return err
	}
	resp, err := cl.do("GET", path, 30*time.Second)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if asJSON {
		_, err = os.Stdout.Write(raw)
		return err
	}
	return table(raw)
}

func runbooksCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "runbooks",
		Short: "List runbooks with their trust level and record",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return jsonOrTable(cmd, "/v1/runbooks", asJSON, func(raw []byte) error {
				var doc struct {
					Paused   bool `json:"paused"`
					DryRun   bool `json:"dry_run"`
					Runbooks []map[string]any
				}
				if err := json.Unmarshal(raw, &doc); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "RUNBOOK\tTRUST\tRUNS\tTOWARD PROMOTION\tSUCCESS\tMEDIAN TTR\tCONDITION")
				for _, r := range doc.Runbooks {
					fmt.Fprintf(tw, "%v\t%v\t%v\t%v/%v\t%v\t%vs\t%v\n", sv(r["name"]), sv(r["level"]), num(r["runs"]), num(r["consecutive"]), num(r["promote_after"]),
						pct(r["success_rate"]), num(r["median_ttr_seconds"]), sv(r["condition"]))
				}
				tw.Flush()
				fmt.Printf("automation: paused=%v dry_run=%v\n", doc.Paused, doc.DryRun)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

func incidentsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "incidents",
		Short: "List incidents: detection, decisions, actions and recovery per target",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return jsonOrTable(cmd, "/v1/incidents", asJSON, func(raw []byte) error {
				var doc struct{ Incidents []map[string]any }
				if err := json.Unmarshal(raw, &doc); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "INCIDENT\tTARGET\tSTATE\tOPENED\tOUTCOME\tTTD\tTTR\tCONDITIONS\tRUNBOOKS")
				for _, in := range doc.Incidents {
					fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%vs\t%vs\t%v\t%v\n", sv(in["id"]), sv(in["target"]), sv(in["state"]), sv(in["opened"]),
						num(in["outcome"]), num(in["ttd_seconds"]), num(in["ttr_seconds"]), sv(in["conditions"]), sv(in["runbooks"]))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

func conditionsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "conditions",
		Short: "List pending and firing conditions",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return jsonOrTable(cmd, "/v1/conditions", asJSON, func(raw []byte) error {
				var doc struct{ Alerts []map[string]any }
				if err := json.Unmarshal(raw, &doc); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "CONDITION\tSTATE\tLABELS\tVALUE\tSINCE\tREASON")
				for _, a := range doc.Alerts {
					labels, _ := json.Marshal(a["labels"])
					fmt.Fprintf(tw, "%v\t%v\t%s\t%v\t%v\t%s\n", sv(a["condition"]), sv(a["state"]), safetext.Line(string(labels)), sv(a["value"]), sv(a["active_at"]), trim(sv((a["reason"])), 70))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

func approvalsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "approvals",
		Short: "List remediations waiting for a human's approval",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return jsonOrTable(cmd, "/v1/approvals", asJSON, func(raw []byte) error {
				var doc struct{ Approvals []map[string]any }
				if err := json.Unmarshal(raw, &doc); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tRUNBOOK\tTARGET\tDEADLINE\tWHAT")
				for _, a := range doc.Approvals {
					fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%s\n", sv(a["id"]), sv(a["runbook"]), sv(a["target"]), sv(a["deadline"]), trim(sv(a["summary"]), 80))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

// postCmd is a command that POSTs a JSON body and prints a one-line result.
func postCmd(use, short string, nargs int, path func(args []string) string, body func(args []string) string, done func(args []string) string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			if err := cl.postJSON(path(args), body(args), 30*time.Second, nil); err != nil {
				return err
			}
			fmt.Println(done(args))
			return nil
		},
	}
}

func approveCmd() *cobra.Command {
	return postCmd("approve ID", "Approve a proposed remediation (operator)", 1,
		func(a []string) string { return "/v1/approvals/" + a[0] + "/approve" }, func([]string) string { return "" },
		func(a []string) string { return a[0] + ": approved" })
}

func denyCmd() *cobra.Command {
	var reason string
	c := postCmd("deny ID", "Deny a proposed remediation (operator)", 1,
		func(a []string) string { return "/v1/approvals/" + a[0] + "/deny" },
		func([]string) string { b, _ := json.Marshal(map[string]string{"reason": reason}); return string(b) },
		func(a []string) string { return a[0] + ": denied" })
	c.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	return c
}

func pauseCmd() *cobra.Command {
	return postCmd("pause", "Pause all automation: conditions are still detected and recorded, nothing acts", 0,
		func([]string) string { return "/v1/automation/pause" }, func([]string) string { return "" },
		func([]string) string { return "automation paused" })
}

func resumeCmd() *cobra.Command {
	return postCmd("resume", "Resume automation", 0,
		func([]string) string { return "/v1/automation/resume" }, func([]string) string { return "" },
		func([]string) string { return "automation resumed" })
}

func num(v any) string {
	if v == nil {
		return "0"
	}
	return fmt.Sprint(v)
}

func pct(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.0f%%", f*100)
	}
	return "-"
}

// sv renders one untrusted value for a table cell, control characters escaped.
func sv(v any) string { return safetext.Line(fmt.Sprint(v)) }
