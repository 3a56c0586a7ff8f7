package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/sqlite"
)

const helperEnv = "MEDIC_AUDIT_HELPER_DIR"

// TestHelperProcess is not a test: TestAppendSurvivesSIGKILL runs the test
// binary again with only this function selected. It appends records to the
// store in $MEDIC_AUDIT_HELPER_DIR and prints each acknowledged seq on its
// own line, until it is killed (or, should the parent be gone, for at most a
// minute).
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestAppendSurvivesSIGKILL")
	}
	db, err := sqlite.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := audit.Open(db, clock.Real{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		r, err := l.Append(context.Background(), audit.Record{
			Actor: "helper", Kind: "tick", Target: "web/" + strconv.Itoa(i%3),
			Fields: map[string]string{"i": strconv.Itoa(i)},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the line is in the pipe before the next append.
		fmt.Printf("%d\n", r.Seq)
	}
	os.Exit(0)
}

// Every seq the child acknowledged before SIGKILL is in the store afterwards,
// and the chain (with its head) verifies. SIGKILL stops the process, not the
// kernel, so this proves Append does not acknowledge before commit; it
// cannot prove the fsync reached the platter.
func TestAppendSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() { _ = cmd.Process.Signal(syscall.SIGKILL) }
	waited := false
	t.Cleanup(func() {
		if !waited {
			kill()
			_ = cmd.Wait()
		}
	})
	// Guard against a child that stalls before acknowledging enough.
	watchdog := time.AfterFunc(60*time.Second, kill)
	defer watchdog.Stop()

	const killAfter = 150
	var acked []int64
	br := bufio.NewReader(stdout)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			// A fragment without its newline was never fully acknowledged.
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reading child output: %v", err)
			}
			break
		}
		seq, perr := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
		if perr != nil {
			continue // test framework chatter
		}
		acked = append(acked, seq)
		if len(acked) == killAfter {
			kill() // mid-stream: the child is inside its next Append
		}
	}
	err = cmd.Wait()
	waited = true
	if len(acked) < killAfter {
		t.Fatalf("child acknowledged %d records before exiting (%v); stderr:\n%s", len(acked), err, stderr.String())
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL; stderr:\n%s", err, stderr.String())
	}

	l, _, _ := MustOpenLog(t, dir)
	n, err := l.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify after SIGKILL: %v", err)
	}
	stored, err := l.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	present := map[int64]bool{}
	for _, r := range stored {
		present[r.Seq] = true
	}
	for _, s := range acked {
		if !present[s] {
			t.Fatalf("acknowledged seq %d is missing after SIGKILL (%d stored)", s, n)
		}
	}
	if n < len(acked) || n > len(acked)+1 {
		t.Fatalf("%d records stored, %d acknowledged: at most one unacknowledged commit may survive", n, len(acked))
	}
	t.Logf("acknowledged %d, stored %d", len(acked), n)
}

func BenchmarkAppend(b *testing.B) {
	l, _, _ := MustOpenLog(b, "")
	r := audit.Record{Actor: "runbook:restart-web", Kind: "action.start", Target: "web/1",
		Reason: "liveness failed 3 times", Correlation: "inc-42",
		Fields: map[string]string{"attempt": "1", "signal": "TERM"}}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := l.Append(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
