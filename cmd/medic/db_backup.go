package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/backup"
)

// dbBackupCmd is `medic db backup [--type full|diff|incr]`.
func dbBackupCmd() *cobra.Command {
	var typ string
	var asJSON bool
	c := &cobra.Command{
		Use:   "backup",
		Short: "Take a pgBackRest backup now, on the primary's agent (operator role; audited)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			db, _ := cmd.Flags().GetString("database")
			body, _ := json.Marshal(map[string]string{"database": db, "type": typ})
			var out backup.BackupInfo
			if err := cl.postJSON("/v1/db/backup", string(body), 6*time.Hour, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			fmt.Printf("%s backup %s: %s in %v\n", out.Type, out.Label, bytesHuman(uint64(out.Size)), out.Duration())
			return nil
		},
	}
	c.Flags().StringVar(&typ, "type", "full", "full, diff or incr")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	return c
}

// dbRestoreCmd is `medic db restore --to TIME|latest --into DIR|--as-new-cluster`.
func dbRestoreCmd() *cobra.Command {
	var to, into string
	var asNew, check, asJSON bool
	c := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup to a point in time into a scratch directory and a scratch postgres (operator role; audited)",
		Long: `The agent restores the newest backup before the target plus the archived WAL up
to it (--to latest: all of it) into an empty directory on its host, starts a
scratch postgres on a free loopback port, and waits until it accepts writes.
It never touches a member: the directory must be empty, the scratch postgres
archives nothing and follows no primary. It keeps running for you to inspect or
copy from; stop it with pg_ctl stop -D DIR. --check stops and removes it once
it accepted writes (a restore test).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError{fmt.Errorf("medic db restore needs --to TIME (RFC 3339) or --to latest")}
			}
			if (into == "") == !asNew {
				return usageError{fmt.Errorf("medic db restore needs exactly one of --into DIR and --as-new-cluster")}
			}
			if into != "" {
				abs, err := filepath.Abs(into)
				if err != nil {
					return err
				}
				into = abs
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			db, _ := cmd.Flags().GetString("database")
			keep := !check
			body, _ := json.Marshal(app.RestoreRequest{Database: db, To: to, Into: into, AsNewCluster: asNew, Keep: &keep})
			var out app.RestoreDoc
			if err := cl.postJSON("/v1/db/restore", string(body), 12*time.Hour, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			printRestore(os.Stdout, out)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "target: an RFC 3339 time, or latest")
	c.Flags().StringVar(&into, "into", "", "empty or missing directory on the agent's host")
	c.Flags().BoolVar(&asNew, "as-new-cluster", false, "restore into a new directory the agent picks under the database's state directory")
	c.Flags().BoolVar(&check, "check", false, "stop and remove the scratch postgres once it accepted writes")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	return c
}

func printRestore(w io.Writer, d app.RestoreDoc) {
	fmt.Fprintf(w, "restored %s to %s into %s: files %.1fs, recovery %.1fs\n", d.Database, d.Target, d.Dir, d.RestoreSeconds, d.RecoverSeconds)
	if d.Running {
		fmt.Fprintf(w, "scratch postgres on %s; stop it with: %s\n", d.Addr, d.Stop)
	} else {
		fmt.Fprintf(w, "scratch postgres accepted writes on %s, then was stopped and removed\n", d.Addr)
	}
}

func printBackupState(w io.Writer, st backup.State) {
	role := "replica (archiving and backups run on the primary)"
	if st.Primary {
		role = "primary: archives and backs up"
	}
	fmt.Fprintf(w, "backup of %s (stanza %s): %s, %d backups, repository %s (%s free)\n", st.Database, st.Stanza,
		role, st.Backups, st.Repository, bytesHuman(st.RepositoryFreeBytes))
	if b := st.Last; b != nil {
		fmt.Fprintf(w, "  last backup %s (%s) ended %s: %s in %v\n", b.Label, b.Type, b.Stop.Local().Format(time.RFC3339), bytesHuman(uint64(b.Size)), b.Duration())
		if st.LastFrom != "" && st.LastFromWhy == "" {
			fmt.Fprintf(w, "  medic's last backup copied from replica %s\n", st.LastFrom)
		} else if st.LastFrom != "" {
			fmt.Fprintf(w, "  medic's last backup copied from the primary %s: %s\n", st.LastFrom, st.LastFromWhy)
		}
	} else {
		fmt.Fprintf(w, "  no backup yet\n")
	}
	if a := st.Archive; a != nil {
		fmt.Fprintf(w, "  WAL archive lag %.1fs, %d segments; last archived %s at %s; %d failed pushes\n", a.Seconds, a.Segments,
			orDash(st.LastArchivedWAL), st.LastArchivedAt.Local().Format(time.RFC3339), st.ArchiveFailures)
	}
	if st.TLSServer != "" {
		state := "running"
		if !st.TLSServerUp {
			state = "NOT running (medic restarts it)"
		}
		fmt.Fprintf(w, "  pgBackRest TLS server on %s: %s\n", st.TLSServer, state)
	}
	if st.Running != "" {
		fmt.Fprintf(w, "  %s backup running\n", st.Running)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "  %d failures; last at %s: %s\n", st.Failures, st.LastErrorAt.Local().Format(time.RFC3339), st.LastError)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dbBootstrapCmd is `medic db bootstrap --from-backup`.
func dbBootstrapCmd() *cobra.Command {
	var fromBackup, asJSON bool
	var to string
	c := &cobra.Command{
		Use:   "bootstrap --from-backup [--to TIME|latest]",
		Short: "Recover a cluster that lost every member: this agent's member becomes the primary from the repository (operator role; audited)",
		Long: `Run it against the agent of the member to become the new primary, with its
postgres.data empty and no primary in the cluster. The agent restores the newest
backup and the whole WAL archive (with --to TIME: the newest backup that ended
before TIME and the WAL up to it) into the data directory, lets the recovery end
on a new timeline, starts it and promotes it (a forced failover by you); the
other members, started with empty data directories, clone from it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !fromBackup {
				return usageError{fmt.Errorf("medic db bootstrap needs --from-backup (the only source there is)")}
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			db, _ := cmd.Flags().GetString("database")
			body, _ := json.Marshal(map[string]string{"database": db, "to": to})
			var out app.BootstrapDoc
			if err := cl.postJSON("/v1/db/bootstrap", string(body), 12*time.Hour, &out); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(out)
			}
			fmt.Printf("%s: %s is the primary, restored from backup to %s (files %.1fs, recovery %.1fs, %.1fs in all)\n",
				out.Database, out.Primary, out.Target, out.RestoreSeconds, out.RecoverSeconds, out.Seconds)
			return nil
		},
	}
	c.Flags().BoolVar(&fromBackup, "from-backup", false, "restore from the repository (the newest backup before --to and the WAL up to it)")
	c.Flags().StringVar(&to, "to", "latest", "recovery target: an RFC 3339 time, or latest (the whole archive)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as one JSON document")
	return c
}
