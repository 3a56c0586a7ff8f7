package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tool is one peer under test: how to start it around three demoapp
// instances, where clients send their requests, and how to see that it
// noticed a problem with an instance (its own log, status page or events).
type tool struct {
	name     string
	kind     string // what it is: supervisor, balancer, or both (medic)
	ports    []int  // instance ports
	front    int    // the port clients use: the balancer's, or (supervisors alone) the faulty instance's
	restarts bool   // it restarts processes itself
	dir      string
	groups   []*group
	// detect reports the first sign after t that the tool noticed instance
	// i's fault, with a word on what it was.
	detect func(i int, t time.Time) (time.Time, string)
	// apps: the harness runs the instances itself (balancers alone) and
	// restarts a killed one between faults.
	apps bool
	// coarse: the sign comes from a log stamped in whole seconds.
	coarse bool
	// ready, when set, waits before an injection until instance i takes
	// traffic (medic's balancer can leave one idle for seconds at low load).
	ready func(ctx context.Context, i int)
}

// env is what every tool setup needs.
type env struct {
	demo  []string // the demoapp command, "--listen ADDR" appended
	medic string
	dir   string
	base  int // base..base+2 instances, base+3 front, base+4 admin
}

func (e env) listen(port int) string {
	return strings.Join(append(e.demo, "--listen", fmt.Sprintf("127.0.0.1:%d", port)), " ")
}

func (t *tool) stop() {
	for i := len(t.groups) - 1; i >= 0; i-- {
		g := t.groups[i]
		sig := syscall.SIGTERM
		if strings.HasPrefix(g.name, "runsvdir") {
			sig = syscall.SIGHUP // runsvdir: HUP stops every runsv, which stops its service
		}
		g.stop(sig, 5*time.Second)
	}
	t.groups = nil
	// Monit starts programs in sessions of their own, out of its process
	// group, and leaves them running when it exits: stop whatever still
	// serves one of this tool's ports, if it is a demoapp on that port.
	for _, p := range t.ports {
		if pid, _ := pidOf(p); pid != 0 {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cmdline), "demoapp") && strings.Contains(string(cmdline), fmt.Sprintf("127.0.0.1:%d", p)) {
				syscall.Kill(pid, syscall.SIGCONT)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func (t *tool) run(name string, argv []string, extraEnv ...string) error {
	g, err := startGroup(name, t.dir, filepath.Join(t.dir, name+".log"), argv, extraEnv...)
	if err != nil {
		return err
	}
	t.groups = append(t.groups, g)
	return nil
}

// startApp starts instance i under the harness itself (balancers alone).
func (t *tool) startApp(e env, i int) error {
	return t.run(fmt.Sprintf("app%d-%d", i, time.Now().UnixNano()), append(append([]string{}, e.demo...), "--listen", fmt.Sprintf("127.0.0.1:%d", t.ports[i])))
}

func write(path, text string, mode os.FileMode) error { return os.WriteFile(path, []byte(text), mode) }

// logScan returns the time of the first line after t that contains every
// needle, parsing the time with parse (a tool's own log: its resolution).
func logScan(path string, t time.Time, parse func(line string) (time.Time, bool), needles ...string) (time.Time, string) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		for _, n := range needles {
			if !strings.Contains(line, n) {
				continue next
			}
		}
		at, ok := parse(line)
		// Logs with whole seconds: a line stamped in the injection's own
		// second counts (it can only be about this fault).
		if ok && !at.Before(t.Truncate(time.Second)) {
			return at, line
		}
	}
	return time.Time{}, ""
}

