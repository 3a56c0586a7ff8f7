package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/config"
)

// client talks to a running agent's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(cmd *cobra.Command) (*client, error) {
	addr, implicit, err := agentAddr(cmd, os.Getenv)
	if err != nil {
		return nil, err
	}
	token, _ := cmd.Flags().GetString("token")
	if token == "" {
		token = os.Getenv("MEDIC_TOKEN")
	}
	if token != "" && implicit != "" && !loopbackURL(addr) {
		return nil, fmt.Errorf("the agent address %s comes from %s found in the current directory, not from you: "+
			"medic does not send your token there; pass --addr or -c to point at it", addr, implicit)
	}
	return &client{base: addr, token: token, http: &http.Client{}}, nil
}

// agentAddr decides where the CLI talks to: --addr, then the api.listen of
// an explicit -c FILE, then $MEDIC_ADDR, then the api.listen of a medic.yaml
// in the current directory, then 127.0.0.1:7070. implicit names that
// medic.yaml when the address came from it (the user did not point there).
func agentAddr(cmd *cobra.Command, getenv func(string) string) (addr, implicit string, err error) {
	fromConfig := func(path string) (string, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return "", fmt.Errorf("read the agent address from %s: %w", path, err)
		}
		return cfg.API.Listen, nil
	}
	addr, _ = cmd.Flags().GetString("addr")
	if p, _ := cmd.Flags().GetString("config"); addr == "" && p != "" {
		if addr, err = fromConfig(p); err != nil {
			return "", "", err
		}
	}
	if addr == "" {
		addr = getenv("MEDIC_ADDR")
	}
	if addr == "" {
		if _, err := os.Stat("medic.yaml"); err == nil {
			if addr, err = fromConfig("medic.yaml"); err != nil {
				return "", "", err
			}
			implicit = "medic.yaml"
		}
	}
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/"), implicit, nil
}

// loopbackURL reports whether u names this machine (a loopback IP or localhost).
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// configPath returns -c, or medic.yaml when it exists, or "".
func configPath(cmd *cobra.Command) string {
	p, _ := cmd.Flags().GetString("config")
	if p != "" {
		return p
	}
	if _, err := os.Stat("medic.yaml"); err == nil {
		return "medic.yaml"
	}
	return ""
}

func (c *client) do(method, path string, timeout time.Duration) (*http.Response, error) {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = timeout
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the medic agent at %s (is `medic run` running?): %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// postJSON POSTs body (a JSON document, or "" for none) and decodes the answer into v (if not nil).
func (c *client) postJSON(path, body string, timeout time.Duration, v any) error {
	req, err := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = timeout
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the medic agent at %s (is `medic run` running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("POST %s: %s (HTTP %d)", path, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("POST %s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode %s: %w", path, err)
		}
	}
	return nil
}

// getJSON decodes a JSON response into v.
func (c *client) getJSON(method, path string, timeout time.Duration, v any) error {
	resp, err := c.do(method, path, timeout)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// sse reads a server-sent event stream, calling f with each data payload.
func sse(r io.Reader, f func(data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			if err := f([]byte(d)); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
