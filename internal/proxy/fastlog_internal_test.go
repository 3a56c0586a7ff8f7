package proxy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
)

type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countHandler) WithGroup(string) slog.Handler             { return h }

// TestFastLoggerFoldsClientErrors: a flood of broken connections (slowloris,
// resets) gives one warning per interval, not one per connection.
func TestFastLoggerFoldsClientErrors(t *testing.T) {
	h := &countHandler{}
	f := &fastLogger{l: slog.New(h)}
	for range 10000 {
		f.Printf("error when reading request headers: %v", "read timeout")
	}
	if got := h.n.Load(); got != 1 {
		t.Fatalf("10000 client errors wrote %d log lines, want 1", got)
	}
	if f.folded != 9999 {
		t.Fatalf("folded %d, want 9999", f.folded)
	}
}
