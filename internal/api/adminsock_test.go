package api_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/adminsock"
	"github.com/medic-dev/medic/internal/audit"
)

// unixClient talks HTTP over the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func unixDo(t *testing.T, c *http.Client, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s over the admin socket: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestAdminSocket: on the admin socket a peer the kernel names as trusted
// (root, the agent's user) acts without a token and is named in the audit
// log; any other peer is judged by its token as on the TCP port.
func TestAdminSocket(t *testing.T) {
	f := newFixture(t)
	trusted := true
	f.srv.TrustPeer = func(adminsock.Peer) bool { return trusted }
	path := filepath.Join(t.TempDir(), adminsock.Name)
	ln, err := adminsock.Listen(path, 0o600, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.srv.ServeUnix(ln) }()
	c := unixClient(path)

	if code, body := unixDo(t, c, "GET", "/v1/status", ""); code != 200 {
		t.Fatalf("status over the socket without a token: HTTP %d %s", code, body)
	}
	if code, body := unixDo(t, c, "POST", "/v1/instances/web/0/restart", ""); code != 200 {
		t.Fatalf("restart over the socket as a trusted peer: HTTP %d %s", code, body)
	}
	acts, _ := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIAction)})
	if len(acts) != 1 || !strings.HasPrefix(acts[0].Actor, "api:unix:") {
		t.Fatalf("audited actions = %+v, want one by api:unix:<user>", acts)
	}
	// The audit gate holds on the socket too.
	f.srv.AuditHealth = func() audit.Health { return audit.Health{Degraded: true, Reason: "disk full"} }
	if code, body := unixDo(t, c, "POST", "/v1/instances/web/0/restart", ""); code != http.StatusServiceUnavailable {
		t.Errorf("restart over the socket while the audit log is degraded: HTTP %d %s; want 503", code, body)
	}
	f.srv.AuditHealth = nil

	// An untrusted peer needs a token, as on TCP.
	trusted = false
	if code, _ := unixDo(t, c, "GET", "/v1/status", ""); code != http.StatusUnauthorized {
		t.Errorf("status over the socket from an untrusted peer without a token: HTTP %d, want 401", code)
	}
	if code, body := unixDo(t, c, "POST", "/v1/instances/web/0/restart", f.op); code != 200 {
		t.Errorf("restart over the socket from an untrusted peer with the operator token: HTTP %d %s", code, body)
	}
	if code, _ := unixDo(t, c, "POST", "/v1/instances/web/0/restart", f.view); code != http.StatusForbidden {
		t.Errorf("restart over the socket from an untrusted peer with a viewer token: HTTP %d, want 403", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeUnix after Shutdown: %v", err)
	}
	ln.Close()
}
