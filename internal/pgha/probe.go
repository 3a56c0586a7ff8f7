package pgha

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/clock"
)

// Probe is one reading of the local postgres.
type Probe struct {
	InRecovery  bool
	LSN         uint64 // primary: pg_current_wal_lsn(); replica: last received (or replayed) WAL
	ReplayLSN   uint64
	LagSeconds  float64 // replica: age of the last replayed transaction while replay is behind
	Timeline    int
	Streaming   bool // replica: the WAL receiver streams
	SenderHost  string
	Replicas    []Replication
	SyncSetting string // synchronous_standby_names in effect
}

// prober keeps one connection to the local postgres and reads its state
// with pgx: connection, pg_is_in_recovery(), WAL positions and replication.
type prober struct {
	dsn   string
	clock clock.Clock
	mu    sync.Mutex
	conn  *pgx.Conn
}

const probeSQL = `
SELECT pg_is_in_recovery(),
       (CASE WHEN pg_is_in_recovery()
             THEN GREATEST(COALESCE(pg_last_wal_receive_lsn(), '0/0'), COALESCE(pg_last_wal_replay_lsn(), '0/0'))
             ELSE pg_current_wal_lsn() END)::text,
       COALESCE(pg_last_wal_replay_lsn(), '0/0')::text,
       (CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()
             THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
             ELSE 0 END)::float8,
       (CASE WHEN pg_is_in_recovery()
             THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END),
       COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
       COALESCE((SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), ''),
       current_setting('synchronous_standby_names')`

const replicationSQL = `
SELECT application_name, state = 'streaming', sync_state = 'sync',
       COALESCE(flush_lsn, '0/0')::text, COALESCE(replay_lsn, '0/0')::text
  FROM pg_stat_replication`

// probe reads the server within ctx. An error means postgres is not ready.
func (pr *prober) probe(ctx context.Context) (Probe, error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.conn == nil || pr.conn.IsClosed() {
		cfg, err := pgx.ParseConfig(pr.dsn)
		if err != nil {
			return Probe{}, fmt.Errorf("pgha: probe: %w", err)
		}
		if dl, ok := ctx.Deadline(); ok {
			cfg.ConnectTimeout = time.Until(dl)
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return Probe{}, fmt.Errorf("pgha: probe: connect: %w", err)
		}
		pr.conn = c
	}
	var r Probe
	var lsn, replay string
	err := pr.conn.QueryRow(ctx, probeSQL).Scan(&r.InRecovery, &lsn, &replay, &r.LagSeconds, &r.Timeline,
		&r.Streaming, &r.SenderHost, &r.SyncSetting)
	if err == nil {
		r.LSN, err = ParseLSN(lsn)
	}
	if err == nil {
		r.ReplayLSN, err = ParseLSN(replay)
	}
	if err == nil && !r.InRecovery {
		r.Replicas, err = pr.replication(ctx)
	}
	if err != nil {
		pr.closeLocked()
		return Probe{}, fmt.Errorf("pgha: probe: %w", err)
	}
	return r, nil
}

func (pr *prober) replication(ctx context.Context) ([]Replication, error) {
	rows, err := pr.conn.Query(ctx, replicationSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Replication
	for rows.Next() {
		var r Replication
		var flush, replay string
		if err := rows.Scan(&r.Member, &r.Streaming, &r.Sync, &flush, &replay); err != nil {
			return nil, err
		}
		r.FlushLSN, _ = ParseLSN(flush)
		r.ReplayLSN, _ = ParseLSN(replay)
		out = append(out, r)
	}
	return out, rows.Err()
}

// promote runs pg_promote and waits for it (at most wait).
func (pr *prober) promote(ctx context.Context, wait time.Duration) error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.conn == nil || pr.conn.IsClosed() {
		c, err := pgx.Connect(ctx, pr.dsn)
		if err != nil {
			return fmt.Errorf("pgha: promote: connect: %w", err)
		}
		pr.conn = c
	}
	// pg_promote(wait => true) polls ten times a second; polling here every
	// 10ms takes ~50ms off every failover.
	var ok bool
	if err := pr.conn.QueryRow(ctx, "SELECT pg_promote(false)").Scan(&ok); err != nil {
		pr.closeLocked()
		return fmt.Errorf("pgha: pg_promote: %w", err)
	}
	deadline := pr.clock.Now().Add(wait)
	for {
		var rec bool
		if err := pr.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			pr.closeLocked()
			return fmt.Errorf("pgha: wait for the promotion: %w", err)
		}
		if !rec {
			return nil
		}
		if pr.clock.Now().After(deadline) {
			return fmt.Errorf("pgha: pg_promote: not promoted within %v", wait)
		}
		t := pr.clock.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgha: wait for the promotion: %w", ctx.Err())
		case <-t.C():
		}
	}
}

// close drops the connection (postgres restarts, the agent stops).
func (pr *prober) close() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.closeLocked()
}

func (pr *prober) closeLocked() {
	if pr.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		pr.conn.Close(ctx)
		cancel()
		pr.conn = nil
	}
}
