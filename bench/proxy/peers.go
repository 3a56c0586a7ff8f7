package main

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

//go:embed haproxy.cfg.tmpl
var haproxyTmpl string

//go:embed nginx.conf.tmpl
var nginxTmpl string

type instanceAddr struct{ Name, Addr string }

type peerConfig struct {
	Port         int
	Dir          string
	Threads      int
	TryTimeoutMs int
	Backends     []instanceAddr
}

// startPeer starts one proxy named kind (medic, haproxy, nginx) on a free
// port in front of backends and waits until it listens. "direct" starts
// nothing and targets the first backend.
func (b *bench) startPeer(kind string, backends []instanceAddr, shed bool) (*proc, int, error) {
	if kind == "direct" {
		_, port, _ := splitPort(backends[0].Addr)
		return nil, port, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	cfg := peerConfig{Port: port, Dir: b.dir, Threads: b.threads, TryTimeoutMs: int(b.tryTimeout / time.Millisecond), Backends: backends}
	var argv []string
	switch kind {
	case "medic":
		argv = []string{b.medicproxy, "-listen", addr(port), "-try-timeout", b.tryTimeout.String(), "-connect-timeout", b.tryTimeout.String()}
		if !shed {
			argv = append(argv, "-no-shed")
		}
		if b.shedTolerance > 0 {
			argv = append(argv, "-shed-tolerance", fmt.Sprint(b.shedTolerance))
		}
		for _, be := range backends {
			argv = append(argv, "-backend", be.Name+"="+be.Addr)
		}
	case "haproxy":
		path, err := b.render(kind+".cfg", haproxyTmpl, cfg)
		if err != nil {
			return nil, 0, err
		}
		argv = []string{"haproxy", "-db", "-f", path}
	case "nginx":
		for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			if err := os.MkdirAll(filepath.Join(b.dir, d), 0o755); err != nil {
				return nil, 0, err
			}
		}
		path, err := b.render(kind+".conf", nginxTmpl, cfg)
		if err != nil {
			return nil, 0, err
		}
		argv = []string{"nginx", "-p", b.dir, "-c", path, "-g", "daemon off;"}
	default:
		return nil, 0, fmt.Errorf("unknown peer %q", kind)
	}
	p, err := start(kind, filepath.Join(b.dir, kind+".log"), argv...)
	if err != nil {
		return nil, 0, err
	}
	if err := waitPort(p, port, 10*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, 0, err
	}
	return p, port, nil
}

// render writes a peer's config into the run directory, keeping it for the record.
func (b *bench) render(name, tmpl string, cfg peerConfig) (string, error) {
	t, err := template.New(name).Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("parse %s template: %w", name, err)
	}
	path := filepath.Join(b.dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := t.Execute(f, cfg); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return path, nil
}

func splitPort(a string) (string, int, error) {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			p, err := strconv.Atoi(a[i+1:])
			return a[:i], p, err
		}
	}
	return "", 0, fmt.Errorf("no port in %q", a)
}
