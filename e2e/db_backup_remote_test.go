package e2e_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// backupCerts writes a CA and one certificate per member, every one with the
// common name medic-backup (so that each server serves the others by
// default) and its member's address as IP and DNS name (pgBackRest 2.45
// checks the host against the DNS names only), for server and client use.
func backupCerts(t *testing.T, dir string, hosts map[string]string) (ca string, certs map[string][2]string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medic backup test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca = write("ca.pem", "CERTIFICATE", caDER)
	certs = map[string][2]string{}
	serial := int64(2)
	for member, host := range hosts {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "medic-backup"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.ParseIP(host)}, DNSNames: []string{host}}
		serial++
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certs[member] = [2]string{write(member+".pem", "CERTIFICATE", der), write(member+"-key.pem", "EC PRIVATE KEY", kder)}
	}
	return ca, certs
}

// TestDBBackupFromRemoteStandby: each member runs pgBackRest's TLS server
// (backup.tls) on its own loopback address, a on 127.0.0.2 and b on
// 127.0.0.3, with its own certificate, and its own data directory. The
// primary a's scheduled backups copy from the replica b through b's TLS
// server (pg2-host=127.0.0.3, pg2-host-type=tls): medic records from b,
// role replica; a's pgBackRest log shows the backup asked for pg2 on
// 127.0.0.3 over TLS and waited for the standby's replay; b's server
// counts the TLS sessions it served; and a restore of that backup holds
// the rows written before it. Every pgbackrest server is gone at the end.
func TestDBBackupFromRemoteStandby(t *testing.T) {
	requireBackup(t)
	for _, h := range []string{"127.0.0.2", "127.0.0.3"} {
		ln, err := net.Listen("tcp", h+":0")
		if err != nil {
			t.Skipf("cannot listen on %s (loopback addresses beyond 127.0.0.1): %v", h, err)
		}
		ln.Close()
	}
	srv := etcdtest.Start(t)
	repo := filepath.Join(t.TempDir(), "repo")
	os.Chmod(filepath.Dir(repo), 0o755)
	certDir := t.TempDir()
	hosts := map[string]string{"a": "127.0.0.2", "b": "127.0.0.3"}
	ca, certs := backupCerts(t, certDir, hosts)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	servers := map[string]string{}
	for _, n := range []*dbNode{a, b} {
		servers[n.name] = fmt.Sprintf("%s:%d", hosts[n.name], freePort(t, 1))
		appendFile(t, filepath.Join(n.dir, "medic.yaml"), fmt.Sprintf("    backup:\n      repository: %s\n      schedule: {diff: \"@every 10s\"}\n"+
			"      archive: {timeout: 2s}\n      tls: {cert: %s, key: %s, ca: %s, listen: %s}\n",
			repo, certs[n.name][0], certs[n.name][1], ca, servers[n.name]))
	}
	defer func() {
		// Every pgbackrest server of this test is gone once the agents stopped.
		a.stop()
		b.stop()
		for _, n := range []*dbNode{a, b} {
			if pid := backup.ServerPIDOf(filepath.Join(n.dir, "pg.backup")); pid > 0 {
				t.Errorf("%s's pgbackrest server %d still runs after its agent stopped", n.name, pid)
				n.killBackupServer()
			}
			if c, err := net.DialTimeout("tcp", servers[n.name], time.Second); err == nil {
				c.Close()
				t.Errorf("%s's pgbackrest server still answers on %s after its agent stopped", n.name, servers[n.name])
			}
		}
	}()
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	a.firstFullBackup(t, 90*time.Second)
	b.start()
	a.eventually(120*time.Second, "b streams from a", streams("b", "a", false))
	if st, err := b.backupState(); err != nil || st.TLSServer != servers["b"] {
		t.Fatalf("b's backup state: %+v %v: want its TLS server %s", st, err, servers["b"])
	}

	c := pgtest.Connect(t, a.pg)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "CREATE TABLE before_remote_backup AS SELECT g AS id FROM generate_series(1, 1000) g"); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	st := a.waitBackup(t, 150*time.Second, "a scheduled differential backup from b through its TLS server", func(st backup.State) bool {
		return st.Last != nil && st.Last.Type == backup.Diff && st.LastFrom == "b" && st.Last.Start.After(written)
	})
	if st.LastFromWhy != "" {
		t.Errorf("a backup from the replica says why not a replica: %q", st.LastFromWhy)
	}
	t.Logf("scheduled %s backup %s copied from replica b through %s: %d bytes in %v", st.Last.Type, st.Last.Label, servers["b"], st.Last.Size, st.Last.Duration())

	// a's pgBackRest reached pg2 over TLS at b's address, and the standby's replay.
	blog, err := os.ReadFile(filepath.Join(a.dir, "pg.backup", "log", "pg-backup.log"))
	if err != nil {
		t.Fatal(err)
	}
	_, bport, _ := net.SplitHostPort(servers["b"])
	var begin string
	for _, line := range strings.Split(string(blog), "\n") {
		if strings.Contains(line, "backup command begin") && strings.Contains(line, "--type=diff") {
			begin = line
		}
	}
	for _, want := range []string{"--backup-standby", "--pg2-host=127.0.0.3", "--pg2-host-type=tls", "--pg2-host-port=" + bport,
		"--pg2-path=" + filepath.Join(b.dir, "pg")} {
		if !strings.Contains(begin, want) {
			t.Errorf("a's last differential backup command lacks %s:\n%s", want, begin)
		}
	}
	if !strings.Contains(string(blog), "replay on the standby reached") {
		t.Errorf("a's pgBackRest log never waited for the standby's replay:\n%s", tail(string(blog), 2000))
	}

	// The backup restores.
	archivedSince(t, a.pg, written, 20*time.Second)
	latest := a.restoreInto(t, "latest")
	if got := strings1(t, latest.Addr, "SELECT count(*)::text FROM before_remote_backup"); len(got) != 1 || got[0] != "1000" {
		t.Fatalf("restore of the backup taken from b through its TLS server: %v rows, want 1000", got)
	}
	stopScratch(latest.Dir)

	// b's server, stopped with its agent, counts the TLS sessions it served.
	b.stop()
	slog, err := os.ReadFile(filepath.Join(b.dir, "pg.backup", "log", "all-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"tls\.server":\{"total":(\d+)\}`).FindAllStringSubmatch(string(slog), -1)
	if len(m) == 0 {
		t.Fatalf("b's pgbackrest server log has no TLS session count:\n%s", tail(string(slog), 2000))
	}
	if n, _ := strconv.Atoi(m[len(m)-1][1]); n < 1 {
		t.Fatalf("b's pgbackrest server served %d TLS sessions, want at least 1", n)
	} else {
		t.Logf("b's pgbackrest server on %s served %d TLS sessions", servers["b"], n)
	}
}
