package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

// Backup makes a database recoverable from a pgBackRest repository: medic
// configures WAL archiving (archive-push) on whichever member is the
// primary, runs the scheduled full and differential backups from the
// member that holds the lease, and applies retention. Restores are operator
// actions (medic db restore) and restore drills (db-restore); medic never
// restores on its own.
type Backup struct {
	// Directory of the pgBackRest repository (repo1-path), relative to the config file. It must be
	// shared by every member (a local path in a single-host cluster, a mount otherwise). Required.
	Repository string `yaml:"repository" json:"repository"`
	// pgBackRest stanza name. Default: the database's name.
	Stanza string `yaml:"stanza" json:"stanza,omitempty"`
	// When to take full and differential backups.
	Schedule BackupSchedule `yaml:"schedule" json:"schedule,omitempty"`
	// Full backups kept (repo1-retention-full); older ones and the WAL only they need are expired
	// after each backup. Default 2.
	Retention int `yaml:"retention" json:"retention,omitempty" jsonschema:"minimum=1"`
	// WAL archiving.
	Archive BackupArchive `yaml:"archive" json:"archive,omitempty"`
	// pgBackRest's TLS server on this member, and the certificate this member's agent presents to
	// the other members' servers: backups copy their files from a replica on another host through
	// it (pg2-host). Needed on every member for backups from replicas on other hosts. Default: none
	// (backups copy from a replica only on the primary's host).
	TLS *BackupTLS `yaml:"tls" json:"tls,omitempty"`
}

// BackupTLS is this member's pgBackRest TLS server (pgbackrest server, which
// its agent runs as the postgres user and restarts if it exits) and the
// client certificate its agent's backups present to the other members'
// servers. Every file is PEM, relative to the config file, read when the
// config is loaded; medic copies them into the backup state directory, owned
// by the postgres user, at start.
type BackupTLS struct {
	// Certificate of this member: the server's (it must name the address the other members reach
	// the server at, as a DNS name: pgBackRest 2.45 checks the host against the common name and
	// the DNS names only, not IP addresses) and the client's. Required.
	Cert string `yaml:"cert" json:"cert"`
	// Private key of cert. Required.
	Key string `yaml:"key" json:"key"`
	// CA bundle that verifies the other members' certificates, as servers and as clients. Required.
	CA string `yaml:"ca" json:"ca"`
	// Address the server listens on, host:port (tls-server-address and tls-server-port). Default:
	// the host of postgres.connect_address, port 8432 (pgBackRest's default).
	Listen string `yaml:"listen" json:"listen,omitempty"`
	// Address the other members reach the server at, published with the member. Default: listen,
	// with the host of postgres.connect_address when listen's host is 0.0.0.0 or ::.
	ConnectAddress string `yaml:"connect_address" json:"connect_address,omitempty"`
	// Common names of the client certificates the server serves (tls-server-auth, for the stanza
	// only; pgBackRest allows no wildcard). Default: the common name of cert, which suits members
	// whose certificates share one common name.
	Clients []string `yaml:"clients" json:"clients,omitempty"`
}

// DefaultBackupTLSPort is backup.tls.listen's port when unset (pgBackRest's tls-server-port default).
const DefaultBackupTLSPort = 8432

// Files returns the cert, key and ca paths made absolute against the
// directory of the config file at configPath.
func (t *BackupTLS) Files(configPath string) (cert, key, ca string) {
	base := ""
	if configPath != "" {
		if abs, err := filepath.Abs(filepath.Dir(configPath)); err == nil {
			base = abs
		}
	}
	return resolve(base, t.Cert), resolve(base, t.Key), resolve(base, t.CA)
}

// Validate checks the fields on their own.
func (t *BackupTLS) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for _, f := range [][2]string{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
		if f[1] == "" {
			bad(f[0], "required with backup.tls: the PEM file of this member's %s", map[string]string{"cert": "certificate",
				"key": "certificate's private key", "ca": "CA bundle that verifies the other members"}[f[0]])
		}
	}
	if t.Listen != "" {
		if msg := hostPort(t.Listen, true); msg != "" {
			bad("listen", "%s", msg)
		}
	}
	if t.ConnectAddress != "" {
		if msg := hostPort(t.ConnectAddress, true); msg != "" {
			bad("connect_address", "%s", msg)
		}
	}
	for i, c := range t.Clients {
		if strings.TrimSpace(c) == "" || strings.ContainsAny(c, "=,*") {
			bad(fmt.Sprintf("clients[%d]", i), "%q: want a certificate common name, without =, comma or * (pgBackRest allows no wildcard)", c)
		}
	}
	return is
}

