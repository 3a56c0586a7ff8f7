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

// ReadUsage of this test process agrees with what the runtime knows.
func TestReadUsageOfSelf(t *testing.T) {
	f, err := os.Open(os.Args[0]) // one more descriptor, known to be open
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := procstat.ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSBytes < 1<<20 || u.RSSBytes > 1<<34 {
		t.Errorf("RSS %d bytes: not a Go test binary's", u.RSSBytes)
	}
	if u.FDs < 4 {
		t.Errorf("FDs %d: stdin, stdout, stderr and the binary are open", u.FDs)
	}
	if u.CPUSeconds < 0 {
		t.Errorf("CPU %v s", u.CPUSeconds)
	}
	if _, err := procstat.ReadUsage(1 << 30); err != procstat.ErrNotLive {
		t.Errorf("no such process: err %v, want ErrNotLive", err)
	}
}
