package drill

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Store keeps finished drills. Save replaces a drill with the same id.
type Store interface {
	Save(ctx context.Context, r Result) error
	// Get returns ErrNotFound for an unknown id.
	Get(ctx context.Context, id int64) (Result, error)
	// List returns the newest limit drills, newest first (limit 0: all).
	List(ctx context.Context, limit int) ([]Brief, error)
	// Modes returns, per failure mode, the last drill and the last passed one.
	Modes(ctx context.Context) ([]ModeRecord, error)
	// MaxID returns the largest id stored (0 when empty).
	MaxID(ctx context.Context) (int64, error)
}

// SQLStore keeps drills in the embedded store's drills table (created by a
// migration in internal/sqlite). Its methods are safe for concurrent use.
type SQLStore struct{ db *sql.DB }

var _ Store = (*SQLStore)(nil)

// NewSQLStore uses db (sqlite.DB.SQL()), which the caller keeps open.
func NewSQLStore(db *sql.DB) *SQLStore { return &SQLStore{db: db} }

// Save stores r.
func (s *SQLStore) Save(ctx context.Context, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("drill store: encode drill %d: %w", r.ID, err)
	}
	br := r.Brief()
	_, err = s.db.ExecContext(ctx, `INSERT OR REPLACE INTO drills
		(id, scenario, failure_mode, service, target, state, passed, started_ns, ended_ns, ttd_seconds, ttr_seconds, client_errors, requests, summary, result)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Scenario, r.FailureMode, r.Service, br.Target, r.State, r.Passed, r.Marks.Start.UnixNano(), r.Marks.End.UnixNano(),
		r.TTD, r.TTR, r.ClientErrors, r.Requests, r.Summary, string(b))
	if err != nil {
		return fmt.Errorf("drill store: save drill %d: %w", r.ID, err)
	}
	return nil
}

// Get returns drill id.
func (s *SQLStore) Get(ctx context.Context, id int64) (Result, error) {
	var b string
	err := s.db.QueryRowContext(ctx, "SELECT result FROM drills WHERE id = ?", id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return Result{}, fmt.Errorf("drill %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("drill store: read drill %d: %w", id, err)
	}
	var r Result
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		return Result{}, fmt.Errorf("drill store: decode drill %d: %w", id, err)
	}
	return r, nil
}

const briefColumns = "id, scenario, failure_mode, service, target, state, passed, started_ns, ttd_seconds, ttr_seconds, client_errors, requests, summary"

func scanBrief(sc interface{ Scan(...any) error }) (Brief, error) {
	var b Brief
	var ns int64
	var ttd, ttr sql.NullFloat64
	if err := sc.Scan(&b.ID, &b.Scenario, &b.FailureMode, &b.Service, &b.Target, &b.State, &b.Passed, &ns, &ttd, &ttr,
		&b.ClientErrors, &b.Requests, &b.Summary); err != nil {
		return b, err
	}
	b.Started = time.Unix(0, ns).UTC()
	if ttd.Valid {
		b.TTD = &ttd.Float64
	}
	if ttr.Valid {
		b.TTR = &ttr.Float64
	}
	return b, nil
}

// List returns the newest drills first.
func (s *SQLStore) List(ctx context.Context, limit int) ([]Brief, error) {
	q := "SELECT " + briefColumns + " FROM drills ORDER BY id DESC"
	var args []any
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("drill store: list: %w", err)
	}
	defer rows.Close()
	out := []Brief{}
	for rows.Next() {
		b, err := scanBrief(rows)
		if err != nil {
			return nil, fmt.Errorf("drill store: list: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// Modes returns the last drill of each failure mode, with the last passed one's TTR.
func (s *SQLStore) Modes(ctx context.Context) ([]ModeRecord, error) {
	list, err := s.List(ctx, 0)
	if err != nil {
		return nil, err
	}
	return modes(list), nil
}

// MaxID returns the largest stored id.
func (s *SQLStore) MaxID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT MAX(id) FROM drills").Scan(&id); err != nil {
		return 0, fmt.Errorf("drill store: max id: %w", err)
	}
	return id.Int64, nil
}

// modes folds a newest-first listing into one record per failure mode.
func modes(newestFirst []Brief) []ModeRecord {
	by := map[string]*ModeRecord{}
	for _, b := range newestFirst {
		if b.State == StateRunning {
			continue
		}
		m := by[b.FailureMode]
		if m == nil {
			m = &ModeRecord{FailureMode: b.FailureMode, Scenario: b.Scenario, Service: b.Service, LastDrilled: b.Started, Passed: b.Passed, ID: b.ID}
			by[b.FailureMode] = m
		}
		if b.Passed && m.LastPassed.IsZero() {
			m.LastPassed, m.LastTTR = b.Started, b.TTR
		}
	}
	out := make([]ModeRecord, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FailureMode < out[j].FailureMode })
	return out
}

// MemStore keeps drills in memory (an agent without a store, tests).
type MemStore struct {
	mu sync.Mutex
	m  map[int64]Result
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{m: map[int64]Result{}} }

// Save stores r.
func (s *MemStore) Save(_ context.Context, r Result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = r
	return nil
}

// Get returns drill id.
func (s *MemStore) Get(_ context.Context, id int64) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[id]
	if !ok {
		return Result{}, fmt.Errorf("drill %d: %w", id, ErrNotFound)
	}
	return r, nil
}

// List returns the newest drills first.
func (s *MemStore) List(_ context.Context, limit int) ([]Brief, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Brief{}
	for _, r := range s.m {
		out = append(out, r.Brief())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Modes returns one record per failure mode.
func (s *MemStore) Modes(ctx context.Context) ([]ModeRecord, error) {
	list, _ := s.List(ctx, 0)
	return modes(list), nil
}

// MaxID returns the largest stored id.
func (s *MemStore) MaxID(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for id := range s.m {
		n = max(n, id)
	}
	return n, nil
}
