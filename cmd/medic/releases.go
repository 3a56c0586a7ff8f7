package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/safetext"
)

// deployCmd is `medic deploy SERVICE --set command=... --version v2`.
func deployCmd() *cobra.Command {
	var sets []string
	var version string
	var asJSON bool
	c := &cobra.Command{
		Use:   "deploy SERVICE",
		Short: "Roll a service out to a new release: the running spec with --set changes (operator role; audited)",
		Long: `The agent makes a release from the spec the service runs with the changes given,
validates it like the config file, records it in the release history and
replaces the instances one at a time within the disruption budget (a new one
ready before an old one is drained and stopped). It answers when every
instance runs the release, with the requests and client errors its proxy saw
meanwhile; after 2 minutes it answers that the rollout goes on.

--set takes command="./web --v2" (words, or a JSON array), dir=PATH,
instances=N or env.NAME=VALUE (an empty value removes NAME); repeat it.
The release outlives a restart of medic until the config file's spec of the
service changes.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch := release.Changes{Version: version, Set: map[string]string{}}
			for _, s := range sets {
				k, v, ok := strings.Cut(s, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--set %q: want KEY=VALUE", s)}
				}
				ch.Set[k] = v
			}
			if len(ch.Set) == 0 && version == "" {
				return usageError{fmt.Errorf("deploy: nothing to change: give --set KEY=VALUE or --version")}
			}
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(ch)
			var out release.Release
			if err := cl.postJSON("/v1/services/"+url.PathEscape(args[0])+"/deploy", string(body), 3*time.Minute, &out); err != nil {
				return err
			}
			return printRelease(out, asJSON)
		},
	}
	c.Flags().StringArrayVar(&sets, "set", nil, "KEY=VALUE change to the running spec (command, dir, instances, env.NAME)")
	c.Flags().StringVar(&version, "version", "", "version label of the release (default r<N>)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the release as one JSON document")
	c.AddCommand(canaryStatusCmd(), canaryAnswerCmd(true), canaryAnswerCmd(false))
	return c
}

// canaryView is the agent's answer about a canary (GET /v1/services/S/canary).
type canaryView struct {
	canary.Report
	Text                  string  `json:"text"`
	TimeToVerdictSeconds  float64 `json:"time_to_verdict_seconds,omitempty"`
	TimeToRollbackSeconds float64 `json:"time_to_rollback_seconds,omitempty"`
}

// canaryStatusCmd is `medic deploy status SERVICE`.
func canaryStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status SERVICE",
		Short: "Show the service's canary under way, or its last one: phase, weights, the verdict metric by metric, timeline",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			var v canaryView
			if err := cl.getJSON("GET", "/v1/services/"+url.PathEscape(args[0])+"/canary", 10*time.Second, &v); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(v)
			}
			for _, l := range strings.Split(strings.TrimRight(v.Text, "\n"), "\n") {
				fmt.Println(safetext.Line(l))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the canary as one JSON document")
	return c
}

// canaryAnswerCmd is `medic deploy approve|deny SERVICE`.
func canaryAnswerCmd(ok bool) *cobra.Command {
	use, short, path := "approve SERVICE", "Approve the promotion a canary waits for (deploy.trust: propose; operator role; audited)", "approve"
	if !ok {
		use, short, path = "deny SERVICE", "Refuse the promotion a canary waits for: it is rolled back (operator role; audited)", "deny"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			var v canaryView
			if err := cl.postJSON("/v1/services/"+url.PathEscape(args[0])+"/canary/"+path, "{}", 10*time.Second, &v); err != nil {
				return err
			}
			fmt.Printf("%s: %s\n", safetext.Line(args[0]), safetext.Line(v.State.Reason))
			return nil
		},
	}
}

// rollbackCmd is `medic rollback SERVICE [--to VERSION]`.
func rollbackCmd() *cobra.Command {
	var to string
	var asJSON bool
	c := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Roll a service back to an earlier release from its history (operator role; audited)",
		Long: `Without --to, the newest earlier release that went live with another spec than
the running one; with --to, the release with that version. The history is kept
in medic's store, so this works after medic restarted. The instances are
replaced one at a time within the disruption budget, as for a deploy.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(map[string]string{"to": to})
			var out release.Release
			if err := cl.postJSON("/v1/services/"+url.PathEscape(args[0])+"/rollback", string(body), 3*time.Minute, &out); err != nil {
				return err
			}
			return printRelease(out, asJSON)
		},
	}
	c.Flags().StringVar(&to, "to", "", "version to roll back to (default: the last live release before the running one)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the release as one JSON document")
	return c
}

// releasesCmd is `medic releases SERVICE [--json]`.
func releasesCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "releases SERVICE",
		Short: "List a service's release history, newest first: version, source, who, when, outcome, client errors",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := newClient(cmd)
			if err != nil {
				return err
			}
			var list []release.Release
			if err := cl.getJSON("GET", "/v1/services/"+url.PathEscape(args[0])+"/releases", 10*time.Second, &list); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(list)
			}
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tVERSION\tSOURCE\tACTOR\tCREATED\tOUTCOME\tTOOK\tCLIENT ERRORS\tCOMMAND")
			for _, r := range list {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, safetext.Line(r.Version), r.Source, safetext.Line(r.Actor),
					r.Created.Local().Format("2006-01-02 15:04:05"), r.Outcome, took(r), clientErrors(r), safetext.Line(strings.Join(r.Spec.Command, " ")))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the history as one JSON document")
	return c
}

func printRelease(r release.Release, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	fmt.Printf("%s %s (release %d, %s): %s", safetext.Line(r.Service), safetext.Line(r.Version), r.Seq, safetext.Line(r.Reason), r.Outcome)
	if r.DurationSeconds != nil {
		fmt.Printf(" in %s", took(r))
	}
	if r.Requests != nil {
		fmt.Printf("; clients: %s", clientErrors(r))
	}
	if r.Detail != "" {
		fmt.Printf("; %s", safetext.Line(r.Detail))
	}
	fmt.Println()
	if r.Outcome == release.Failed {
		return fmt.Errorf("release %s of %s failed", safetext.Line(r.Version), safetext.Line(r.Service))
	}
	return nil
}

func took(r release.Release) string {
	if r.DurationSeconds == nil {
		return "-"
	}
	return (time.Duration(*r.DurationSeconds * float64(time.Second))).Round(10 * time.Millisecond).String()
}

func clientErrors(r release.Release) string {
	if r.Requests == nil || r.ClientErrors == nil {
		return "-"
	}
	return fmt.Sprintf("%d of %d", *r.ClientErrors, *r.Requests)
}