func newMedic(e env) (*tool, error) {
	t := &tool{name: "medic", kind: "supervisor + probes + proxy", dir: e.dir, restarts: true}
	for i := range 3 {
		t.ports = append(t.ports, e.base+i)
	}
	t.front = e.base + 3
	admin := e.base + 4
	cfg := fmt.Sprintf(`data_dir: %s/data
api: {listen: "127.0.0.1:%d"}
services:
  web:
    command: [%q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %d
    stop: {grace: 2s}
    proxy: {listen: "127.0.0.1:%d", try_timeout: 1s}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 1s, timeout: 500ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 1s, timeout: 500ms, failure_threshold: 2}
`, e.dir, admin, e.medic, e.base, t.front)
	if err := write(filepath.Join(e.dir, "medic.yaml"), cfg, 0o644); err != nil {
		return nil, err
	}
	if err := t.run("medic", []string{e.medic, "run", "-c", filepath.Join(e.dir, "medic.yaml")}); err != nil {
		return nil, err
	}
	t.detect = func(i int, after time.Time) (time.Time, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/audit?target=web/%d&limit=50", admin, i))
		if err != nil {
			return time.Time{}, ""
		}
		defer resp.Body.Close()
		var doc struct {
			Records []struct {
				Time   time.Time         `json:"time"`
				Kind   string            `json:"kind"`
				Reason string            `json:"reason"`
				Fields map[string]string `json:"fields"`
			} `json:"records"`
		}
		json.NewDecoder(resp.Body).Decode(&doc)
		for _, r := range doc.Records {
			if r.Time.Before(after) {
				continue
			}
			switch {
			case r.Kind == "instance.restart", r.Kind == "instance.unready", r.Kind == "instance.stopping", r.Kind == "instance.crashloop",
				r.Kind == "probe.changed" && r.Fields["health"] == "failure":
				return r.Time, r.Kind + ": " + r.Reason
			}
		}
		// The proxy's passive health: an ejection is a state, not an event.
		if in, _, ok := medicProxy(admin, i); ok && !in {
			return time.Now(), "out of the proxy's rotation"
		}
		return time.Time{}, ""
	}
	t.ready = func(ctx context.Context, i int) {
		_, n0, _ := medicProxy(admin, i)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && ctx.Err() == nil; {
			if _, n, _ := medicProxy(admin, i); n > n0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return t, nil
}

// medicProxy reads instance i's rotation and request count from medic's status.
func medicProxy(admin, i int) (inRotation bool, requests uint64, ok bool) {
	resp, err := quick.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", admin))
	if err != nil {
		return false, 0, false
	}
	defer resp.Body.Close()
	var doc struct {
		Proxies []struct {
			Instances []struct {
				ID         string `json:"id"`
				InRotation bool   `json:"in_rotation"`
				Requests   uint64 `json:"requests"`
			} `json:"instances"`
		} `json:"proxies"`
	}
	if json.NewDecoder(resp.Body).Decode(&doc) != nil {
		return false, 0, false
	}
	for _, p := range doc.Proxies {
		for _, in := range p.Instances {
			if in.ID == fmt.Sprintf("web/%d", i) {
				return in.InRotation, in.Requests, true
			}
		}
	}
	return false, 0, false
}

func newSupervisord(e env) (*tool, error) {
	t := &tool{name: "supervisord", kind: "supervisor", dir: e.dir, restarts: true}
	var progs strings.Builder
	for i := range 3 {
		t.ports = append(t.ports, e.base+i)
		fmt.Fprintf(&progs, "[program:web_%d]\ncommand=%s\nautorestart=true\nstartsecs=0\nstopasgroup=true\nkillasgroup=true\n\n", i, e.listen(e.base+i))
	}
	t.front = t.ports[1]
	cfg := fmt.Sprintf(`[supervisord]
nodaemon=true
logfile=%[1]s/supervisord.main.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s
[unix_http_server]
file=%[1]s/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://%[1]s/supervisor.sock

%[2]s`, e.dir, progs.String())
	if err := write(filepath.Join(e.dir, "supervisord.conf"), cfg, 0o644); err != nil {
		return nil, err
	}
	if err := t.run("supervisord", []string{"supervisord", "-n", "-c", filepath.Join(e.dir, "supervisord.conf")}); err != nil {
		return nil, err
	}
	t.detect = func(i int, after time.Time) (time.Time, string) {
		return logScan(filepath.Join(e.dir, "supervisord.main.log"), after, func(l string) (time.Time, bool) {
			if len(l) < 23 {
				return time.Time{}, false
			}
			at, err := time.ParseInLocation("2006-01-02 15:04:05,000", l[:23], time.Local)
			return at, err == nil
		}, fmt.Sprintf("exited: web_%d ", i))
	}
	return t, nil
}

func newRunit(e env) (*tool, error) {
	t := &tool{name: "runit", kind: "supervisor", dir: e.dir, restarts: true}
	sv := filepath.Join(e.dir, "sv")
	for i := range 3 {
		t.ports = append(t.ports, e.base+i)
		d := filepath.Join(sv, fmt.Sprintf("web_%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		if err := write(filepath.Join(d, "run"), "#!/bin/sh\nexec "+e.listen(e.base+i)+" 2>&1\n", 0o755); err != nil {
			return nil, err
		}
	}
	t.front = t.ports[1]
	if err := t.run("runsvdir", []string{"runsvdir", sv}); err != nil {
		return nil, err
	}
	// runit logs nothing about a restart: the new process serving is the only sign.
	t.detect = func(int, time.Time) (time.Time, string) { return time.Time{}, "" }
	return t, nil
}

func newMonit(e env) (*tool, error) {
	t := &tool{name: "monit", kind: "supervisor + checks", dir: e.dir, restarts: true, coarse: true}
	var checks strings.Builder
	for i := range 3 {
		p := e.base + i
		t.ports = append(t.ports, p)
		pid := filepath.Join(e.dir, fmt.Sprintf("web_%d.pid", i))
		fmt.Fprintf(&checks, `check process web_%[1]d with pidfile %[2]s
  start program = "/bin/sh -c '%[3]s >/dev/null 2>&1 & echo $! > %[2]s'"
  stop program = "/bin/sh -c 'kill $(cat %[2]s)'"
  if failed host 127.0.0.1 port %[4]d protocol http request "/healthz/ready" with timeout 1 seconds for 2 cycles then restart
`, i, pid, e.listen(p), p)
	}
	t.front = t.ports[1]
	cfg := fmt.Sprintf("set daemon 1\nset logfile %[1]s/monit.main.log\nset pidfile %[1]s/monit.pid\nset idfile %[1]s/monit.id\nset statefile %[1]s/monit.state\n%[2]s",
		e.dir, checks.String())
	path := filepath.Join(e.dir, "monitrc")
	if err := write(path, cfg, 0o600); err != nil {
		return nil, err
	}
	if err := t.run("monit", []string{"monit", "-I", "-c", path}); err != nil {
		return nil, err
	}
	t.detect = func(i int, after time.Time) (time.Time, string) {
		return logScan(filepath.Join(e.dir, "monit.main.log"), after, func(l string) (time.Time, bool) {
			end := strings.IndexByte(l, ']')
			if !strings.HasPrefix(l, "[") || end < 0 {
				return time.Time{}, false
			}
			at, err := time.Parse("2006-01-02T15:04:05-0700", l[1:end])
			return at, err == nil
		}, fmt.Sprintf("'web_%d'", i), "error")
	}
	return t, nil
}

func newHAProxy(e env) (*tool, error) {
	t := &tool{name: "haproxy", kind: "balancer", dir: e.dir, apps: true}
	var servers strings.Builder
	for i := range 3 {
		t.ports = append(t.ports, e.base+i)
		fmt.Fprintf(&servers, "  server i%d 127.0.0.1:%d check inter 1s fall 2 rise 1\n", i, e.base+i)
	}
	t.front = e.base + 3
	admin := e.base + 4
	cfg := fmt.Sprintf(`global
  log stdout format raw local0
defaults
  mode http
  log global
  timeout connect 1s
  timeout client 30s
  timeout server 1s
  timeout check 500ms
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 502 503 504
frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /healthz/ready
%s
frontend stats
  bind 127.0.0.1:%d
  stats enable
  stats uri /stats
`, t.front, servers.String(), admin)
	if err := write(filepath.Join(e.dir, "haproxy.cfg"), cfg, 0o644); err != nil {
		return nil, err
	}
	for i := range 3 {
		if err := t.startApp(e, i); err != nil {
			return nil, err
		}
	}
	if err := t.run("haproxy", []string{"haproxy", "-db", "-f", filepath.Join(e.dir, "haproxy.cfg")}); err != nil {
		return nil, err
	}
	// The status page is polled by the harness (down is a state, not a log line).
	t.detect = pollDetect(func(i int) (bool, string) {
		resp, err := quick.Get(fmt.Sprintf("http://127.0.0.1:%d/stats;csv", admin))
		if err != nil {
			return false, ""
		}
		defer resp.Body.Close()
		r := csv.NewReader(resp.Body)
		r.FieldsPerRecord = -1
		rows, _ := r.ReadAll()
		for _, row := range rows {
			if len(row) > 17 && row[0] == "be" && row[1] == fmt.Sprintf("i%d", i) && !strings.HasPrefix(row[17], "UP") {
				return true, "server " + row[17]
			}
		}
		return false, ""
	})
	return t, nil
}

func newNginx(e env) (*tool, error) {
	t := &tool{name: "nginx", kind: "balancer (passive checks)", dir: e.dir, apps: true, coarse: true}
	var servers strings.Builder
	for i := range 3 {
		t.ports = append(t.ports, e.base+i)
		fmt.Fprintf(&servers, "    server 127.0.0.1:%d max_fails=2 fail_timeout=5s;\n", e.base+i)
	}
	t.front = e.base + 3
	tmp := filepath.Join(e.dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx.error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[2]s; proxy_temp_path %[2]s; fastcgi_temp_path %[2]s; uwsgi_temp_path %[2]s; scgi_temp_path %[2]s;
  upstream be {
%[3]s    keepalive 16;
  }
  server {
    listen 127.0.0.1:%[4]d;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_read_timeout 1s;
      proxy_next_upstream error timeout http_502 http_503 http_504;
    }
  }
}
`, e.dir, tmp, servers.String(), t.front)
	if err := write(filepath.Join(e.dir, "nginx.conf"), cfg, 0o644); err != nil {
		return nil, err
	}
	for i := range 3 {
		if err := t.startApp(e, i); err != nil {
			return nil, err
		}
	}
	if err := t.run("nginx", []string{"nginx", "-c", filepath.Join(e.dir, "nginx.conf"), "-p", e.dir, "-e", filepath.Join(e.dir, "nginx.error.log")}); err != nil {
		return nil, err
	}
	t.detect = func(i int, after time.Time) (time.Time, string) {
		return logScan(filepath.Join(e.dir, "nginx.error.log"), after, func(l string) (time.Time, bool) {
			if len(l) < 19 {
				return time.Time{}, false
			}
			at, err := time.ParseInLocation("2006/01/02 15:04:05", l[:19], time.Local)
			return at, err == nil
		}, fmt.Sprintf("127.0.0.1:%d", e.base+i))
	}
	return t, nil
}

// pollDetect turns a state check into a detector: a goroutine started by
// watch polls it every 20ms from the injection on.
func pollDetect(check func(i int) (bool, string)) func(int, time.Time) (time.Time, string) {
	return func(i int, after time.Time) (time.Time, string) {
		if ok, what := check(i); ok {
			return time.Now(), what
		}
		return time.Time{}, ""
	}
}

// watchDetect polls t.detect every 20ms until it reports, or ctx ends;
// for polled states the first report's time is the poll's.
func watchDetect(ctx context.Context, t *tool, i int, after time.Time) (time.Time, string) {
	for ctx.Err() == nil {
		if at, what := t.detect(i, after); !at.IsZero() {
			return at, what
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Time{}, ""
}
