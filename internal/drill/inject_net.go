package drill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
)

// faultClient calls the instance's own fault endpoints. It never goes
// through a proxy from the environment: the instance is on loopback.
var faultClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func (t *Target) call(ctx context.Context, method, path string) error {
	if t.Port <= 0 {
		return fmt.Errorf("instance %s has no port", t.Instance)
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q: want an absolute path such as /fault/unready", path)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", t.Port, path)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	resp, err := faultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// injectHTTP asks the instance to fail through its own fault endpoint (the
// demoapp's /fault/*, or the same in any service): params path (required),
// method (default POST), restore_path (called on restore while the same
// process runs) and restart_on_restore ("true": restart the instance on
// restore if the same process still runs, for faults that only a restart
// clears, such as /fault/hang).
func injectHTTP(ctx context.Context, t *Target) (Restore, error) {
	path := t.param("path", "")
	if path == "" {
		return nil, fmt.Errorf("fault http: parameter path is required")
	}
	method := t.param("method", http.MethodPost)
	start := procStart(t.PID)
	if err := t.call(ctx, method, path); err != nil {
		return nil, fmt.Errorf("fault http on %s: %w", t.Instance, err)
	}
	t.Note("%s %s on %s (pid %d)", method, path, t.Instance, t.PID)
	return func(ctx context.Context) error {
		st, ok := t.status(t.Instance)
		same := ok && st.PID == t.PID && (start == 0 || procStart(t.PID) == start)
		if !same {
			t.Note("%s runs a new process: the fault went with the old one", t.Instance)
			return nil
		}
		if rp := t.param("restore_path", ""); rp != "" {
			if err := t.call(ctx, http.MethodPost, rp); err != nil {
				return fmt.Errorf("restore %s: %w", t.Instance, err)
			}
			t.Note("POST %s on %s", rp, t.Instance)
		}
		if t.param("restart_on_restore", "") == "true" {
			if err := t.Sup.RestartInstance(ctx, t.Instance, t.Actor(), "drill over: restart to clear the injected fault"); err != nil {
				return fmt.Errorf("restart %s to clear the fault: %w", t.Instance, err)
			}
			t.Note("restarted %s to clear the fault", t.Instance)
		}
		return nil
	}, nil
}

// injectProxy injects a fault into the proxy's traffic to the instance:
// params latency (a duration, or "auto" for twice the proxy's try_timeout,
// so every try is cut), error_rate and reset_rate (fractions).
func injectProxy(ctx context.Context, t *Target) (Restore, error) {
	if t.Traffic == nil {
		return nil, fmt.Errorf("fault proxy: service %s has no proxy", t.Service)
	}
	var f proxy.Fault
	if v := t.param("latency", ""); v != "" {
		d, err := proxyLatency(v, t.Config, t.Service)
		if err != nil {
			return nil, err
		}
		f.Latency = config.Duration(d)
	}
	for _, p := range []struct {
		name string
		dst  *float64
	}{{"error_rate", &f.ErrorRate}, {"reset_rate", &f.ResetRate}} {
		if v := t.param(p.name, ""); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("fault proxy: %s %q: want a fraction", p.name, v)
			}
			*p.dst = x
		}
	}
	if f.IsZero() {
		return nil, fmt.Errorf("fault proxy: set latency, error_rate or reset_rate")
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	if err := t.Traffic.SetFault(t.Instance, f); err != nil {
		return nil, fmt.Errorf("inject proxy fault into %s: %w", t.Instance, err)
	}
	t.Note("proxy fault on %s: latency %v, error_rate %v, reset_rate %v", t.Instance, f.Latency, f.ErrorRate, f.ResetRate)
	return func(ctx context.Context) error {
		if err := t.Traffic.SetFault(t.Instance, proxy.Fault{}); err != nil {
			return fmt.Errorf("clear proxy fault on %s: %w", t.Instance, err)
		}
		t.Note("proxy fault on %s cleared", t.Instance)
		return nil
	}, nil
}

func proxyLatency(v string, cfg *config.Config, service string) (time.Duration, error) {
	if v != "auto" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("fault proxy: latency %q: want a duration such as 500ms, or auto", v)
		}
		return d, nil
	}
	try := 5 * time.Second // the proxy's documented default
	if cfg != nil {
		if svc := cfg.Services[service]; svc != nil && svc.Proxy != nil && svc.Proxy.TryTimeout > 0 {
			try = svc.Proxy.TryTimeout.D()
		}
	}
	return 2 * try, nil
}
