package logfile

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAccessLine: one proxy access line (the attributes of
// proxy.finishFast) through slog's JSON handler into a Rotating file, as
// the agent wrote it before (Logger.LogAttrs: a runtime.Callers per record,
// a write(2) per line) and as it does now (a record without a caller, into
// Buffered). go test -bench AccessLine -count 6 ./internal/logfile
func BenchmarkAccessLine(b *testing.B) {
	attrs := []slog.Attr{
		slog.String("service", "web"), slog.String("request_id", "0123456789abcdef"),
		slog.String("method", "GET"), slog.String("path", "/api/items"),
		slog.String("client", "127.0.0.1:54321"), slog.String("instance", "web/1"),
		slog.Int("attempts", 1), slog.Int("status", 200), slog.Float64("duration_seconds", 0.000412),
	}
	open := func(b *testing.B) *Rotating {
		r, err := Open(filepath.Join(b.TempDir(), "access.log"), 1<<30, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close() })
		return r
	}
	b.Run("file, LogAttrs", func(b *testing.B) {
		l := slog.New(slog.NewJSONHandler(open(b), nil))
		ctx := context.Background()
		for b.Loop() {
			l.LogAttrs(ctx, slog.LevelInfo, "access", attrs...)
		}
	})
	b.Run("buffered, no caller", func(b *testing.B) {
		w := NewBuffered(open(b), 32<<10, time.Second)
		h := slog.NewJSONHandler(w, nil)
		ctx := context.Background()
		for b.Loop() {
			r := slog.NewRecord(time.Now(), slog.LevelInfo, "access", 0)
			r.AddAttrs(attrs...)
			_ = h.Handle(ctx, r)
		}
		w.Close()
	})
}
