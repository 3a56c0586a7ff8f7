package demodb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The pool settings high-availability guidance recommends (the same values
// as docs/failover.md gives for pgx, HikariCP and SQLAlchemy).
const (
	// ConnectTimeout bounds one connection attempt, so that a dead host
	// costs seconds, not the kernel's TCP timeout. A connect_timeout in the
	// DSN wins.
	ConnectTimeout = 5 * time.Second
	// MaxConnIdleTime closes connections idle this long.
	MaxConnIdleTime = 300 * time.Second
	// MaxConnLifetime replaces every connection after this long, so that
	// none outlives a topology change for good.
	MaxConnLifetime = 1800 * time.Second
	// MaxConnLifetimeJitter spreads the replacements: the whole pool never
	// reconnects at once.
	MaxConnLifetimeJitter = 60 * time.Second
	// HealthCheckPeriod is how often idle connections are checked in the
	// background (idle time, lifetime, minimum size).
	HealthCheckPeriod = 5 * time.Second
	// PingIdleAfter: a connection idle longer than this is pinged when it
	// is checked out, and a dead one is dropped and replaced before the
	// query runs (validation on checkout, HikariCP's 500 ms rule).
	PingIdleAfter = 500 * time.Millisecond
	// PingTimeout bounds that ping.
	PingTimeout = time.Second
	// MaxConns is the pool size: 100 single-row writes a second need a few.
	MaxConns = 8
)

// Table is the table Write inserts into; it is created when missing.
const Table = "demodb_writes"

// PoolConfig parses dsn and applies the settings above. Validation on
// checkout is pgxpool's ShouldPing hook (pgx ≥ 5.7 pings before
// PrepareConn, and drops a connection whose ping fails, retrying on another).
func PoolConfig(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("demodb: parse the DSN: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	cfg.MaxConnIdleTime = MaxConnIdleTime
	cfg.MaxConnLifetime = MaxConnLifetime
	cfg.MaxConnLifetimeJitter = MaxConnLifetimeJitter
	cfg.HealthCheckPeriod = HealthCheckPeriod
	cfg.MaxConns = MaxConns
	cfg.PingTimeout = PingTimeout
	cfg.ShouldPing = shouldPing
	return cfg, nil
}

// shouldPing is the validation-on-checkout rule: a connection in use a
// moment ago is trusted, one idle longer than PingIdleAfter is pinged.
func shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return p.IdleDuration > PingIdleAfter
}

// Postgres is the Store of a pgx pool.
type Postgres struct {
	pool *pgxpool.Pool

	mu     sync.Mutex // one CREATE TABLE at a time (concurrent ones collide in pg_type)
	schema bool       // Table is known to exist
}

var _ Store = (*Postgres)(nil)

// OpenPostgres creates the pool of cfg. No connection is made yet: the
// service starts, and answers not ready, while the database is down.
func OpenPostgres(ctx context.Context, cfg *pgxpool.Config) (*Postgres, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("demodb: create the pool: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Write implements Store: BEGIN, INSERT … ON CONFLICT DO NOTHING, COMMIT.
func (p *Postgres) Write(ctx context.Context, id int64) error {
	if err := p.ensureSchema(ctx); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO "+Table+" (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", id)
		return err
	})
	if err != nil {
		return fmt.Errorf("insert and commit: %w", err)
	}
	return nil
}

// Ready implements Store: the server reached must be neither in recovery
// nor read-only. A writable primary also gets the table, so the first write
// finds it.
func (p *Postgres) Ready(ctx context.Context) error {
	var readOnly bool
	err := p.pool.QueryRow(ctx, "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool").Scan(&readOnly)
	if err != nil {
		return fmt.Errorf("ask whether the server takes writes: %w", err)
	}
	if readOnly {
		return ErrReadOnly
	}
	return p.ensureSchema(ctx)
}

func (p *Postgres) ensureSchema(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.schema {
		return nil
	}
	_, err := p.pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+Table+" (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
	if err != nil {
		return fmt.Errorf("create table %s: %w", Table, err)
	}
	p.schema = true
	return nil
}
