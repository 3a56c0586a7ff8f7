package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// identity is the body of the demoapp's GET / (see internal/demoapp.Identity).
type identity struct {
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
}

// prober sends every request on a fresh connection: a supervisor's restart
// is measured from the client's side, as a new TCP connection would see it.
type prober struct {
	client *http.Client
}

func newProber(timeout time.Duration) *prober {
	return &prober{client: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}}
}

// get asks 127.0.0.1:port for its identity; an error unless it answers 200.
func (p *prober) get(ctx context.Context, port int) (identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if err != nil {
		return identity{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return identity{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return identity{}, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return identity{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil || id.PID == 0 {
		return identity{}, fmt.Errorf("body %q is not a demoapp identity", b)
	}
	return id, nil
}

// post sends a POST (a fault) and expects a 2xx.
func (p *prober) post(ctx context.Context, port int, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d", path, resp.StatusCode)
	}
	return nil
}

// pollInterval is the pause between two failed polls.
const pollInterval = time.Millisecond

// waitServing polls GET / until it answers 200 from a process other than
// notPID (0: any process), and returns that identity and the time of the
// answer. It gives up at the deadline or when ctx ends.
func (p *prober) waitServing(ctx context.Context, port, notPID int, within time.Duration) (identity, time.Time, error) {
	deadline := time.Now().Add(within)
	var last error
	for attempts := 0; ; attempts++ {
		id, err := p.get(ctx, port)
		now := time.Now()
		if err == nil && id.PID != notPID {
			return id, now, nil
		}
		if err == nil {
			err = fmt.Errorf("still pid %d", id.PID)
		}
		last = err
		if ctx.Err() != nil {
			return identity{}, now, ctx.Err()
		}
		if now.After(deadline) {
			return identity{}, now, fmt.Errorf("port %d not serving a new process within %v (%d attempts; last: %v)", port, within, attempts+1, last)
		}
		time.Sleep(pollInterval)
	}
}
