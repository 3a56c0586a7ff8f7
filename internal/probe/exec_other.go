//go:build unix && !linux

package probe

import (
	"context"
	"os/exec"
)

// runGroup waits for cmd, which leads its own process group, to exit or for
// ctx to end, and reports whether ctx cut it. Without Linux's waitid WNOWAIT
// the group cannot be swept safely after a normal exit (once reaped, the
// leader's pid may be reused), so only a cut kills the group here.
func runGroup(ctx context.Context, cmd *exec.Cmd) (cut bool, err error) {
	return waitOrKill(ctx, cmd)
}
