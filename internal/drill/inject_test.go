package drill_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/supervise"
)

// inject runs the built-in injector kind; the notes it (and its restore)
// make land in the returned slice.
func inject(t *testing.T, kind string, tg *drill.Target) (drill.Restore, *[]string, error) {
	t.Helper()
	in, ok := drill.DefaultInjectors().Get(kind)
	if !ok {
		t.Fatalf("no injector %s", kind)
	}
	notes := &[]string{}
	tg.Note = func(f string, a ...any) { *notes = append(*notes, fmt.Sprintf(f, a...)) }
	r, err := in.Inject(context.Background(), tg)
	return r, notes, err
}

// child starts a process in its own group, as the supervisor does, and
// stops it when the test ends; done closes when it has exited.
func child(t *testing.T) (cmd *exec.Cmd, done chan struct{}) {
	t.Helper()
	cmd = exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd, done
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for procState(pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d in state %s, want %s", pid, procState(pid), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSigstopInjectorFreezesAndContinues(t *testing.T) {
	cmd, _ := child(t)
	pid := cmd.Process.Pid
	restore, notes, err := inject(t, "sigstop", &drill.Target{Instance: medic.InstanceID{Service: "web", Index: 1}, PID: pid})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, "T")
	if err := restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, "S")
	if len(*notes) != 2 || !strings.Contains((*notes)[1], "sent SIGCONT") {
		t.Fatalf("notes %q", notes)
	}
	if _, _, err := inject(t, "sigstop", &drill.Target{Instance: medic.InstanceID{Service: "web", Index: 1}}); err == nil {
		t.Fatal("an instance without a process must be refused")
	}
}

func TestKillInjector(t *testing.T) {
	cmd, done := child(t)
	if _, _, err := inject(t, "kill", &drill.Target{PID: cmd.Process.Pid, Params: map[string]string{"signal": "nope"}}); err == nil {
		t.Fatal("a bad signal name must be refused")
	}
	restore, _, err := inject(t, "kill", &drill.Target{PID: cmd.Process.Pid, Params: map[string]string{"signal": "TERM"}})
	if err != nil || restore != nil {
		t.Fatalf("kill: %v (restore %v)", err, restore != nil)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process outlived SIGTERM")
	}
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("exit: %v", cmd.ProcessState)
	}
}

func TestHTTPInjectorRestoresOnlyTheSameProcess(t *testing.T) {
	var calls []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls = append(calls, r.Method+" "+r.URL.String()) }))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	self := os.Getpid() // the "instance" is this process: its start time is stable
	sup := &fakeSup{svcs: []supervise.ServiceStatus{{Name: "web", Instances: []supervise.InstanceStatus{{ID: "web/0", Index: 0, PID: self, Port: port}}}}}
	tg := &drill.Target{Instance: medic.InstanceID{Service: "web"}, PID: self, Port: port, Sup: sup,
		Params: map[string]string{"path": "/fault/leak?mb_per_s=5", "restore_path": "/fault/reset"}}
	restore, _, err := inject(t, "http", tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Join(calls, ";") != "POST /fault/leak?mb_per_s=5;POST /fault/reset" {
		t.Fatalf("calls %q", calls)
	}
	// The instance restarted meanwhile: the fault went with the old process.
	restore, notes, _ := inject(t, "http", tg)
	sup.svcs[0].Instances[0].PID = self + 100000
	restore(context.Background())
	if len(calls) != 3 || !strings.Contains((*notes)[len(*notes)-1], "runs a new process") {
		t.Fatalf("calls %q notes %q", calls, notes)
	}
}

func TestDiskInjector(t *testing.T) {
	allowed := t.TempDir()
	cfg := &config.Config{Drills: &config.DrillsConfig{DiskPaths: []string{allowed}}}
	restore, _, err := inject(t, "disk", &drill.Target{Drill: 4, Config: cfg, Params: map[string]string{"bytes": "1MiB", "age": "2h"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(allowed, "medic-drill-4.fill")
	st, err := os.Stat(path)
	if err != nil || st.Size() != 1<<20 || time.Since(st.ModTime()) < 119*time.Minute {
		t.Fatalf("fill file: %v size %d mtime %v", err, st.Size(), st.ModTime())
	}
	if err := restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after restore: %v", err)
	}
	// A cleanup that took the file first is fine.
	restore, _, _ = inject(t, "disk", &drill.Target{Drill: 5, Config: cfg, Params: map[string]string{"bytes": "1KiB"}})
	os.Remove(filepath.Join(allowed, "medic-drill-5.fill"))
	if err := restore(context.Background()); err != nil {
		t.Fatal(err)
	}

	outside := t.TempDir()
	escape := filepath.Join(allowed, "escape")
	os.Symlink(outside, escape)
	for _, c := range []struct {
		cfg    *config.Config
		params map[string]string
		want   string
	}{
		{&config.Config{}, map[string]string{"bytes": "1KiB"}, "no directory is allowed"},
		{cfg, map[string]string{"dir": outside, "bytes": "1KiB"}, "is not under drills.disk_paths"},
		{cfg, map[string]string{"dir": escape, "bytes": "1KiB"}, "is not under drills.disk_paths"},
		{cfg, map[string]string{"usage": "1.5"}, "usage"},
		{cfg, map[string]string{"bytes": "1KiB", "name": "../x"}, "plain file name"},
	} {
		if _, _, err := inject(t, "disk", &drill.Target{Drill: 6, Config: c.cfg, Params: c.params}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.params, err, c.want)
		}
	}
}

func TestStopDependencyInjector(t *testing.T) {
	sup := &fakeSup{svcs: []supervise.ServiceStatus{readySvc("db", 2)}}
	restore, _, err := inject(t, "stop-dependency", &drill.Target{Drill: 1, Dependency: "db", Sup: sup})
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sup.calls, ","); got != "stop db/0,stop db/1,start db/0,start db/1" {
		t.Fatalf("calls %s", got)
	}
}
