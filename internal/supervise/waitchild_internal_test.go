package supervise

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// Waiting for running instances holds no OS thread each (the pidfd waits in
// the poller), and every exit is still seen with its status.
func TestWaitingHoldsNoThreadPerInstance(t *testing.T) {
	const n = 24
	dir := t.TempDir()
	before := threads(t)
	var ps []*process
	t.Cleanup(func() {
		for _, p := range ps {
			syscall.Kill(-p.pid, syscall.SIGKILL)
		}
	})
	for i := range n {
		p, err := startProcess([]string{"sleep", "60"}, nil, dir, nil, nil, 0, filepath.Join(dir, strconv.Itoa(i)+".log"), 0, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	time.Sleep(300 * time.Millisecond) // the waiters park (or, blocking in wait(2), take their threads)
	if grew := threads(t) - before; grew >= n/2 {
		t.Fatalf("threads grew by %d while waiting for %d children; want far fewer than one each", grew, n)
	}
	for _, p := range ps {
		if err := p.signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range ps {
		select {
		case ex := <-p.exited:
			if ex.Signal != "SIGTERM" {
				t.Fatalf("child %d: exit %+v; want killed by SIGTERM", i, ex)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("child %d: exit not seen in 10 s", i)
		}
	}
}
