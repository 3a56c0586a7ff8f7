package procstat_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/medic-dev/medic/internal/procstat"
)

func TestStartTime(t *testing.T) {
	st, err := procstat.StartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("own start time: %d, %v", st, err)
	}
	if again, _ := procstat.StartTime(os.Getpid()); again != st {
		t.Fatalf("start time changed: %d then %d", st, again)
	}
	// A zombie is not live: start a child and let it exit unreaped.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for i := 0; i < 200; i++ {
		if _, err := procstat.StartTime(pid); errors.Is(err, procstat.ErrNotLive) {
			break
		}
		if i == 199 {
			t.Fatal("the exited child still reads as live")
		}
		exec.Command("sleep", "0.01").Run()
	}
	cmd.Wait()
	if _, err := procstat.StartTime(pid); !errors.Is(err, procstat.ErrNotLive) {
		t.Fatalf("a reaped pid: %v, want ErrNotLive", err)
	}
}
