package supervise

import (
	"os"
	"strings"
	"testing"
)

func TestChooseLimits(t *testing.T) {
	mem := v1Tree{mount: "/sys/fs/cgroup/memory", own: "/", dir: "/sys/fs/cgroup/memory/medic-x"}
	pids := v1Tree{mount: "/sys/fs/cgroup/pids", own: "/", dir: "/sys/fs/cgroup/pids/medic-x"}
	cases := []struct {
		name    string
		v2      []string
		v2Why   string
		v1      map[string]v1Tree
		v1Why   map[string]string
		wantV2  string // controllers through v2
		wantV1  string // controllers through v1
		refused string // substring of the refusal of memory+pids limits; "" = accepted
	}{
		{name: "pure v2, delegated", v2: []string{"memory", "pids"}, wantV2: "memory pids"},
		{name: "v2 wins over v1", v2: []string{"memory", "pids"}, v1: map[string]v1Tree{"memory": mem, "pids": pids}, wantV2: "memory pids"},
		{name: "hybrid: controllers bound to v1", v2Why: "cgroup v2 does not offer memory or pids", v1: map[string]v1Tree{"memory": mem, "pids": pids}, wantV1: "memory pids"},
		{name: "mixed", v2: []string{"pids"}, v1: map[string]v1Tree{"memory": mem}, wantV2: "pids", wantV1: "memory"},
		{name: "nothing", v2Why: "no cgroup2 (unified) hierarchy is mounted", v1Why: map[string]string{"memory": "no cgroup v1 hierarchy with the memory controller is mounted"},
			refused: "memory limit: no cgroup2 (unified) hierarchy is mounted; no cgroup v1 hierarchy with the memory controller"},
		{name: "v2 without pids, no v1", v2: []string{"memory"}, v2Why: "cgroup v2 offers only memory", wantV2: "memory", refused: "pids limit: cgroup v2 offers only memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := chooseLimits(c.v2, c.v2Why, c.v1, c.v1Why)
			var v2, v1 []string
			for _, ctrl := range limitControllers {
				if p.v2[ctrl] {
					v2 = append(v2, ctrl)
				}
				if _, ok := p.v1[ctrl]; ok {
					v1 = append(v1, ctrl)
				}
			}
			if got := strings.Join(v2, " "); got != c.wantV2 {
				t.Errorf("v2 %q, want %q", got, c.wantV2)
			}
			if got := strings.Join(v1, " "); got != c.wantV1 {
				t.Errorf("v1 %q, want %q", got, c.wantV1)
			}
			err := p.refuse(Limits{Memory: 1 << 30, Pids: 10})
			switch {
			case c.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
				t.Errorf("refusal %v, want it to contain %q", err, c.refused)
			}
			if err := p.refuse(Limits{}); err != nil {
				t.Errorf("no limits refused: %v", err)
			}
		})
	}
}

func TestKeyedValue(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/memory.oom_control"
	if err := writeFileForTest(p, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"); err != nil {
		t.Fatal(err)
	}
	if n := keyedValue(p, "oom_kill"); n != 3 {
		t.Fatalf("oom_kill %d, want 3", n)
	}
	if n := keyedValue(p, "oom"); n != -1 {
		t.Fatalf("absent key %d, want -1", n)
	}
	if n := keyedValue(dir+"/none", "oom_kill"); n != -1 {
		t.Fatalf("absent file %d, want -1", n)
	}
}

func writeFileForTest(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

func TestChooseTracking(t *testing.T) {
	cases := []struct {
		v2   bool
		v1   map[string]bool
		want string
	}{
		{v2: true, v1: map[string]bool{"pids": true}, want: "v2"},
		{v1: map[string]bool{"pids": true, "freezer": true}, want: "pids"},
		{v1: map[string]bool{"freezer": true}, want: "freezer"},
		{v1: map[string]bool{"memory": true}, want: ""},
		{want: ""},
	}
	for _, c := range cases {
		if got := chooseTracking(c.v2, c.v1); got != c.want {
			t.Errorf("chooseTracking(%v, %v) = %q, want %q", c.v2, c.v1, got, c.want)
		}
	}
}
