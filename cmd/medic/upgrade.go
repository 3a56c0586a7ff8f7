package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/app"
)

// upgradeCmd asks the agent of -c FILE for a seamless upgrade (SIGUSR2 to the
// pid in data_dir/medic.pid) and waits until the new process serves.
func upgradeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the running agent with the binary now at its path: listeners and instances are handed over, nothing restarts",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			pidFile := filepath.Join(cfg.DataDir, app.PIDFile)
			old, err := readPID(pidFile)
			if err != nil {
				return fmt.Errorf("find the running agent: %w", err)
			}
			if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
				return fmt.Errorf("signal the agent (pid %d): %w", old, err)
			}
			deadline := time.Now().Add(app.UpgradeTimeout + 5*time.Second)
			for time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				next, err := readPID(pidFile)
				if err != nil || next == old || syscall.Kill(next, 0) != nil {
					continue
				}
				// The old agent exits once it drained what it held: wait a
				// little for it; established connections may keep it up to
				// proxy.handover_drain, serving only them.
				quit := time.Now().Add(upgradeExitWait)
				for time.Now().Before(quit) && syscall.Kill(old, 0) == nil && !zombie(old) {
					time.Sleep(50 * time.Millisecond)
				}
				if syscall.Kill(old, 0) == nil && !zombie(old) {
					fmt.Printf("upgraded: pid %d hands over to pid %d; pid %d still serves the connections it holds (at most proxy.handover_drain), then exits\n", old, next, old)
					return nil
				}
				fmt.Printf("upgraded: pid %d hands over to pid %d\n", old, next)
				return nil
			}
			return fmt.Errorf("upgrade of pid %d: no new agent serving within %v (the old one keeps serving; see its log)", old, app.UpgradeTimeout)
		},
	}
}

// upgradeExitWait is how long medic upgrade waits for the old agent to exit
// once the new one serves. 10s.
const upgradeExitWait = 10 * time.Second

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z")
}
