package pgha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/drill/load"
)

// writesTable holds the rows database drills write: one per acknowledged
// transaction, keyed by the drill and a sequence number.
const writesTable = "medic_drill_writes"

// WriteLoad is the write load of a database drill: single-row transactions
// at a fixed rate (open loop, so a stall shows as many late writes, not one)
// through the members' primary listeners, every acknowledgment kept so that
// the drill can read them back from the new primary afterwards.
//
// It notes two moments with Note: db.writes.failing, the first failed write
// after a success, and db.writes.resumed, the first acknowledgment after
// failures or from another server than before (a switchover can lose no
// write at all), with the outage since the last acknowledgment.
type WriteLoad struct {
	// Addrs are host:port of the listeners to try in order (each member's
	// primary listener; its postgres when it has none).
	Addrs []string
	// User and Database to connect as. Default postgres, postgres.
	User, Database string
	// Drill keys the rows; Rate is the transactions per second (default 100).
	Drill int64
	Rate  float64
	// Timeout bounds one transaction, connecting included. Default 2s.
	Timeout time.Duration
	Clock   clock.Clock
	// Note records a moment of the load (kind, reason, fields); may be nil.
	Note func(kind, reason string, fields map[string]string)

	mu        sync.Mutex
	acked     []int64
	last      time.Time // last acknowledgment
	server    string    // server of the latest write acknowledged (by due time)
	serverDue time.Time // due time of that write
	failing   bool
	failedAt  time.Time // when the first failure of the outage ended
}

// DSN is the multi-host connection string of the load: pgx tries the hosts
// in order and keeps the first that takes writes.
func (w *WriteLoad) DSN() (string, error) {
	var hosts, ports []string
	for _, a := range w.Addrs {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", fmt.Errorf("write load: address %q: %w", a, err)
		}
		hosts, ports = append(hosts, h), append(ports, p)
	}
	if len(hosts) == 0 {
		return "", errors.New("write load: no address to write to")
	}
	user, db := w.User, w.Database
	if user == "" {
		user = "postgres"
	}
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s target_session_attrs=read-write connect_timeout=%d sslmode=disable",
		strings.Join(hosts, ","), strings.Join(ports, ","), user, db, max(1, int(w.timeout().Seconds()))), nil
}

func (w *WriteLoad) timeout() time.Duration {
	if w.Timeout <= 0 {
		return 2 * time.Second
	}
	return w.Timeout
}

// Run writes until ctx ends and returns once every write it started ended.
// Each outcome goes to onSample (writes cut short by ctx are not reported).
func (w *WriteLoad) Run(ctx context.Context, onSample func(load.Sample)) error {
	clk := clock.Or(w.Clock)
	dsn, err := w.DSN()
	if err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("write load: %w", err)
	}
	cfg.MaxConns = 16
	cfg.HealthCheckPeriod = time.Second
	pool, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return fmt.Errorf("write load: %w", err)
	}
	defer pool.Close()
	if err := w.createTable(ctx, pool); err != nil {
		return err
	}
	rate := w.Rate
	if rate <= 0 {
		rate = 100
	}
	load.Schedule(ctx, clk, rate, 256, func(i int64, due time.Time) {
		if s, ok := w.write(ctx, clk, pool, i+1, due); ok {
			onSample(s)
		}
	})
	return nil
}

func (w *WriteLoad) createTable(ctx context.Context, pool *pgxpool.Pool) error {
	deadline := clock.Or(w.Clock).Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, w.timeout())
		_, err := pool.Exec(cctx, "CREATE TABLE IF NOT EXISTS "+writesTable+" (drill bigint NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (drill, seq))")
		cancel()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !clock.Or(w.Clock).Now().Before(deadline) {
			return fmt.Errorf("write load: create table %s: %w", writesTable, err)
		}
		pause(ctx, clock.Or(w.Clock), 200*time.Millisecond)
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, clk clock.Clock, d time.Duration) {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C():
	}
}

