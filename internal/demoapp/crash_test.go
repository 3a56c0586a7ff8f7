package demoapp_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/demoapp"
)

// childEnv makes the test binary run as a demoapp process (see TestMain), so
// that /fault/crash can be tested with the real os.Exit.
const childEnv = "DEMOAPP_TEST_CHILD_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(childEnv); addr != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := demoapp.Run(ctx, demoapp.Options{Listen: addr, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCrashExitsTheProcessWithStatus2(t *testing.T) {
	addr := freeAddr(t)
	cmd, exited := startChild(t, addr)
	url := "http://" + addr
	waitFor(t, 10*time.Second, "the child to serve", func() bool {
		c, err := httpGetCode(url + "/healthz/live")
		return err == nil && c == 200
	})
	if id := decode[demoapp.Identity](t, do(t, "GET", url+"/").body); id.PID != cmd.Process.Pid {
		t.Fatalf("GET / pid = %d, want the child's %d", id.PID, cmd.Process.Pid)
	}
	if r := do(t, "POST", url+"/fault/crash"); r.code != 202 || r.body != "crashing\n" {
		t.Fatalf("POST /fault/crash = %d %q: the response must arrive before the exit", r.code, r.body)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("child ended with %v, want exit status 2", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child still running 10s after /fault/crash")
	}
}

func TestSIGTERMShutsDownCleanly(t *testing.T) {
	addr := freeAddr(t)
	cmd, exited := startChild(t, addr)
	waitFor(t, 10*time.Second, "the child to serve", func() bool {
		c, err := httpGetCode("http://" + addr + "/healthz/live")
		return err == nil && c == 200
	})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("child after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child still running 10s after SIGTERM")
	}
}

// startChild runs the test binary as a demoapp on addr, in its own process
// group. The returned channel yields Wait's result once; the child is killed
// (by group) and reaped at the end of the test if it is still running.
func startChild(t *testing.T, addr string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start demoapp child: %v", err)
	}
	exited := make(chan error, 1)
	reaped := make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(reaped)
	}()
	t.Cleanup(func() {
		select {
		case <-reaped:
			return
		default:
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-reaped
	})
	return cmd, exited
}
