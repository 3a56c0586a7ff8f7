package cron_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

func TestNext(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct{ expr, from, want string }{
		{"* * * * *", "2026-03-01 10:00", "2026-03-01 10:01"},
		{"30 3 * * *", "2026-03-01 10:00", "2026-03-02 03:30"},
		{"@daily", "2026-12-31 23:59", "2027-01-01 00:00"},
		{"*/15 * * * *", "2026-03-01 10:01", "2026-03-01 10:15"},
		{"0 9-17/4 * * *", "2026-03-01 10:00", "2026-03-01 13:00"},
		{"0 0 * * 1", "2026-03-01 10:00", "2026-03-02 00:00"},  // 2026-03-01 is a Sunday
		{"0 0 * * 7", "2026-03-02 10:00", "2026-03-08 00:00"},  // 7 = Sunday
		{"0 0 13 * 5", "2026-03-01 10:00", "2026-03-06 00:00"}, // either day field may match: Friday 6th first
		{"0 12 29 2 *", "2026-03-01 00:00", "2028-02-29 12:00"},
		{"5,10 1 1 1 *", "2026-01-01 01:05", "2026-01-01 01:10"},
		{"0 0 30 2 *", "2026-01-01 00:00", ""},
	} {
		s, err := cron.Parse(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got := s.Next(at(c.from))
		var want time.Time
		if c.want != "" {
			want = at(c.want)
		}
		if !got.Equal(want) {
			t.Errorf("%q from %s: got %v, want %v", c.expr, c.from, got, want)
		}
	}
}

func TestEvery(t *testing.T) {
	s, err := cron.Parse("@every 90s")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := s.Next(t0); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("got %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
		"*/0 * * * *", "5-1 * * * *", "a * * * *", "@every 10ms", "@every x", "@often"} {
		if _, err := cron.Parse(expr); err == nil {
			t.Errorf("%q: no error", expr)
		}
	}
}
