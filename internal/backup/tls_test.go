package backup_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
	"github.com/medic-dev/medic/internal/ports"
)

// TestStandbyArgs: the options of a backup from a replica on this host
// name its socket; from a replica reached through its TLS server they add
// pg2-host with type tls, its port and this member's certificate files
// (medic's copies in the state directory), and without backup.tls here such
// a replica is refused rather than read through a path that is not local.
func TestStandbyArgs(t *testing.T) {
	bc := &config.Backup{Repository: "/repo"}
	bc.SetDefaults()
	mk := func(tl *backup.TLS) *backup.Manager {
		m, err := backup.New(backup.Options{Cluster: "pg", Config: bc, Repository: "/repo", Data: "/srv/a/pg", Port: 5432,
			StateDir: "/srv/a/pg.backup", Superuser: "postgres", Command: func(bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }, TLS: tl})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	local := backup.Standby{Member: "b", Path: "/srv/b/pg", Port: 5433, Socket: "/srv/b/pg.backup/sock"}
	want := []string{"--backup-standby", "--pg2-path=/srv/b/pg", "--pg2-port=5433", "--pg2-socket-path=/srv/b/pg.backup/sock", "--pg2-user=postgres"}
	got, err := mk(nil).StandbyArgs(local)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("local standby: %q %v\nwant %q", got, err, want)
	}
	remote := local
	remote.Host, remote.HostPort = "10.0.0.2", 8432
	if _, err := mk(nil).StandbyArgs(remote); err == nil || !strings.Contains(err.Error(), "has no backup.tls") {
		t.Fatalf("remote standby without TLS here: err %v", err)
	}
	got, err = mk(&backup.TLS{Cert: "/etc/c.pem", Key: "/etc/k.pem", CA: "/etc/ca.pem", Listen: "10.0.0.1:8432", Clients: []string{"medic"}}).StandbyArgs(remote)
	want = append(want, "--pg2-host=10.0.0.2", "--pg2-host-type=tls", "--pg2-host-port=8432",
		"--pg2-host-cert-file=/srv/a/pg.backup/tls/cert.pem", "--pg2-host-key-file=/srv/a/pg.backup/tls/key.pem",
		"--pg2-host-ca-file=/srv/a/pg.backup/tls/ca.pem")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("remote standby: %q %v\nwant %q", got, err, want)
	}
}

// TestTLSServerServed: Prepare copies the TLS files into the state
// directory owned by postgres and writes the server's configuration (one
// tls-server-auth line per client, for the stanza); ServeTLS runs the real
// pgbackrest server, which completes a TLS handshake with a client
// certificate of the CA and presents this member's certificate, and stops
// it (its port closes) when the context ends.
func TestTLSServerServed(t *testing.T) {
	requirePgBackRest(t)
	pki := etcdtest.NewPKI(t)
	dir := reachableDir(t)
	port, err := ports.Free(1)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := pgha.NewPostgres(pgha.PostgresOptions{Member: "a", BinDir: pgtest.BinDir, Data: filepath.Join(dir, "pg"), Listen: "127.0.0.1:1",
		Superuser: "postgres", LogPath: filepath.Join(dir, "pg.log"), StatePath: filepath.Join(dir, "role.json")})
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := probe.Owner()
	bc := &config.Backup{Repository: filepath.Join(dir, "repo")}
	bc.SetDefaults()
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	m, err := backup.New(backup.Options{Cluster: "pg", Config: bc, Repository: bc.Repository, Data: filepath.Join(dir, "pg"), Port: 1,
		StateDir: filepath.Join(dir, "state"), Command: probe.Command, UID: uid, GID: gid,
		TLS: &backup.TLS{Cert: pki.ServerCert, Key: pki.ServerKey, CA: pki.CA, Listen: listen, Clients: []string{"client", "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Prepare(); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(m.ServerConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"tls-server-address=127.0.0.1", fmt.Sprintf("tls-server-port=%d", port), "tls-server-auth=client=pg", "tls-server-auth=other=pg",
		"tls-server-key-file=" + filepath.Join(dir, "state", "tls", "key.pem")} {
		if !strings.Contains(string(conf), line+"\n") {
			t.Errorf("%s lacks %q:\n%s", m.ServerConfigPath(), line, conf)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "state", "tls", "key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the key's copy: %v %v, want mode 0600", fi, err)
	}

	// A server a previous medic left running (killed with SIGKILL, its
	// server in its own process group): ServeTLS stops it first.
	left := probe.Command(backup.Binary, "--config="+m.ServerConfigPath(), "server")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	leftDone := make(chan struct{})
	go func() { left.Wait(); close(leftDone) }()
	defer func() {
		select {
		case <-leftDone:
		default:
			left.Process.Kill()
			<-leftDone
		}
	}()
	if err := os.WriteFile(m.ServerConfigPath()+".pid", []byte(fmt.Sprintln(left.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := m.ServerPID(); got != left.Process.Pid {
		t.Fatalf("ServerPID = %d, want the leftover %d", got, left.Process.Pid)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var ups []bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.ServeTLS(ctx, func(up bool) { mu.Lock(); ups = append(ups, up); mu.Unlock() }, nil)
	}()
	defer func() { cancel(); <-done }()

	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, pki.CA))
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := tls.Dial("tcp", listen, cfg)
		if err == nil {
			err = c.Handshake()
			st := c.ConnectionState()
			c.Close()
			if err == nil && len(st.PeerCertificates) > 0 && st.PeerCertificates[0].Subject.CommonName == "server" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake with pgbackrest server on %s within 30s: %v", listen, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-leftDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("the leftover server %d still runs after ServeTLS started", left.Process.Pid)
	}
	if pid := m.ServerPID(); pid <= 0 || pid == left.Process.Pid {
		t.Fatalf("ServerPID = %d while ServeTLS runs (leftover %d)", pid, left.Process.Pid)
	}
	cancel()
	<-done
	if pid := m.ServerPID(); pid != 0 {
		t.Fatalf("ServerPID = %d after ServeTLS returned", pid)
	}
	if c, err := tls.Dial("tcp", listen, cfg); err == nil {
		c.Close()
		t.Fatalf("the server still answers on %s after ServeTLS returned", listen)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(ups, []bool{true, false}) {
		t.Fatalf("up reports %v, want [true false]", ups)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
