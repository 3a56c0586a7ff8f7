package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// TestDBOverTLS: an agent reaches an etcd that requires TLS and a client
// certificate, with the certificate files named relative to its config
// file, and becomes the primary.
func TestDBOverTLS(t *testing.T) {
	pgtest.Require(t)
	pki := etcdtest.NewPKI(t)
	srv := etcdtest.StartTLS(t, pki)
	a := newDBNode(t, "a", srv.Endpoint, "async")
	certs := filepath.Join(a.dir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"ca.pem": pki.CA, "client.pem": pki.ClientCert, "client-key.pem": pki.ClientKey} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(a.dir, "medic.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "prefix: /medic/e2e}",
		"prefix: /medic/e2e, tls: {ca: certs/ca.pem, cert: certs/client.pem, key: certs/client-key.pem}}", 1)
	if cfg == string(raw) {
		t.Fatal("the etcd line of the node's config changed: update this test")
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a.start()
	a.eventually(60*time.Second, "a leads through etcd over TLS", leaderIs("a"))
}
