package flags_test

import (
	"context"
	"errors"
	"testing"

	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/flags"
)

func cfg(fs map[string]bool) *config.Config {
	return &config.Config{Services: map[string]*config.Service{"shop": {Command: []string{"x"}, Flags: fs}}}
}

// TestSetAuditsAndSurvivesReload: a flip is reported once, a repeat is not a
// change, an undeclared flag is refused, and a reload keeps the flipped
// value of a flag still declared while adding and removing the others.
func TestSetAuditsAndSurvivesReload(t *testing.T) {
	var got []flags.Change
	s := flags.New(cfg(map[string]bool{"recs": true, "beta": false}), func(c flags.Change) { got = append(got, c) })
	a := flags.Action{Store: s}
	out, err := a.Do(context.Background(), action.Input{Target: "shop", Flag: "recs", FlagValue: "false", Actor: "runbook:degrade", Reason: "breaker open"})
	if err != nil || !out.Changed || s.Service("shop")["recs"] {
		t.Fatalf("set_flag: %+v %v, flags %v", out, err, s.Service("shop"))
	}
	if out, err := a.Do(context.Background(), action.Input{Target: "shop", Flag: "recs", FlagValue: "false"}); err != nil || out.Changed {
		t.Fatalf("setting the same value: %+v %v", out, err)
	}
	if len(got) != 1 || got[0] != (flags.Change{Service: "shop", Flag: "recs", From: true, To: false, Actor: "runbook:degrade", Reason: "breaker open"}) {
		t.Fatalf("changes %+v", got)
	}
	if _, err := s.Set("shop", "nope", true, "x", "y"); !errors.Is(err, flags.ErrUnknown) {
		t.Fatalf("undeclared flag: %v", err)
	}
	if _, err := a.Do(context.Background(), action.Input{Target: "shop", Flag: "recs", FlagValue: "maybe"}); err == nil {
		t.Fatal("a value that is not a bool was accepted")
	}
	s.Update(cfg(map[string]bool{"recs": true, "new": true}))
	if fs := s.Service("shop"); len(fs) != 2 || fs["recs"] || !fs["new"] {
		t.Fatalf("after reload: %v, want recs kept false, new true, beta gone", fs)
	}
}
