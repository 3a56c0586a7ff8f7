package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// backup.tls: files relative to the config file, and every mistake named
// at its field.
func TestBackupTLSConfig(t *testing.T) {
	pki, other := etcdtest.NewPKI(t), etcdtest.NewPKI(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{pki.CA: "ca.pem", pki.ServerCert: "b.pem", pki.ServerKey: "b-key.pem"} {
		if err := os.WriteFile(filepath.Join(certs, to), mustReadFile(t, from), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "medic.yaml")
	src := dbConfig + "    backup:\n      repository: /var/lib/pgbackrest\n      tls: {cert: certs/b.pem, key: certs/b-key.pem, ca: certs/ca.pem, listen: 0.0.0.0:8432}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := c.Databases["pg"].Backup.TLS
	cert, key, ca := tl.Files(c.Path)
	if cert != filepath.Join(certs, "b.pem") || key != filepath.Join(certs, "b-key.pem") || ca != filepath.Join(certs, "ca.pem") {
		t.Fatalf("Files = %s %s %s: want them in %s", cert, key, ca, certs)
	}
	if cn := config.CommonName(cert); cn != "server" {
		t.Fatalf("CommonName(%s) = %q, want server", cert, cn)
	}

	dir2 := t.TempDir()
	missing, notPEM := filepath.Join(dir2, "missing.pem"), filepath.Join(dir2, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	with := func(kv string) string {
		return dbConfig + "    backup: {repository: /var/lib/pgbackrest, tls: {" + kv + "}}\n"
	}
	good := "cert: " + pki.ServerCert + ", key: " + pki.ServerKey + ", ca: " + pki.CA
	for _, tc := range []struct{ name, src, want string }{
		{"no cert", with("key: " + pki.ServerKey + ", ca: " + pki.CA), "databases.pg.backup.tls.cert: required with backup.tls"},
		{"no key", with("cert: " + pki.ServerCert + ", ca: " + pki.CA), "databases.pg.backup.tls.key: required with backup.tls"},
		{"no ca", with("cert: " + pki.ServerCert + ", key: " + pki.ServerKey), "databases.pg.backup.tls.ca: required with backup.tls"},
		{"missing ca", with("cert: " + pki.ServerCert + ", key: " + pki.ServerKey + ", ca: " + missing),
			"databases.pg.backup.tls.ca: cannot read the CA bundle: open " + missing},
		{"ca not PEM", with("cert: " + pki.ServerCert + ", key: " + pki.ServerKey + ", ca: " + notPEM),
			"databases.pg.backup.tls.ca: " + notPEM + " holds no PEM certificate"},
		{"missing cert", with("cert: " + missing + ", key: " + pki.ServerKey + ", ca: " + pki.CA),
			"databases.pg.backup.tls.cert: cannot read the certificate: open " + missing},
		{"key of another certificate", with("cert: " + pki.ServerCert + ", key: " + other.ServerKey + ", ca: " + pki.CA),
			"databases.pg.backup.tls.key: cannot use " + other.ServerKey + " as the key of " + pki.ServerCert},
		{"bad listen", with(good + ", listen: nowhere"), `databases.pg.backup.tls.listen: want host:port`},
		{"bad connect address", with(good + ", connect_address: 10.0.0.1:99999"), `databases.pg.backup.tls.connect_address: port "99999"`},
		{"wildcard client", with(good + ", clients: [\"*\"]"), `databases.pg.backup.tls.clients[0]: "*": want a certificate common name`},
		{"unknown field", with(good + ", insecure: true"), `databases.pg.backup.tls.insecure: unknown field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("medic.yaml", []byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := config.Parse("medic.yaml", []byte(with(good))); err != nil {
		t.Fatalf("a good backup.tls: %v", err)
	}
}
