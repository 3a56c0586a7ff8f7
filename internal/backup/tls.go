package backup

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TLS is this member's side of pgBackRest's TLS protocol (pgBackRest ≥
// 2.37): the server (pgbackrest server, run as the postgres user) through
// which the primary's backups copy a replica's files when the replica is on
// another host, and the client certificate this member's own backups present
// to the other members' servers (pg2-host-type=tls). The same certificate
// serves both.
type TLS struct {
	Cert, Key, CA string // PEM files, absolute; copied into the state directory, owned by postgres
	// Listen is the server's host:port (tls-server-address, tls-server-port).
	Listen string
	// Clients are the certificate common names the server serves, for this
	// stanza only (tls-server-auth; pgBackRest allows no wildcard).
	Clients []string
}

// tlsDir holds medic's copies of the TLS files, readable by postgres only.
func (m *Manager) tlsDir() string { return filepath.Join(m.o.StateDir, "tls") }

// tlsFiles are the copies of cert, key and CA that pgBackRest reads.
func (m *Manager) tlsFiles() (cert, key, ca string) {
	d := m.tlsDir()
	return filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem"), filepath.Join(d, "ca.pem")
}

// ServerConfigPath is the configuration of this member's TLS server.
func (m *Manager) ServerConfigPath() string {
	return filepath.Join(m.o.StateDir, "pgbackrest-server.conf")
}

// TLSListen is the address of this member's TLS server ("" without TLS).
func (m *Manager) TLSListen() string {
	if m.o.TLS == nil {
		return ""
	}
	return m.o.TLS.Listen
}

// prepareTLS copies the TLS files where postgres can read them (the
// operator's key is usually root's alone) and writes the server's
// configuration. Without TLS it does nothing.
func (m *Manager) prepareTLS() error {
	t := m.o.TLS
	if t == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(t.Listen)
	if err != nil {
		return fmt.Errorf("backup: tls listen %q: %w", t.Listen, err)
	}
	if len(t.Clients) == 0 {
		return errors.New("backup: tls: no client common name to serve")
	}
	if err := os.MkdirAll(m.tlsDir(), 0o700); err != nil {
		return fmt.Errorf("backup: create %s: %w", m.tlsDir(), err)
	}
	if err := os.Chown(m.tlsDir(), m.o.UID, m.o.GID); err != nil {
		return fmt.Errorf("backup: chown %s: %w", m.tlsDir(), err)
	}
	cert, key, ca := m.tlsFiles()
	for _, f := range [][2]string{{t.Cert, cert}, {t.Key, key}, {t.CA, ca}} {
		if err := copyOwned(f[0], f[1], m.o.UID, m.o.GID); err != nil {
			return err
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by medic on every start; edits are lost.\n[global]\n")
	for _, kv := range [][2]string{
		{"log-path", filepath.Join(m.o.StateDir, "log")},
		{"lock-path", filepath.Join(m.o.StateDir, "lock")},
		{"log-level-console", "warn"},
		{"log-level-file", "detail"}, // the sessions it served, when it stops
		{"tls-server-address", host},
		{"tls-server-port", port},
		{"tls-server-cert-file", cert},
		{"tls-server-key-file", key},
		{"tls-server-ca-file", ca},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	for _, c := range t.Clients {
		fmt.Fprintf(&b, "tls-server-auth=%s=%s\n", c, m.stanza)
	}
	return writeOwned(m.ServerConfigPath(), []byte(b.String()), m.o.UID, m.o.GID)
}

func copyOwned(from, to string, uid, gid int) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("backup: tls: read %w", err)
	}
	return writeOwned(to, b, uid, gid)
}

// writeOwned writes path (mode 0600, owned by uid:gid) through a rename.
func writeOwned(path string, b []byte, uid, gid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return fmt.Errorf("backup: chown %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("backup: write %s: %w", path, err)
	}
	return nil
}

// StandbyArgs are pgBackRest's options for a backup that copies from sb
// (--backup-standby, sb as pg2): a replica on this host through its socket
// directory; a replica reached through its TLS server (sb.Host set) with
// pg2-host-type=tls and this member's certificate, pg2's path and socket
// then being the replica's own, which its server's remote opens.
func (m *Manager) StandbyArgs(sb Standby) ([]string, error) {
	args := []string{"--backup-standby", "--pg2-path=" + sb.Path, "--pg2-port=" + strconv.Itoa(sb.Port),
		"--pg2-socket-path=" + sb.Socket, "--pg2-user=" + m.o.Superuser}
	if sb.Host == "" {
		return args, nil
	}
	if m.o.TLS == nil {
		return nil, fmt.Errorf("backup: replica %s is reached through its pgBackRest TLS server, and this member has no backup.tls", sb.Member)
	}
	cert, key, ca := m.tlsFiles()
	return append(args, "--pg2-host="+sb.Host, "--pg2-host-type=tls", "--pg2-host-port="+strconv.Itoa(sb.HostPort),
		"--pg2-host-cert-file="+cert, "--pg2-host-key-file="+key, "--pg2-host-ca-file="+ca), nil
}
