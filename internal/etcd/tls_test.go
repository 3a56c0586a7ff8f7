package etcd_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

func mustTLS(t *testing.T, ca, cert, key, serverName string) *tls.Config {
	t.Helper()
	cfg, err := etcd.TLSConfig(ca, cert, key, serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func dialTLS(t *testing.T, endpoint string, cfg *tls.Config) *etcd.Client {
	t.Helper()
	c, err := etcd.Dial(etcd.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Against a real etcd with --client-cert-auth: the right CA and client
// certificate work for plain requests, leases and elections, over host:port
// and https:// endpoints alike; a wrong CA or a missing client certificate
// fails within the dial timeout with an error that says why.
func TestDialTLS(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	srv := etcdtest.StartTLS(t, pki)
	ctx := ctxT(t)

	t.Run("mutual TLS", func(t *testing.T) {
		for _, ep := range []string{srv.Endpoint, srv.URL} {
			c := dialTLS(t, ep, mustTLS(t, pki.CA, pki.ClientCert, pki.ClientKey, ""))
			if err := c.Put(ctx, "/tls/k", ep); err != nil {
				t.Fatalf("put through %s: %v", ep, err)
			}
			kv, ok, err := c.Get(ctx, "/tls/k")
			if err != nil || !ok || string(kv.Value) != ep {
				t.Fatalf("get through %s = %q, %v, %v", ep, kv.Value, ok, err)
			}
		}
		c := dialTLS(t, srv.Endpoint, mustTLS(t, pki.CA, pki.ClientCert, pki.ClientKey, "localhost"))
		s, err := c.NewSession(ctx, 2*time.Second, nil)
		if err != nil {
			t.Fatalf("session over TLS: %v", err)
		}
		defer s.Close(ctx)
		e := s.Election("/tls/election")
		if err := e.Campaign(ctx, "a"); err != nil {
			t.Fatalf("campaign over TLS: %v", err)
		}
		l, err := c.Leader(ctx, "/tls/election")
		if err != nil || string(l.Value) != "a" {
			t.Fatalf("leader over TLS = %+v, %v", l, err)
		}
	})

	refused := []struct {
		name string
		cfg  *tls.Config
		want []string // any of these in the error
	}{
		{"wrong CA", mustTLS(t, etcdtest.NewPKI(t).CA, pki.ClientCert, pki.ClientKey, ""),
			[]string{"certificate signed by unknown authority"}},
		{"no client certificate", mustTLS(t, pki.CA, "", "", ""),
			[]string{"certificate required", "bad certificate"}},
		{"wrong server name", mustTLS(t, pki.CA, pki.ClientCert, pki.ClientKey, "etcd.example"),
			[]string{"certificate is valid for", "not etcd.example"}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			const dialTimeout = time.Second
			start := time.Now()
			c, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.URL}, DialTimeout: dialTimeout, TLS: tc.cfg})
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial accepted a connection etcd or the client must refuse")
			}
			t.Logf("after %v: %v", took, err)
			if took > dialTimeout+500*time.Millisecond {
				t.Errorf("Dial failed after %v, want within the dial timeout %v", took, dialTimeout)
			}
			found := false
			for _, w := range tc.want {
				found = found || strings.Contains(err.Error(), w)
			}
			if !found || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error %q names not the endpoint or none of %q", err, tc.want)
			}
		})
	}

	// A drill's Cut carries TLS connections as it does plaintext ones.
	t.Run("cut", func(t *testing.T) {
		cut := &etcd.Cut{}
		c, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.URL}, DialTimeout: time.Second,
			TLS: mustTLS(t, pki.CA, pki.ClientCert, pki.ClientKey, ""), Cut: cut})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Put(ctx, "/tls/cut", "1"); err != nil {
			t.Fatalf("put before the cut: %v", err)
		}
		cut.Cut()
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err = c.Put(rctx, "/tls/cut", "2")
		cancel()
		if err == nil {
			t.Fatal("put through a cut")
		}
		cut.Restore()
		if err := c.Put(ctx, "/tls/cut", "3"); err != nil {
			t.Fatalf("put after the cut was restored: %v", err)
		}
	})

	// The same client certificate through a relay that is cut: nothing
	// answers, which is no TLS error, and the client connects once the
	// relay is restored.
	t.Run("unreachable at dial", func(t *testing.T) {
		link := etcdtest.NewLink(t, srv.Endpoint)
		link.Cut()
		c := dialTLS(t, link.Addr, mustTLS(t, pki.CA, pki.ClientCert, pki.ClientKey, "127.0.0.1"))
		link.Restore()
		if err := c.Put(ctx, "/tls/relayed", "1"); err != nil {
			t.Fatalf("put after the relay was restored: %v", err)
		}
	})
}

// TLSConfig names the file at fault, and Dial refuses endpoints the etcd
// client would quietly talk to in plaintext.
func TestTLSConfigErrors(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	other := etcdtest.NewPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"missing CA", missing, "", "", "read CA bundle: open " + missing},
		{"CA not PEM", notPEM, "", "", "CA bundle " + notPEM + " holds no PEM certificate"},
		{"cert without key", pki.CA, pki.ClientCert, "", "needs both cert and key"},
		{"key without cert", pki.CA, "", pki.ClientKey, "needs both cert and key"},
		{"missing cert", pki.CA, missing, pki.ClientKey, "load client certificate " + missing},
		{"key of another cert", pki.CA, pki.ClientCert, other.ClientKey, "private key does not match public key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := etcd.TLSConfig(tc.ca, tc.cert, tc.key, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("TLSConfig = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if cfg, err := etcd.TLSConfig("", "", "", ""); err != nil || cfg == nil {
		t.Fatalf("TLSConfig with no files (system roots) = %v, %v", cfg, err)
	}

	ok := mustTLS(t, pki.CA, "", "", "")
	for _, tc := range []struct {
		endpoints []string
		tls       *tls.Config
		want      string
	}{
		{[]string{"http://127.0.0.1:2379"}, ok, "plaintext http:// but TLS is configured"},
		{[]string{"https://127.0.0.1:2379", "127.0.0.1:2380"}, nil, "mix https:// and plaintext"},
	} {
		_, err := etcd.Dial(etcd.Config{Endpoints: tc.endpoints, TLS: tc.tls})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dial(%v, tls %v) = %v, want an error containing %q", tc.endpoints, tc.tls != nil, err, tc.want)
		}
	}
	for _, eps := range [][]string{{"https://127.0.0.1:2379", "https://127.0.0.1:2380"}, {"127.0.0.1:2379", "http://127.0.0.1:2380"}} {
		c, err := etcd.Dial(etcd.Config{Endpoints: eps})
		if err != nil {
			t.Errorf("Dial(%v) = %v", eps, err)
			continue
		}
		c.Close()
	}
}
