// Command medic supervises services, probes their health, recovers them, and
// records every decision. See `medic --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes: 0 success, 1 failure of what was asked, 2 usage error.
const (
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error as a usage error (exit 2).
type usageError struct{ error }

// failure is a failure already reported to the user (exit 1, nothing more printed).
var errReported = errors.New("reported")

func main() {
	startFlightTrace()
	root := newRoot()
	err := root.Execute()
	if err == nil {
		return
	}
	var ue usageError
	switch {
	case errors.Is(err, errReported):
		os.Exit(exitFailure)
	case errors.As(err, &ue) || isCobraUsage(err):
		fmt.Fprintf(os.Stderr, "medic: %v\nRun 'medic --help' for usage.\n", err)
		os.Exit(exitUsage)
	default:
		fmt.Fprintf(os.Stderr, "medic: %v\n", err)
		os.Exit(exitFailure)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "medic",
		Short: "medic keeps backend services healthy: supervise, probe, recover, record",
		Long: `medic is a single binary that supervises processes, probes their health with
Kubernetes' liveness/readiness/startup semantics, restarts crashed and hung
instances with backoff, and records every decision in a hash-chained audit log.

Start with 'medic demo'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().String("addr", "", "agent API address (default: api.listen of -c, else $MEDIC_ADDR, else api.listen of ./medic.yaml, else 127.0.0.1:7070)")
	root.PersistentFlags().String("token", "", "bearer token for the API (default $MEDIC_TOKEN)")
	root.PersistentFlags().StringP("config", "c", "", "config file (default medic.yaml when it exists)")
	root.AddCommand(
		runCmd(), validateCmd(), statusCmd(), eventsCmd(), logsCmd(), restartCmd(), instanceCmd("stop"), instanceCmd("start"),
		reloadCmd(), auditCmd(), tokenCmd(), keyCmd(), schemaCmd(), versionCmd(), demoCmd(), demoappCmd(), demodbCmd(),
		runbooksCmd(), incidentsCmd(), conditionsCmd(), approvalsCmd(), approveCmd(), denyCmd(), pauseCmd(), resumeCmd(),
		drillCmd(), drillsCmd(),
		dbCmd(), hostsCmd(),
		scorecardCmd(), upgradeCmd(),
		deployCmd(), rollbackCmd(), releasesCmd(),
	)
	return root
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// exactArgs is cobra.ExactArgs returning a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}
