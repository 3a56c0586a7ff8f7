// Package release keeps the versions of each service that medic ran: a
// release is a service's spec (command, environment, probes …) with a
// version label, who made it (the config at start or a reload, a deploy, a
// rollback), when, how its rollout went and what clients saw meanwhile. The
// history lives in the embedded store, so a rollback to an earlier version
// works after medic restarts.
package release

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Sources: what made a release.
const (
	SourceConfig   = "config"   // the config file, at start or on a reload
	SourceDeploy   = "deploy"   // medic deploy / POST /v1/services/S/deploy
	SourceRollback = "rollback" // medic rollback / POST /v1/services/S/rollback
)

// Outcomes of a release's rollout.
const (
	RollingOut = "rolling-out"
	Live       = "live"
	Failed     = "failed"
	Superseded = "superseded" // another release took over before this one finished
)

// DefaultHistory is how many releases per service are kept when the service
// does not say (services.X.release_history).
const DefaultHistory = 10

// ErrNotFound: no such release.
var ErrNotFound = errors.New("release: not found")

// Release is one version of a service's spec.
type Release struct {
	Seq     int64           `json:"seq"`
	Service string          `json:"service"`
	Version string          `json:"version"`
	Source  string          `json:"source"`
	Base    string          `json:"base"` // SpecHash of the config file's spec it was made from
	Spec    *config.Service `json:"spec"`
	Actor   string          `json:"actor"`
	Reason  string          `json:"reason"`
	Created time.Time       `json:"created"`
	Outcome string          `json:"outcome"`
	Ended   *time.Time      `json:"ended,omitempty"`
	// Seconds from the start of the rollout to its end.
	DurationSeconds *float64 `json:"duration_seconds,omitempty"`
	// Requests and ClientErrors are what the service's proxy counted while
	// the release rolled out; nil when the service has no proxy.
	Requests     *int64 `json:"requests,omitempty"`
	ClientErrors *int64 `json:"client_errors,omitempty"`
	Detail       string `json:"detail,omitempty"`
}

// Finished is the end of a rollout.
type Finished struct {
	Outcome      string
	Ended        time.Time
	Requests     *int64
	ClientErrors *int64
	Detail       string
}

// SpecHash identifies a spec: two specs with the same hash run the same way.
func SpecHash(s *config.Service) string {
	b, err := json.Marshal(s)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Store keeps releases in the embedded store's releases table (created by a
// migration in internal/sqlite). Its methods are safe for concurrent use.
type Store struct{ db *sql.DB }

// NewStore uses db (sqlite.DB.SQL()), which the caller keeps open.
func NewStore(db *sql.DB) *Store { return &Store{db: db} }

// Add stores r (its Seq is assigned) and keeps only the newest keep releases
// of the service (keep < 1: DefaultHistory). A release still rolling out
// before it is marked superseded.
func (s *Store) Add(ctx context.Context, r Release, keep int) (Release, error) {
	if keep < 1 {
		keep = DefaultHistory
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return r, fmt.Errorf("release store: encode %s %s: %w", r.Service, r.Version, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return r, fmt.Errorf("release store: add %s %s: %w", r.Service, r.Version, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	now := r.Created.UTC().UnixNano()
	if _, err := tx.ExecContext(ctx, `UPDATE releases SET outcome = ?, ended_ns = ?, detail = 'another release took over' WHERE service = ? AND outcome = ?`,
		Superseded, now, r.Service, RollingOut); err != nil {
		return r, fmt.Errorf("release store: supersede %s: %w", r.Service, err)
	}
	if r.Outcome == "" {
		r.Outcome = RollingOut
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO releases (service, version, source, base, spec, actor, reason, created_ns, outcome)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.Service, r.Version, r.Source, r.Base, string(spec), r.Actor, r.Reason, now, r.Outcome)
	if err != nil {
		return r, fmt.Errorf("release store: add %s %s: %w", r.Service, r.Version, err)
	}
	if r.Seq, err = res.LastInsertId(); err != nil {
		return r, fmt.Errorf("release store: add %s %s: %w", r.Service, r.Version, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM releases WHERE service = ? AND seq NOT IN
		(SELECT seq FROM releases WHERE service = ? ORDER BY seq DESC LIMIT ?)`, r.Service, r.Service, keep); err != nil {
		return r, fmt.Errorf("release store: trim %s to %d: %w", r.Service, keep, err)
	}
	if err := tx.Commit(); err != nil {
		return r, fmt.Errorf("release store: add %s %s: %w", r.Service, r.Version, err)
	}
	return r, nil
}

// Finish records the end of release seq's rollout. A release already ended
// (superseded) keeps its outcome.
func (s *Store) Finish(ctx context.Context, seq int64, f Finished) error {
	_, err := s.db.ExecContext(ctx, `UPDATE releases SET outcome = ?, ended_ns = ?, duration_s = (? - created_ns) / 1e9,
		requests = ?, client_errors = ?, detail = ? WHERE seq = ? AND outcome = ?`,
		f.Outcome, f.Ended.UTC().UnixNano(), f.Ended.UTC().UnixNano(), f.Requests, f.ClientErrors, f.Detail, seq, RollingOut)
	if err != nil {
		return fmt.Errorf("release store: finish release %d: %w", seq, err)
	}
	return nil
}

const columns = `seq, service, version, source, base, spec, actor, reason, created_ns, outcome, ended_ns, duration_s, requests, client_errors, detail`

// List returns the service's releases, newest first (service "": every
// service's).
func (s *Store) List(ctx context.Context, service string) ([]Release, error) {
	q := `SELECT ` + columns + ` FROM releases WHERE service = ? OR ? = '' ORDER BY seq DESC`
	rows, err := s.db.QueryContext(ctx, q, service, service)
	if err != nil {
		return nil, fmt.Errorf("release store: list %s: %w", service, err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("release store: list %s: %w", service, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("release store: list %s: %w", service, err)
	}
	return out, nil
}

// Get returns release seq, or ErrNotFound.
func (s *Store) Get(ctx context.Context, seq int64) (Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM releases WHERE seq = ?`, seq)
	if err != nil {
		return Release{}, fmt.Errorf("release store: get %d: %w", seq, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Release{}, fmt.Errorf("release store: get %d: %w", seq, err)
		}
		return Release{}, fmt.Errorf("release %d: %w", seq, ErrNotFound)
	}
	r, err := scan(rows)
	if err != nil {
		return Release{}, fmt.Errorf("release store: get %d: %w", seq, err)
	}
	return r, nil
}

func scan(rows *sql.Rows) (Release, error) {
	var (
		r                 Release
		spec              string
		created           int64
		ended             sql.NullInt64
		dur               sql.NullFloat64
		requests, errsCol sql.NullInt64
	)
	if err := rows.Scan(&r.Seq, &r.Service, &r.Version, &r.Source, &r.Base, &spec, &r.Actor, &r.Reason, &created, &r.Outcome,
		&ended, &dur, &requests, &errsCol, &r.Detail); err != nil {
		return r, err
	}
	r.Spec = new(config.Service)
	if err := json.Unmarshal([]byte(spec), r.Spec); err != nil {
		return r, fmt.Errorf("decode the spec of release %d: %w", r.Seq, err)
	}
	r.Created = time.Unix(0, created).UTC()
	if ended.Valid {
		t := time.Unix(0, ended.Int64).UTC()
		r.Ended = &t
	}
	if dur.Valid {
		r.DurationSeconds = &dur.Float64
	}
	if requests.Valid {
		r.Requests = &requests.Int64
	}
	if errsCol.Valid {
		r.ClientErrors = &errsCol.Int64
	}
	return r, nil
}
