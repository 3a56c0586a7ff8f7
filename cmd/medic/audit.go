package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/safetext"
	"github.com/medic-dev/medic/internal/sqlite"
)

func auditCmd() *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "List or verify the hash-chained audit log"}
	var f struct {
		target, actor, kind, since string
		limit                      int
		asJSON                     bool
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records (newest last)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"target": f.target, "actor": f.actor, "kind": f.kind, "since": f.since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", strconv.Itoa(f.limit))
			var out struct {
				Records []audit.Record `json:"records"`
			}
			if err := cl.getJSON("GET", "/v1/audit?"+q.Encode(), 30*time.Second, &out); err != nil {
				return err
			}
			if f.asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tKIND\tTARGET\tREASON")
			for _, r := range out.Records {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Local().Format("2006-01-02 15:04:05.000"),
					safetext.Line(r.Actor), safetext.Line(r.Kind), safetext.Line(r.Target), trim(safetext.Line(r.Reason), 100))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&f.target, "target", "", "only records about this target (web/0, web, config)")
	list.Flags().StringVar(&f.actor, "actor", "", "only records by this actor")
	list.Flags().StringVar(&f.kind, "kind", "", "only records of this kind")
	list.Flags().StringVar(&f.since, "since", "", "only records newer than a duration ago (1h) or an RFC 3339 time")
	list.Flags().IntVar(&f.limit, "limit", 100, "at most this many records (the newest)")
	list.Flags().BoolVar(&f.asJSON, "json", false, "print one JSON document")

	var dataDir string
	var fleetWide bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit chain: detects edited, deleted or reordered records",
		Long: `Verify the audit chain through the running agent, or, with --data-dir, directly
in the store (the agent may be stopped). Exit 1 when the chain is broken.

--fleet checks every host of the fleet: it reads the heads each host anchored
in etcd (through this agent), then each host's records over that host's API
with this command's token, and fails naming the host and the record when a
log does not extend its anchored heads (a record rewritten, even with the
chain recomputed after it, or records removed).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fleetWide {
				cl, err := newClient(cmd)
				if err != nil {
					return err
				}
				return verifyFleet(os.Stdout, cl)
			}
			if dataDir != "" {
				db, err := sqlite.Open(dataDir)
				if err != nil {
					return fmt.Errorf("open store in %s: %w", dataDir, err)
				}
				defer db.Close()
				log, err := audit.Open(db, clock.Real{})
				if err != nil {
					fmt.Fprintf(os.Stderr, "audit chain BROKEN: %v\n", err)
					return errReported
				}
				n, err := log.Verify(context.Background())
				return report(n, err)
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			var out struct {
				OK       bool   `json:"ok"`
				Records  int    `json:"records"`
				Degraded bool   `json:"degraded"`
				Error    string `json:"error"`
			}
			if err := cl.getJSON("GET", "/v1/audit/verify", time.Minute, &out); err != nil {
				return err
			}
			if out.Degraded {
				fmt.Fprintf(os.Stderr, "%s\nthe %d stored records verify, but records are held or lost until appends work again\n", out.Error, out.Records)
				return errReported
			}
			if !out.OK {
				return report(out.Records, fmt.Errorf("%s", out.Error))
			}
			return report(out.Records, nil)
		},
	}
	verify.Flags().BoolVar(&fleetWide, "fleet", false, "verify every host's log, read over its API with this token, against the heads it anchored in etcd")
	verify.Flags().StringVar(&dataDir, "data-dir", "", "verify the store in this data directory instead of asking the agent")
	c.AddCommand(list, verify)
	return c
}

func report(n int, err error) error {
	if err != nil {
		fmt.Fprintf(os.Stderr, "audit chain BROKEN after %d good records: %v\n", n, err)
		return errReported
	}
	fmt.Printf("audit chain ok: %d records verified\n", n)
	return nil
}

func tokenCmd() *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Manage API tokens (the file keeps only their SHA-256)"}
	var role, file string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a token, store its hash in -f FILE and print the token once",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return usageError{err}
			}
			if file == "" {
				return usageError{fmt.Errorf("token add needs -f FILE (the api.tokens_file)")}
			}
			tok, err := auth.AddToken(file, args[0], r)
			if err != nil {
				return err
			}
			fmt.Println(tok)
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	add.Flags().StringVarP(&file, "file", "f", "", "tokens file")
	var rmFile string
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove the token NAME from -f FILE; a running medic refuses it after `medic reload` (or SIGHUP)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rmFile == "" {
				return usageError{fmt.Errorf("token remove needs -f FILE (the api.tokens_file)")}
			}
			if err := auth.RemoveToken(rmFile, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "removed token %s from %s; run `medic reload` (or send SIGHUP) so that the agent refuses it\n", args[0], rmFile)
			return nil
		},
	}
	remove.Flags().StringVarP(&rmFile, "file", "f", "", "tokens file")
	c.AddCommand(add, remove)
	return c
}