// ValidateIn reads the files, so that a wrong path, a key that does not
// match its certificate or a certificate without a common name (and no
// clients) is reported at load, at the field that names the file.
func (t *BackupTLS) ValidateIn(c *Config) []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	cert, key, ca := t.Files(c.Path)
	if ca != "" {
		if b, err := os.ReadFile(ca); err != nil {
			bad("ca", "cannot read the CA bundle: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			bad("ca", "%s holds no PEM certificate", ca)
		}
	}
	if cert == "" || key == "" {
		return is
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		bad("cert", "cannot read the certificate: %v", err)
		return is
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		bad("key", "cannot read the private key: %v", err)
		return is
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		bad("key", "cannot use %s as the key of %s: %v", key, cert, err)
		return is
	}
	if len(t.Clients) == 0 {
		if x, err := x509.ParseCertificate(pair.Certificate[0]); err != nil || x.Subject.CommonName == "" {
			bad("clients", "required: %s has no common name to authorize the other members by; list their certificates' common names", cert)
		}
	}
	return is
}

// CommonName is the common name of the certificate at path ("" when it
// cannot be read).
func CommonName(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return ""
	}
	x, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return ""
	}
	return x.Subject.CommonName
}

// BackupSchedule says when backups are taken, as cron expressions in local time.
type BackupSchedule struct {
	// Full backups: "minute hour day-of-month month day-of-week", @daily, @every 24h … Default "0 1 * * 0" (Sundays 01:00).
	Full string `yaml:"full" json:"full,omitempty"`
	// Differential backups (changes since the last full). Default "0 1 * * 1-6" (other days 01:00); "off" for none.
	Diff string `yaml:"diff" json:"diff,omitempty"`
}

// BackupArchive is how WAL reaches the repository.
type BackupArchive struct {
	// archive_timeout: the primary switches to a new WAL segment at least this often when there were
	// writes, so that no acknowledged write waits longer than this to be archived: the recovery point
	// of a restore after losing every member. Default 60s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// The backup defaults.
const (
	DefaultBackupFull      = "0 1 * * 0"
	DefaultBackupDiff      = "0 1 * * 1-6"
	DefaultBackupRetention = 2
	DefaultArchiveTimeout  = 60 * time.Second
)

// SetDefaults fills the unset backup settings.
func (b *Backup) SetDefaults() {
	if b.Schedule.Full == "" {
		b.Schedule.Full = DefaultBackupFull
	}
	if b.Schedule.Diff == "" {
		b.Schedule.Diff = DefaultBackupDiff
	}
	if b.Retention == 0 {
		b.Retention = DefaultBackupRetention
	}
	if b.Archive.Timeout == 0 {
		b.Archive.Timeout = Duration(DefaultArchiveTimeout)
	}
}

// Validate checks the backup settings.
func (b *Backup) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if b.Repository == "" {
		bad("repository", "required: the directory of the pgBackRest repository, such as /var/lib/pgbackrest")
	}
	if _, err := cron.Parse(b.Schedule.Full); err != nil {
		bad("schedule.full", "%v", err)
	}
	if b.Schedule.Diff != "off" {
		if _, err := cron.Parse(b.Schedule.Diff); err != nil {
			bad("schedule.diff", "%v (or off)", err)
		}
	}
	if b.Retention < 1 {
		bad("retention", "must be at least 1 full backup")
	}
	if t := b.Archive.Timeout.D(); t < time.Second {
		bad("archive.timeout", "%v is below 1s: every write would switch WAL segments", t)
	}
	return is
}

// RepositoryPath is the repository made absolute against the directory of
// the config file at configPath.
func (b *Backup) RepositoryPath(configPath string) string {
	base := ""
	if configPath != "" {
		if abs, err := filepath.Abs(filepath.Dir(configPath)); err == nil {
			base = abs
		}
	}
	return resolve(base, b.Repository)
}
