package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestRepositoryCommandsRunOneAtATime: a backup asked for while another
// command holding the repository's lock runs (a new term's stanza-create, a
// scheduled backup) waits for it; pgBackRest would refuse it with "unable
// to acquire lock" (seen in the failover e2e). Commands without the lock
// (info) are not held.
func TestRepositoryCommandsRunOneAtATime(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	fake := func(bin string, args ...string) *exec.Cmd {
		cmd := args[len(args)-1]
		return exec.Command("sh", "-c", `echo "start $1" >> "$2"; sleep 0.2; echo "end $1" >> "$2"`, "sh", cmd, trace)
	}
	bc := &config.Backup{Repository: filepath.Join(dir, "repo")}
	bc.SetDefaults()
	m, err := New(Options{Cluster: "pg", Config: bc, Repository: bc.Repository, Data: filepath.Join(dir, "pg"), StateDir: filepath.Join(dir, "state"), Command: fake})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range []string{"stanza-create", "backup", "check"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.run(context.Background(), c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(trace)
	lines := strings.Fields(strings.ReplaceAll(string(b), "\n", " "))
	for i := 0; i+3 < len(lines); i += 4 { // "start X end X" pairs, never interleaved
		if lines[i] != "start" || lines[i+2] != "end" || lines[i+1] != lines[i+3] {
			t.Fatalf("repository commands overlapped:\n%s", b)
		}
	}
	// A command that waits gives up with its context.
	m.repoLock <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.run(ctx, "backup"); err == nil || !strings.Contains(err.Error(), "waiting for medic's other pgBackRest command") {
		t.Fatalf("a cancelled wait: %v", err)
	}
	<-m.repoLock
	if _, err := m.run(ctx, "info"); err == nil || strings.Contains(err.Error(), "waiting") {
		t.Fatalf("info must not wait for the lock: %v", err)
	}
}
