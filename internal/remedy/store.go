package remedy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/sqlite"
)

// Store persists what the engine learns and must outlive a restart: runbook
// records (trust level, counts, recovery times), approvals, incidents and
// the pause and dry-run switches. Methods are called from the engine's
// goroutines one at a time per object.
type Store interface {
	LoadRecords(ctx context.Context) ([]Record, error)
	SaveRecord(ctx context.Context, r Record) error
	// LoadApprovals returns the approvals still pending.
	LoadApprovals(ctx context.Context) ([]Approval, error)
	SaveApproval(ctx context.Context, a Approval) error
	// LoadIncidents returns the open incidents and the limit most recent closed ones.
	LoadIncidents(ctx context.Context, limit int) ([]Incident, error)
	SaveIncident(ctx context.Context, in Incident) error
	LoadSettings(ctx context.Context) (map[string]string, error)
	SaveSetting(ctx context.Context, key, value string) error
}

// SQLStore is the Store in medic's SQLite database (tables remedy_*,
// created by migration 2 in internal/sqlite).
type SQLStore struct{ db *sqlite.DB }

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns a Store over db. It does not own db.
func NewSQLStore(db *sqlite.DB) *SQLStore { return &SQLStore{db: db} }

// LoadRecords reads every runbook record.
func (s *SQLStore) LoadRecords(ctx context.Context) ([]Record, error) {
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT name, level, configured, consecutive, runs, successes, failures, last_run_ns, ttrs FROM remedy_runbooks`)
	if err != nil {
		return nil, fmt.Errorf("remedy: load runbook records: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var level, configured, ttrs string
		var last int64
		if err := rows.Scan(&r.Runbook, &level, &configured, &r.Consecutive, &r.Runs, &r.Successes, &r.Failures, &last, &ttrs); err != nil {
			return nil, fmt.Errorf("remedy: load runbook records: %w", err)
		}
		r.Level, _ = ParseLevel(level)
		r.Configured, _ = ParseLevel(configured)
		if last != 0 {
			r.LastRun = time.Unix(0, last).UTC()
		}
		var ns []int64
		if err := json.Unmarshal([]byte(ttrs), &ns); err != nil {
			return nil, fmt.Errorf("remedy: load record %s: recovery times: %w", r.Runbook, err)
		}
		for _, n := range ns {
			r.TTRs = append(r.TTRs, time.Duration(n))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("remedy: load runbook records: %w", err)
	}
	return out, nil
}

// SaveRecord inserts or replaces r.
func (s *SQLStore) SaveRecord(ctx context.Context, r Record) error {
	ns := make([]int64, len(r.TTRs))
	for i, d := range r.TTRs {
		ns[i] = int64(d)
	}
	ttrs, _ := json.Marshal(ns)
	var last int64
	if !r.LastRun.IsZero() {
		last = r.LastRun.UnixNano()
	}
	_, err := s.db.SQL().ExecContext(ctx, `INSERT INTO remedy_runbooks (name, level, configured, consecutive, runs, successes, failures, last_run_ns, ttrs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET level = excluded.level, configured = excluded.configured, consecutive = excluded.consecutive,
	runs = excluded.runs, successes = excluded.successes, failures = excluded.failures, last_run_ns = excluded.last_run_ns, ttrs = excluded.ttrs`,
		r.Runbook, r.Level.String(), r.Configured.String(), r.Consecutive, r.Runs, r.Successes, r.Failures, last, string(ttrs))
	if err != nil {
		return fmt.Errorf("remedy: save record %s: %w", r.Runbook, err)
	}
	return nil
}

// LoadApprovals returns the pending approvals, oldest first.
func (s *SQLStore) LoadApprovals(ctx context.Context) ([]Approval, error) {
	docs, err := s.docs(ctx, `SELECT doc FROM remedy_approvals WHERE state = 'pending' ORDER BY created_ns`)
	if err != nil {
		return nil, fmt.Errorf("remedy: load approvals: %w", err)
	}
	out := make([]Approval, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal(d, &out[i]); err != nil {
			return nil, fmt.Errorf("remedy: load approvals: %w", err)
		}
	}
	return out, nil
}

// SaveApproval inserts or replaces a.
func (s *SQLStore) SaveApproval(ctx context.Context, a Approval) error {
	doc, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("remedy: save approval %s: %w", a.ID, err)
	}
	_, err = s.db.SQL().ExecContext(ctx, `INSERT INTO remedy_approvals (id, state, created_ns, doc) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc`, a.ID, a.State, a.Created.UnixNano(), string(doc))
	if err != nil {
		return fmt.Errorf("remedy: save approval %s: %w", a.ID, err)
	}
	return nil
}

// LoadIncidents returns the open incidents and the limit most recent closed
// ones, oldest first.
func (s *SQLStore) LoadIncidents(ctx context.Context, limit int) ([]Incident, error) {
	docs, err := s.docs(ctx, `SELECT doc FROM (
	SELECT doc, opened_ns FROM remedy_incidents WHERE state = 'open'
	UNION ALL
	SELECT doc, opened_ns FROM (SELECT doc, opened_ns FROM remedy_incidents WHERE state != 'open' ORDER BY opened_ns DESC LIMIT ?)
) ORDER BY opened_ns`, limit)
	if err != nil {
		return nil, fmt.Errorf("remedy: load incidents: %w", err)
	}
	out := make([]Incident, len(docs))
	for i, d := range docs {
		if err := json.Unmarshal(d, &out[i]); err != nil {
			return nil, fmt.Errorf("remedy: load incidents: %w", err)
		}
	}
	return out, nil
}

// SaveIncident inserts or replaces in.
func (s *SQLStore) SaveIncident(ctx context.Context, in Incident) error {
	doc, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("remedy: save incident %s: %w", in.ID, err)
	}
	_, err = s.db.SQL().ExecContext(ctx, `INSERT INTO remedy_incidents (id, target, state, opened_ns, doc) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, doc = excluded.doc`, in.ID, in.Target, in.State, in.Opened.UnixNano(), string(doc))
	if err != nil {
		return fmt.Errorf("remedy: save incident %s: %w", in.ID, err)
	}
	return nil
}

// LoadSettings returns the persisted switches.
func (s *SQLStore) LoadSettings(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.SQL().QueryContext(ctx, `SELECT key, value FROM remedy_settings`)
	if err != nil {
		return nil, fmt.Errorf("remedy: load settings: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("remedy: load settings: %w", err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("remedy: load settings: %w", err)
	}
	return out, nil
}

// SaveSetting sets key to value.
func (s *SQLStore) SaveSetting(ctx context.Context, key, value string) error {
	_, err := s.db.SQL().ExecContext(ctx, `INSERT INTO remedy_settings (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("remedy: save setting %s: %w", key, err)
	}
	return nil
}

func (s *SQLStore) docs(ctx context.Context, query string, args ...any) ([][]byte, error) {
	rows, err := s.db.SQL().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var d []byte
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// memStore is the Store used when none is given: nothing survives a restart.
type memStore struct{}

func (memStore) LoadRecords(context.Context) ([]Record, error)           { return nil, nil }
func (memStore) SaveRecord(context.Context, Record) error                { return nil }
func (memStore) LoadApprovals(context.Context) ([]Approval, error)       { return nil, nil }
func (memStore) SaveApproval(context.Context, Approval) error            { return nil }
func (memStore) LoadIncidents(context.Context, int) ([]Incident, error)  { return nil, nil }
func (memStore) SaveIncident(context.Context, Incident) error            { return nil }
func (memStore) LoadSettings(context.Context) (map[string]string, error) { return nil, nil }
func (memStore) SaveSetting(context.Context, string, string) error       { return nil }
