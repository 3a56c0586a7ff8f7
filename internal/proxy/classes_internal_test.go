package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/config"
)

func classesConfig(limit int, classes map[string]*config.ProxyClass) config.Proxy {
	cfg := config.Proxy{Listen: "127.0.0.1:0"}
	cfg.Shed.InitialLimit, cfg.Shed.MinLimit, cfg.Shed.MaxLimit = limit, limit, limit
	cfg.Clients = &config.ProxyClients{Default: "anonymous", Classes: classes}
	cfg.SetDefaults()
	if is := cfg.Validate(); len(is) > 0 {
		panic(fmt.Sprint(is))
	}
	return cfg
}

func share(f float64) *float64 { return &f }
func pct(n int) *int           { return &n }

func testKeys(t *testing.T) *auth.ClientKeys {
	t.Helper()
	k, err := auth.ParseClientKeys("keys.yaml", []byte(`keys:
  - {name: web, class: human, sha256: `+auth.Digest("human-key")+`}
  - {name: bot, class: agent, sha256: `+auth.Digest("agent-key")+`}
`))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestClassSeats drives the seat rule alone: limit 10; human 5 seats (3
// guaranteed), agent 4 (2 guaranteed), anonymous 1 that it never lends.
func TestClassSeats(t *testing.T) {
	cfg := classesConfig(10, map[string]*config.ProxyClass{
		"human":     {Priority: 10, Share: share(5)},
		"agent":     {Priority: 1, Share: share(4)},
		"anonymous": {Priority: 0, Share: share(1), Lendable: pct(0)},
	})
	d := NewDecision(cfg)
	if err := d.SetClientKeys(testKeys(t)); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	human, agent := d.Identify([]byte("human-key"), "10.0.0.1"), d.Identify([]byte("agent-key"), "10.0.0.2")
	anon := d.Identify(nil, "10.0.0.3")
	if names := d.ClassNames(); names[human.Class] != "human" || names[agent.Class] != "agent" || names[anon.Class] != "anonymous" {
		t.Fatalf("classes: %v %v %v of %v", human, agent, anon, names)
	}
	var held []Admission
	admit := func(c Client, n int) string {
		var out []string
		for range n {
			a := d.Admit(now, c, false)
			if a.Refusal == Admitted {
				held = append(held, a)
				out = append(out, "ok")
			} else {
				out = append(out, fmt.Sprint(a.Status))
			}
		}
		return strings.Join(out, " ")
	}
	release := func(class, n int) {
		for i := 0; i < len(held) && n > 0; i++ {
			if held[i].Class == class {
				d.Release(held[i])
				held = append(held[:i], held[i+1:]...)
				i--
				n--
			}
		}
	}
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		// The idle classes' guaranteed seats (human 3, anonymous 1) stay
		// free: agent borrows up to 10 - 3 - 1.
		{"agent storms while the others are idle: borrows all but their guarantees", func() string { return admit(agent, 8) }, "ok ok ok ok ok ok 503 503"},
		{"human gets its 3 guaranteed seats at once", func() string { return admit(human, 3) }, "ok ok ok"},
		{"human takes back the 2 seats agent holds beyond its share of 4: over the limit", func() string { return admit(human, 3) }, "ok ok 503"},
		{"agent is shed while over its share", func() string { return admit(agent, 1) }, "503"},
		{"anonymous keeps its guaranteed seat", func() string { return admit(anon, 2) }, "ok 503"},
		{"agent releases two: still no seat (the books balance first)", func() string { release(agent.Class, 2); return admit(agent, 1) }, "503"},
		{"agent releases two more: seats again up to the limit", func() string { release(agent.Class, 2); return admit(agent, 3) }, "ok ok 503"},
		{"human releases all: agent borrows again but keeps human's guarantee free", func() string { release(human.Class, 10); return admit(agent, 4) }, "ok ok 503 503"},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %q, want %q (classes %+v)", s.name, got, s.want, d.ClassStats())
		}
	}
	st := d.ClassStats()
	if st[agent.Class].Shed == 0 || st[human.Class].Admitted != 5 || !st[anon.Class].Default {
		t.Fatalf("stats: %+v", st)
	}
}

