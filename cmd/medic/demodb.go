package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/medic-dev/medic/internal/demodb"
)

// demodbCmd runs the demo's database service (internal/demodb); the demo
// supervises it, so it is hidden from the help.
func demodbCmd() *cobra.Command {
	var o demodb.Options
	c := &cobra.Command{
		Use:    "demodb",
		Short:  "Run the demo's database service: POST /write?id=N through a pgx pool, readiness = a writable primary",
		Hidden: true,
		Args:   exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.DSN == "" {
				return usageError{errors.New("--dsn is required")}
			}
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return demodb.Run(ctx, o)
		},
	}
	c.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8090", "address to serve on")
	c.Flags().StringVar(&o.DSN, "dsn", "", "PostgreSQL connection string; may list several hosts (target_session_attrs=read-write)")
	c.Flags().DurationVar(&o.WriteTimeout, "write-timeout", demodb.DefaultWriteTimeout, "bound of one write, pool checkout included")
	c.Flags().DurationVar(&o.ReadyTimeout, "ready-timeout", demodb.DefaultReadyTimeout, "bound of one readiness check")
	return c
}
