package demodb_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/medic-dev/medic/internal/demodb"
)

func TestPoolConfigAppliesTheHASettings(t *testing.T) {
	cfg, err := demodb.PoolConfig("host=127.0.0.1,127.0.0.1 port=6432,6442 user=postgres dbname=postgres sslmode=disable target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"connect timeout", cfg.ConnConfig.ConnectTimeout, 5 * time.Second},
		{"max idle time", cfg.MaxConnIdleTime, 300 * time.Second},
		{"max lifetime", cfg.MaxConnLifetime, 1800 * time.Second},
		{"health check period", cfg.HealthCheckPeriod, 5 * time.Second},
		{"ping timeout", cfg.PingTimeout, time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if cfg.ConnConfig.Port != 6432 || len(cfg.ConnConfig.Fallbacks) != 1 || cfg.ConnConfig.Fallbacks[0].Port != 6442 {
		t.Errorf("multi-host DSN: first port %d, %d fallbacks; want 6432, then one fallback on 6442", cfg.ConnConfig.Port, len(cfg.ConnConfig.Fallbacks))
	}
	if cfg.ConnConfig.ValidateConnect == nil {
		t.Error("target_session_attrs=read-write did not set a connect validator")
	}
}

func TestPoolConfigKeepsTheDSNConnectTimeout(t *testing.T) {
	cfg, err := demodb.PoolConfig("postgres://app@127.0.0.1:6432/app?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ConnConfig.ConnectTimeout; got != 2*time.Second {
		t.Fatalf("connect timeout = %v, want the DSN's 2s", got)
	}
}

func TestPoolConfigRejectsABadDSN(t *testing.T) {
	if _, err := demodb.PoolConfig("host=127.0.0.1 port=notaport"); err == nil {
		t.Fatal("PoolConfig accepted port=notaport")
	}
}

// Validation on checkout: a connection idle more than 500 ms is pinged
// before use; one just released is not (a ping per write would double the
// round trips under load).
func TestValidationOnCheckout(t *testing.T) {
	cfg, err := demodb.PoolConfig("host=127.0.0.1 port=6432")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		idle time.Duration
		want bool
	}{{0, false}, {100 * time.Millisecond, false}, {500 * time.Millisecond, false}, {501 * time.Millisecond, true}, {time.Minute, true}} {
		if got := cfg.ShouldPing(context.Background(), pgxpool.ShouldPingParams{IdleDuration: c.idle}); got != c.want {
			t.Errorf("idle %v: ping = %v, want %v", c.idle, got, c.want)
		}
	}
}
