package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/demoapp"
)

// runBackend is the `backend` subcommand: one instance behind the proxies.
// Without -workers it is medic's demoapp (GET / answers at once; POST
// /fault/hang makes it hang). With -workers N -work D it serves N requests
// at a time, each taking D, and queues the rest without bound: a service
// with a fixed capacity, for the overload run.
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9100", "address")
	id := fs.String("id", "", "instance id")
	workers := fs.Int("workers", 0, "requests served at once (0: demoapp)")
	work := fs.Duration("work", 10*time.Millisecond, "time per request with -workers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *workers == 0 {
		return demoapp.Run(ctx, demoapp.Options{Listen: *listen, ID: *id, Logger: log})
	}
	sem := make(chan struct{}, *workers)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		t := time.NewTimer(*work)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		<-sem
		fmt.Fprintf(w, "ok %s\n", *id)
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
