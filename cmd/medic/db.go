package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/pgha"
)

// dbCmd is `medic db`: the managed PostgreSQL clusters of the agent.
func dbCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "db",
		Short: "Managed PostgreSQL: status, switchover, failover",
		Long: `The agent keeps this host's member of each database in the config: the
primary holds a lease in etcd, replicas stream from it, and a replica takes
over when the lease is lost. These commands ask the running agent.`,
	}
	c.PersistentFlags().String("database", "", "database name (required when the agent keeps more than one)")
	c.AddCommand(dbStatusCmd(), dbChangeCmd("switchover"), dbChangeCmd("failover"), dbBackupCmd(), dbRestoreCmd(), dbBootstrapCmd())
	return c
}

func dbStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Members, roles, timeline, lag, and the lease holder with its expiry",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			if asJSON {
				resp, err := cl.do("GET", "/v1/db/status", 10*time.Second)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.Copy(os.Stdout, resp.Body)
				return err
			}
			var doc app.DBStatusDoc
			if err := cl.getJSON("GET", "/v1/db/status", 10*time.Second, &doc); err != nil {
				return err
			}
			want, _ := cmd.Flags().GetString("database")
			for _, st := range doc.Databases {
				if want == "" || st.Cluster == want {
					printDBStatus(os.Stdout, st)
				}
			}
			for _, st := range doc.Backups {
				if want == "" || st.Database == want {
					printBackupState(os.Stdout, st)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as one JSON document")
	return c
}

func printDBStatus(w io.Writer, st pgha.Status) {
	leader := "none"
	if l := st.Leader; l != nil {
		exp := "unknown"
		if l.ExpiresIn >= 0 {
			exp = fmt.Sprintf("%.1fs", l.ExpiresIn)
		}
		leader = fmt.Sprintf("%s (%s, lease expires in %s of %.0fs, revision %d)", l.Member, l.State, exp, l.LeaseTTL, l.Revision)
	}
	fmt.Fprintf(w, "database %s (%s): leader %s, timeline %d\n", st.Cluster, st.Mode, leader, st.Timeline)
	if !st.Etcd {
		fmt.Fprintf(w, "warning: member %s cannot reach etcd; this view may be stale\n", st.Member)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tTIMELINE\tLSN\tLAG\tUPSTREAM\tPOSTGRES\tNOTE")
	for _, m := range st.Members {
		note := ""
		if st.Sync != nil && st.Sync.Standby == m.Name && st.Mode == "sync" {
			note = "sync standby"
		}
		if m.Problem != "" {
			note = strings.TrimSpace(note + " not ready")
		}
		if st.Leader != nil && st.Leader.Member == m.Name {
			note = strings.TrimSpace("leader " + note)
		}
		lag := "-"
		if m.Role == pgha.RoleReplica {
			lag = fmt.Sprintf("%s %.1fs", bytesHuman(m.LagBytes), m.LagSeconds)
		}
		up := m.Upstream
		if up == "" {
			up = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.State, m.Timeline, pgha.FormatLSN(m.LSN), lag, up, m.Postgres, note)
	}
	tw.Flush()
	for _, m := range st.Members {
		if m.Problem != "" {
			fmt.Fprintf(w, "not ready: %s: %s\n", m.Name, m.Problem)
		}
	}
	for _, c := range st.Redundancy {
		fmt.Fprintf(w, "redundancy: %s\n", c)
	}
	if f := st.Failsafe; f.Active && f.Leader == st.Member {
		fmt.Fprintf(w, "failsafe: ACTIVE: etcd does not answer; every other member confirmed this primary, writable until %s\n", f.Until.Format("15:04:05.000"))
	} else if f.Active {
		fmt.Fprintf(w, "failsafe: ACTIVE: promised %s not to campaign before %s\n", f.Leader, f.Until.Format("15:04:05.000"))
	} else if f.Enabled && len(f.Members) > 0 {
		fmt.Fprintf(w, "failsafe: on, inactive (members asked: %s)\n", strings.Join(f.Members, ", "))
	} else if !f.Enabled {
		fmt.Fprintf(w, "failsafe: off on this member\n")
	}
	if f := st.Failsafe; f.Last != "" {
		fmt.Fprintf(w, "failsafe: last round: %s\n", f.Last)
	}
	if r := st.Request; r != nil {
		kind := "switchover"
		if r.Forced {
			kind = "failover"
		}
		fmt.Fprintf(w, "pending %s to %s requested by %s at %s\n", kind, orAnyMember(r.To), r.By, r.At.Format(time.RFC3339))
	}
}

func orAnyMember(s string) string {
	if s == "" {
		return "the best replica"
	}
	return s
}

func bytesHuman(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// dbChangeCmd is `medic db switchover [--to M]` or `medic db failover --to M`.
func dbChangeCmd(what string) *cobra.Command {
	var to string
	var asJSON bool
	short := "Hand the primary role over gracefully (clean stop, no lost commit)"
	if what == "failover" {
		short = "Force MEMBER to become the primary now, whatever its lag (operator role; audited)"
	}
	c := &cobra.Command{
		Use:   what,
		Short: short,
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if what == "failover" && to == "" {
				return usageError{fmt.Errorf("medic db failover needs --to MEMBER")}
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			db, _ := cmd.Flags().GetString("database")
			var out app.DBChangeDoc
			body, _ := json.Marshal(map[string]string{"to": to, "database": db})
			if err := cl.postJSON("/v1/db/"+what, string(body), 90*time.Second, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			fmt.Printf("%s: %s is the primary of %s (%.2fs)\n", what, out.Primary, out.Database, out.Seconds)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "member to promote")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	return c
}
