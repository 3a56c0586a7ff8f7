package main

import (
	"bufio"
	"context"
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

	"github.com/medic-dev/medic/internal/adminsock"
	"github.com/medic-dev/medic/internal/config"
)

// client talks to a running agent's API.
type client struct {
	base  string
	token string
	http  *http.Client
	// where names the agent in errors: base, or "unix:<path>" over the admin socket.
	where string
	// web is the agent's TCP address, for links a browser opens (base when
	// the CLI talks over TCP).
	web string
}

func newClient(cmd *cobra.Command) (*client, error) {
	addr, implicit, socket, err := agentAddr(cmd, os.Getenv)
	if err != nil {
		return nil, err
	}
	token, _ := cmd.Flags().GetString("token")
	if token == "" {
		token = os.Getenv("MEDIC_TOKEN")
	}
	if socket.path != "" && (socket.explicit || adminSocketUsable(socket.path, token != "" && implicit != "")) {
		// The admin socket: never behind a flood of the TCP port, and root or
		// the agent's user need no token there (docs/security.md).
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket.path)
		}}
		return &client{base: "http://localhost", token: token, http: &http.Client{Transport: tr}, where: "unix:" + socket.path, web: addr}, nil
	}
	if token != "" && implicit != "" && !loopbackURL(addr) {
		return nil, fmt.Errorf("the agent address %s comes from %s found in the current directory, not from you: "+
			"medic does not send your token there; pass --addr or -c to point at it", addr, implicit)
	}
	return &client{base: addr, token: token, http: &http.Client{}, where: addr, web: addr}, nil
}

// adminSocket is where the agent's admin socket may be: explicit when the
// user named it (--addr unix:PATH, $MEDIC_ADDR=unix:PATH), else a candidate
// from the config, used when it answers.
type adminSocket struct {
	path     string
	explicit bool
}

// adminSocketUsable reports whether the admin socket at path answers, and,
// when the token would go to a socket that only a medic.yaml found in the
// current directory named (guarded), whether the process serving it is root
// or the user running the CLI: the token goes to no one else.
func adminSocketUsable(path string, guarded bool) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false // absent, stale, or not ours to open: TCP
	}
	defer c.Close()
	if !guarded {
		return true
	}
	p, err := adminsock.PeerOf(c)
	return err == nil && adminsock.Trusted(p, uint32(os.Getuid()))
}

// agentAddr decides where the CLI talks to: --addr, then an explicit -c
// FILE, then $MEDIC_ADDR, then a medic.yaml in the current directory, then
// 127.0.0.1:7070. An address "unix:PATH" names an admin socket. From a
// config, the address is its api.listen and the config's admin socket
// (api.socket) is preferred when it answers. implicit names that medic.yaml
// when the address came from it (the user did not point there).
func agentAddr(cmd *cobra.Command, getenv func(string) string) (addr, implicit string, socket adminSocket, err error) {
	fromConfig := func(path string) (string, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return "", fmt.Errorf("read the agent address from %s: %w", path, err)
		}
		socket.path = cfg.API.SocketPath()
		return cfg.API.Listen, nil
	}
	addr, _ = cmd.Flags().GetString("addr")
	if p, _ := cmd.Flags().GetString("config"); addr == "" && p != "" {
		if addr, err = fromConfig(p); err != nil {
			return "", "", adminSocket{}, err
		}
	}
	if addr == "" {
		addr = getenv("MEDIC_ADDR")
	}
	if addr == "" {
		if _, err := os.Stat("medic.yaml"); err == nil {
			if addr, err = fromConfig("medic.yaml"); err != nil {
				return "", "", adminSocket{}, err
			}
			implicit = "medic.yaml"
		}
	}
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if p == "" {
			return "", "", adminSocket{}, fmt.Errorf("address %q: want unix:PATH, the agent's admin socket", addr)
		}
		return "http://localhost", "", adminSocket{path: p, explicit: true}, nil
	}
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/"), implicit, socket, nil
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
		return nil, fmt.Errorf("reach the medic agent at %s (is `medic run` running?): %w", c.where, err)
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
		return fmt.Errorf("reach the medic agent at %s (is `medic run` running?): %w", c.where, err)
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