// TestSpoofedKeysGainNothing: a made-up key per request lands in the default
// class's one bucket, never a fresh one (the old bypass answered 20 of 20).
func TestSpoofedKeysGainNothing(t *testing.T) {
	cfg := classesConfig(100, map[string]*config.ProxyClass{
		"human":     {Rate: 100},
		"agent":     {Rate: 10, Burst: 10},
		"anonymous": {Rate: 2, Burst: 2},
	})
	cfg.RateLimit.Rate, cfg.RateLimit.Burst = 5, 5 // per client as well
	cfg.SetDefaults()
	d := NewDecision(cfg)
	if err := d.SetClientKeys(testKeys(t)); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	ok := 0
	for i := range 20 {
		c := d.Identify([]byte(fmt.Sprintf("made-up-%d", i)), fmt.Sprintf("10.0.0.%d", i)) // even from 20 addresses
		if a := d.Admit(now, c, false); a.Refusal == Admitted {
			ok++
			d.Release(a)
		}
	}
	if ok != 2 {
		t.Fatalf("20 made-up keys from 20 addresses: %d admitted, want the default class's burst of 2", ok)
	}
	// A key that only resembles a real one (a prefix, a suffix) is no key.
	for _, k := range []string{"agent-ke", "agent-key ", "AGENT-KEY", strings.Repeat("x", 10000)} {
		if c := d.Identify([]byte(k), "10.0.0.9"); d.ClassNames()[c.Class] != "anonymous" {
			t.Fatalf("key %.20q verified as %v", k, d.ClassNames()[c.Class])
		}
	}
	// The verified agent: its own per-key bucket (5) within its class rate (10).
	agent := d.Identify([]byte("agent-key"), "10.0.0.1")
	if agent.Key != "key:bot" {
		t.Fatalf("verified key names the client %q", agent.Key)
	}
	ok = 0
	for range 20 {
		if a := d.Admit(now, agent, false); a.Refusal == Admitted {
			ok++
			d.Release(a)
		}
	}
	if ok != 5 {
		t.Fatalf("agent key at once: %d admitted, want its per-client burst 5", ok)
	}
	// One second later the class rate refills 10, the key's own 5.
	ok = 0
	for range 20 {
		if a := d.Admit(now.Add(time.Second), agent, false); a.Refusal == Admitted {
			ok++
			d.Release(a)
		}
	}
	if ok != 5 {
		t.Fatalf("agent key a second later: %d admitted, want 5", ok)
	}
}

// TestClassRetryBudgets: a class's retries are paid from its own budget, so
// a storm of agent retries cannot spend the humans'.
func TestClassRetryBudgets(t *testing.T) {
	zero := 0.0
	cfg := classesConfig(100, map[string]*config.ProxyClass{
		"human":     {RetryBudget: share(0.5)},
		"agent":     {RetryBudget: &zero},
		"anonymous": {},
	})
	cfg.Retries.MinPerSecond = &zero
	d := NewDecision(cfg)
	if err := d.SetClientKeys(testKeys(t)); err != nil {
		t.Fatal(err)
	}
	d.Set("web/0", "127.0.0.1:1", true)
	d.Set("web/1", "127.0.0.1:2", true)
	now := time.Unix(100, 0)
	human, agent := d.Identify([]byte("human-key"), ""), d.Identify([]byte("agent-key"), "")
	for range 10 {
		d.Release(d.Admit(now, human, false))
		d.Release(d.Admit(now, agent, false))
	}
	get := Traits{Idempotent: true, Replayable: true, Untouched: true}
	get.Class = agent.Class
	if r := d.Retry(now, OutcomeReset, 0, get, 1, nil); !r.BudgetExhausted {
		t.Fatalf("agent retry with a zero budget: %+v", r)
	}
	get.Class = human.Class
	for i := range 5 {
		r := d.Retry(now, OutcomeReset, 0, get, 1, nil)
		if r.Next.backend == nil {
			t.Fatalf("human retry %d of a 50%% budget of 10 requests refused: %+v", i, r)
		}
		d.Done(r.Next.backend)
	}
	if r := d.Retry(now, OutcomeReset, 0, get, 1, nil); !r.BudgetExhausted {
		t.Fatalf("human's sixth retry fits a budget of 5: %+v", r)
	}
}

func TestClientKeysNameDefinedClasses(t *testing.T) {
	cfg := classesConfig(10, map[string]*config.ProxyClass{"human": {}, "anonymous": {}})
	if err := NewDecision(cfg).SetClientKeys(testKeys(t)); err == nil || !strings.Contains(err.Error(), "agent") {
		t.Fatalf("keys naming an undefined class: %v", err)
	}
}
