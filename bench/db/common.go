package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/ports"
)

// proc is a process the bench started; every one is stopped by PID.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(logPath string, cred *syscall.Credential, dir string, name string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends sig to the process group, then SIGKILL after grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || !p.running() {
		return
	}
	syscall.Kill(-p.pid(), sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// killPostmaster SIGKILLs the postgres of data dir and every process in its group.
func killPostmaster(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "postgres" {
		return
	}
	for _, c := range children(pid) {
		syscall.Kill(c, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// children lists the direct children of pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, c)
			}
		}
	}
	return out
}

func freePort() int {
	p, err := ports.Free(1)
	if err != nil {
		panic(err)
	}
	return p
}

func addr() string { return fmt.Sprintf("127.0.0.1:%d", freePort()) }

// link is a TCP relay that can be cut (an agent partitioned from etcd).
type link struct {
	Addr, target string
	ln           net.Listener
	mu           sync.Mutex
	cut          bool
	conns        map[net.Conn]bool
}

func newLink(target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	l := &link{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go l.accept()
	return l
}

func (l *link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go l.relay(c)
	}
}

func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		c.Close()
		return false
	}
	l.conns[c] = true
	return true
}

func (l *link) relay(c net.Conn) {
	if !l.track(c) {
		return
	}
	up, err := net.Dial("tcp", l.target)
	if err != nil || !l.track(up) {
		c.Close()
		return
	}
	go func() { io.Copy(up, c); up.Close(); c.Close() }()
	io.Copy(c, up)
	c.Close()
	up.Close()
}

func (l *link) setCut(cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = cut
	if cut {
		for c := range l.conns {
			c.Close()
		}
		l.conns = map[net.Conn]bool{}
	}
}

func (l *link) close() { l.ln.Close(); l.setCut(true) }

// startEtcd runs an etcd in dir.
func startEtcd(dir string) (*proc, string, error) {
	c, p := addr(), addr()
	pr, err := startProc(filepath.Join(dir, "etcd.log"), nil, dir, "etcd", "--name", "bench", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://"+c, "--advertise-client-urls", "http://"+c,
		"--listen-peer-urls", "http://"+p, "--initial-advertise-peer-urls", "http://"+p, "--initial-cluster", "bench=http://"+p,
		"--log-level", "warn")
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cn, err := net.DialTimeout("tcp", c, 100*time.Millisecond); err == nil {
			cn.Close()
			return pr, c, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	pr.stop(syscall.SIGKILL, time.Second)
	return nil, "", fmt.Errorf("etcd did not start")
}

func dsnOf(hostports ...string) string {
	var hs, ps []string
	for _, hp := range hostports {
		h, p, _ := net.SplitHostPort(hp)
		hs, ps = append(hs, h), append(ps, p)
	}
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		strings.Join(hs, ","), strings.Join(ps, ","))
}

// query runs fn on a connection to the postgres at hostport.
func query(hostport string, timeout time.Duration, fn func(ctx context.Context, c *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := pgx.Connect(ctx, dsnOf(hostport))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return fn(ctx, c)
}

// writable reports whether the postgres at hostport answers as a primary.
func writable(hostport string) bool {
	var rec bool
	err := query(hostport, 300*time.Millisecond, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
	})
	return err == nil && !rec
}

// waitUntil polls cond against a deadline.
func waitUntil(within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
