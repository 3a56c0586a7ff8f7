// Command medicproxy runs medic's proxy (internal/proxy) standalone in front
// of fixed instances, with a readiness loop standing in for the agent's
// readiness probe (GET path every period; fall failures take an instance out,
// rise successes bring it back, as HAProxy's inter/fall/rise). It exists for
// the benchmark in bench/proxy until the agent serves the proxy itself.
//
//	medicproxy -listen 127.0.0.1:8080 -backend web/0=127.0.0.1:9100 -backend web/1=127.0.0.1:9101
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

type backends []string

func (b *backends) String() string     { return strings.Join(*b, ",") }
func (b *backends) Set(v string) error { *b = append(*b, v); return nil }

func main() {
	var (
		bs         backends
		listen     = flag.String("listen", "127.0.0.1:8080", "address clients connect to")
		tryTimeout = flag.Duration("try-timeout", 0, "try_timeout (0: the default)")
		connect    = flag.Duration("connect-timeout", 0, "connect_timeout (0: the default)")
		noShed     = flag.Bool("no-shed", false, "turn the adaptive concurrency limit off")
		tolerance  = flag.Float64("shed-tolerance", 0, "shed.tolerance (0: the default)")
		probePath  = flag.String("probe", "/healthz/ready", "readiness path; empty: no readiness loop")
		period     = flag.Duration("probe-period", time.Second, "readiness probe period")
		probeTO    = flag.Duration("probe-timeout", 500*time.Millisecond, "readiness probe timeout")
		fall       = flag.Int("fall", 2, "failures that make an instance not ready")
		rise       = flag.Int("rise", 2, "successes that make it ready again")
		accessLog  = flag.Bool("access-log", false, "write the JSON access log to stderr")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
		dataPlane  = flag.String("data-plane", "", "data_plane: fast or net_http (empty: the default)")
	)
	flag.Var(&bs, "backend", "instance as id=host:port (repeatable)")
	flag.Parse()
	err := profiled(*cpuprofile, func() error {
		return run(bs, *listen, *tryTimeout, *connect, *noShed, *tolerance, *probePath, *period, *probeTO, *fall, *rise, *accessLog, *dataPlane)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "medicproxy:", err)
		os.Exit(1)
	}
}

// profiled runs fn, with a CPU profile written to path unless it is empty.
func profiled(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpuprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("cpuprofile: %w", err)
	}
	defer pprof.StopCPUProfile()
	return fn()
}

func run(bs backends, listen string, tryTimeout, connect time.Duration, noShed bool, tolerance float64, probePath string,
	period, probeTO time.Duration, fall, rise int, accessLog bool, dataPlane string) error {
	if len(bs) == 0 {
		return errors.New("no -backend given")
	}
	cfg := &config.Proxy{Listen: listen, TryTimeout: config.Duration(tryTimeout), ConnectTimeout: config.Duration(connect), DataPlane: dataPlane}
	if noShed {
		off := false
		cfg.Shed.Enabled = &off
	}
	cfg.Shed.Tolerance = tolerance
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	access := slog.New(slog.DiscardHandler)
	if accessLog {
		access = logger
	}
	p, err := proxy.New(proxy.Options{Service: "bench", Config: cfg, Logger: logger, AccessLog: access, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var wg sync.WaitGroup
	for _, b := range bs {
		id, addr, ok := strings.Cut(b, "=")
		if !ok {
			p.Close()
			return fmt.Errorf("-backend %q: want id=host:port", b)
		}
		p.SetBackend(id, addr, true)
		if probePath != "" {
			pr := prober{p: p, id: id, addr: addr, path: probePath, timeout: probeTO, fall: fall, rise: rise}
			wg.Go(func() { pr.loop(ctx, period) })
		}
	}
	err = p.Serve(ctx)
	stop()
	wg.Wait()
	logger.Info("final stats", "stats", p.Stats())
	return err
}

// prober is the stand-in for the agent's readiness probe of one instance:
// it calls SetBackend on readiness edges only.
type prober struct {
	p          *proxy.Proxy
	id, addr   string
	path       string
	timeout    time.Duration
	fall, rise int
}

func (pr prober) loop(ctx context.Context, period time.Duration) {
	client := &http.Client{Timeout: pr.timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	ready, fails, oks := true, 0, 0
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := pr.check(ctx, client)
		switch {
		case ok:
			oks, fails = oks+1, 0
		default:
			fails, oks = fails+1, 0
		}
		if ready && fails >= pr.fall {
			ready = false
			pr.p.SetBackend(pr.id, pr.addr, false)
		} else if !ready && oks >= pr.rise {
			ready = true
			pr.p.SetBackend(pr.id, pr.addr, true)
		}
	}
}

func (pr prober) check(ctx context.Context, c *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pr.addr+pr.path, nil)
	if err != nil {
		return false
	}
	res, err := c.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
	return res.StatusCode >= 200 && res.StatusCode < 400
}