// write runs one transaction due at due; ok is false when ctx ended first.
func (w *WriteLoad) write(ctx context.Context, clk clock.Clock, pool *pgxpool.Pool, seq int64, due time.Time) (load.Sample, bool) {
	tctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	var server string
	err := pgx.BeginFunc(tctx, pool, func(tx pgx.Tx) error {
		return tx.QueryRow(tctx, "INSERT INTO "+writesTable+" (drill, seq) VALUES ($1, $2) RETURNING coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port(), 0)",
			w.Drill, seq).Scan(&server)
	})
	now := clk.Now()
	if err != nil && ctx.Err() != nil {
		return load.Sample{}, false
	}
	s := load.Sample{Intended: due, Latency: now.Sub(due), OK: err == nil}
	if err != nil {
		s.Err = classifyWrite(err)
	}
	w.observe(due, now, seq, server, err)
	return s, true
}

// observe keeps an acknowledgment and notes the moments the load changes.
// Only a write sent after the outage began (due after the first failure)
// ends it: a write already in flight then may still be acknowledged by the
// dying primary, which says nothing about recovery. Likewise only a later
// write than the last one seen can show a move to another server.
func (w *WriteLoad) observe(due, now time.Time, seq int64, server string, err error) {
	w.mu.Lock()
	var kind, reason string
	var fields map[string]string
	switch {
	case err != nil:
		if !w.failing && !w.last.IsZero() {
			w.failing, w.failedAt = true, now
			kind, reason = "db.writes.failing", fmt.Sprintf("write %d failed: %v", seq, err)
		}
	default:
		w.acked = append(w.acked, seq)
		later := !due.Before(w.serverDue)
		recovered := w.failing && due.After(w.failedAt)
		moved := later && w.server != "" && server != w.server
		if recovered || moved && !w.failing {
			gap := now.Sub(w.last)
			kind = "db.writes.resumed"
			reason = fmt.Sprintf("write %d acknowledged by %s, %.3f s after the last acknowledgment (by %s)", seq, server, gap.Seconds(), w.server)
			fields = map[string]string{"server": server, "previous": w.server, "outage_seconds": strconv.FormatFloat(gap.Seconds(), 'f', 3, 64)}
		}
		if recovered {
			w.failing = false
		}
		if later {
			w.server, w.serverDue = server, due
		}
		if now.After(w.last) {
			w.last = now
		}
	}
	w.mu.Unlock()
	if kind != "" && w.Note != nil {
		w.Note(kind, reason, fields)
	}
}

// Verify reads back, from whichever server takes writes now, every write the
// load saw acknowledged; it returns how many were acknowledged and how many
// of those are missing. It then deletes the drill's rows.
func (w *WriteLoad) Verify(ctx context.Context) (acked, lost int, err error) {
	w.mu.Lock()
	want := append([]int64(nil), w.acked...)
	w.mu.Unlock()
	dsn, err := w.DSN()
	if err != nil {
		return len(want), 0, err
	}
	var conn *pgx.Conn
	deadline := clock.Or(w.Clock).Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, w.timeout())
		conn, err = pgx.Connect(cctx, dsn)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || !clock.Or(w.Clock).Now().Before(deadline) {
			return len(want), 0, fmt.Errorf("write load: connect to read back the writes: %w", err)
		}
		pause(ctx, clock.Or(w.Clock), 200*time.Millisecond)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT seq FROM "+writesTable+" WHERE drill = $1", w.Drill)
	if err != nil {
		return len(want), 0, fmt.Errorf("write load: read back the writes: %w", err)
	}
	have := map[int64]bool{}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return len(want), 0, fmt.Errorf("write load: read back the writes: %w", err)
		}
		have[seq] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return len(want), 0, fmt.Errorf("write load: read back the writes: %w", err)
	}
	for _, seq := range want {
		if !have[seq] {
			lost++
		}
	}
	_, _ = conn.Exec(ctx, "DELETE FROM "+writesTable+" WHERE drill = $1", w.Drill)
	return len(want), lost, nil
}

// classifyWrite names a failed write's cause for the report.
func classifyWrite(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "read-only") || strings.Contains(err.Error(), "read_only"):
		return "read-only"
	case strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "closed"):
		return "reset"
	}
	return "error"
}
