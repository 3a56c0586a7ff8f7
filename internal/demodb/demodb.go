// Package demodb is a small HTTP service backed by PostgreSQL through a pgx
// pool configured the way high-availability guidance recommends. medic's
// demo supervises it (`medic demodb --listen ADDR --dsn DSN`) and runs a
// write load through it while the primary is killed, to show what a client
// sees during a failover.
//
// Endpoints:
//
//	POST /write?id=N     insert row N in one transaction; 200 only after the commit
//	                     (the acknowledgment), 503 within WriteTimeout when it fails
//	GET  /healthz/live   200 "ok": the process is alive; never touches the database
//	GET  /healthz/ready  200 "ready" when the pool reaches a writable primary within
//	                     ReadyTimeout, else 503 with the reason
//
// A wrong method answers 405, an unknown path 404, and a missing or malformed
// id 400. Writes are idempotent: writing an id again is acknowledged without
// a second row, so a client may retry an ambiguous failure.
package demodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options.
const (
	// DefaultWriteTimeout bounds one write, pool checkout included: a client
	// learns within it that the database is unreachable instead of hanging.
	DefaultWriteTimeout = 2 * time.Second
	// DefaultReadyTimeout bounds the readiness check; keep it below the
	// probe's timeout so that the probe sees the 503 and its reason.
	DefaultReadyTimeout = time.Second
)

// shutdownGrace bounds the graceful shutdown of in-flight requests.
const shutdownGrace = 5 * time.Second

// Options configures the service.
type Options struct {
	// Listen is the TCP address Run listens on, e.g. "127.0.0.1:9200".
	Listen string
	// DSN is the database's connection string (keyword/value or URL form);
	// it may list several hosts, e.g. "host=127.0.0.1,127.0.0.1
	// port=6432,6442 user=postgres dbname=postgres target_session_attrs=read-write".
	DSN string
	// WriteTimeout bounds each write. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ReadyTimeout bounds each readiness check. Default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives startup, shutdown and readiness changes. Default slog.Default().
	Logger *slog.Logger
}

// Run opens the pool (PoolConfig of o.DSN; no connection is made before the
// first request), listens on o.Listen and serves until ctx ends, then shuts
// down gracefully and closes the pool. It returns nil after a shutdown
// caused by ctx, and an error if the DSN is invalid, it cannot listen or the
// server fails.
func Run(ctx context.Context, o Options) error {
	cfg, err := PoolConfig(o.DSN)
	if err != nil {
		return err
	}
	db, err := OpenPostgres(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("demodb: listen on %q: %w", o.Listen, err)
	}
	return Serve(ctx, ln, New(db, o), o.Logger)
}

// Serve serves h on ln until ctx ends or the server fails, then shuts the
// server down within 5 s. It closes ln. It returns nil after a shutdown
// caused by ctx.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	addr := ln.Addr().String()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	log.Info("demodb listening", "addr", addr)

	var err error
	select {
	case <-ctx.Done():
	case e := <-serveErr:
		err = fmt.Errorf("demodb: serve %s: %w", addr, e)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if e := srv.Shutdown(sctx); e != nil && err == nil {
		err = fmt.Errorf("demodb: shut down %s: %w", addr, e)
	}
	wg.Wait()
	if err == nil {
		if e := <-serveErr; !errors.Is(e, http.ErrServerClosed) {
			err = fmt.Errorf("demodb: serve %s: %w", addr, e)
		}
	}
	log.Info("demodb stopped", "addr", addr)
	return err
}
