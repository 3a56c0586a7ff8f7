package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestLoadWithinAbandonsASlowValidation: a load that does not return is
// abandoned at the deadline, and at once when the context ends (SIGTERM
// during a reload); a load that returns is passed through.
func TestLoadWithinAbandonsASlowValidation(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	stuck := func(string) (*config.Config, error) { <-block; return nil, errors.New("never") }

	start := time.Now()
	_, err := loadWithin(context.Background(), stuck, "m.yaml", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 50ms") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("returned after %v, want about 50ms", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start = time.Now()
	_, err = loadWithin(ctx, stuck, "m.yaml", time.Hour)
	if err == nil || !strings.Contains(err.Error(), "abandoned") || time.Since(start) > 2*time.Second {
		t.Fatalf("after cancel: err = %v after %v", err, time.Since(start))
	}

	want := &config.Config{Path: "ok.yaml"}
	got, err := loadWithin(context.Background(), func(string) (*config.Config, error) { return want, nil }, "ok.yaml", time.Second)
	if err != nil || got != want {
		t.Fatalf("got %v, %v", got, err)
	}
}
