package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/fleet"
)

func hostsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "hosts",
		Short: "The fleet's hosts as this agent sees them: up, suspect (lease gone) or lost (gone for the grace)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			resp, err := cl.do("GET", "/v1/fleet/hosts", 10*time.Second)
			if err != nil {
				if strings.Contains(err.Error(), "HTTP 404") {
					return errors.New("this agent is in no fleet: its config has no fleet section (docs/fleet.md)")
				}
				return err
			}
			defer resp.Body.Close()
			if asJSON {
				_, err = io.Copy(os.Stdout, resp.Body)
				return err
			}
			var st fleet.Status
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return fmt.Errorf("decode /v1/fleet/hosts: %w", err)
			}
			printHosts(os.Stdout, st, time.Now())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the membership as one JSON document")
	return c
}

// printHosts writes the membership for people: a summary line, then one
// aligned row per host.
func printHosts(w io.Writer, st fleet.Status, now time.Time) {
	self := "not joined"
	if st.Joined {
		self = fmt.Sprintf("joined with lease %s, safe for %s", strconv.FormatInt(st.Lease, 16), hostAge(st.SafeUntil.Sub(now)))
	}
	fmt.Fprintf(w, "fleet %s: this host %s (%s); lease_ttl %gs, grace %gs\n", st.Fleet, st.Self, self, st.LeaseTTL, st.Grace)
	if !st.Watching {
		fmt.Fprintln(w, "warning: this agent has not read the hosts from etcd yet; the list is empty, not the fleet")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tFOR\tADDRESS\tCAPACITY\tVERSION\tNOTE")
	for _, m := range st.Hosts {
		capacity, note := "-", ""
		if m.Capacity > 0 {
			capacity = strconv.Itoa(m.Capacity)
		}
		if m.Host == st.Self {
			note = "this host"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Host, m.State, hostAge(now.Sub(m.Since)), m.Address, capacity, m.Version, note)
	}
	tw.Flush()
}

// age renders d for people, rounded to what matters at its size.
func hostAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
