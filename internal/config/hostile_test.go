package config_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// The limits a config load must keep on any input of at most 1 MiB (issue
// 12: an 833-byte merge bomb ran for minutes; "- - - …" took gigabytes).
const (
	hostileTime  = time.Second
	hostileAlloc = 100 << 20
)

type hostile struct {
	name string
	data []byte
}

// hostileCorpus is testdata/hostile/*.yaml (the small ones, each a file) and
// the large ones, generated here rather than stored (each is up to 1 MiB).
func hostileCorpus(tb testing.TB) []hostile {
	tb.Helper()
	var out []hostile
	for _, f := range glob(tb, "testdata/hostile/*.yaml") {
		out = append(out, hostile{strings.TrimSuffix(filepath.Base(f), ".yaml"), mustRead(tb, f)})
	}
	const mib = 1 << 20
	svc := "services:\n  web:\n    command: [./web]\n"
	lines := func(prefix string, n int, f func(i int) string) string {
		var b strings.Builder
		b.WriteString(prefix)
		for i := range n {
			if b.Len() > mib-200 {
				break
			}
			b.WriteString(f(i))
		}
		return b.String()
	}
	fill := func(prefix, unit, suffix string) string {
		n := (mib - len(prefix) - len(suffix) - 1) / len(unit)
		return prefix + strings.Repeat(unit, n) + suffix
	}
	r := rand.New(rand.NewPCG(12, 12))
	garbage := make([]byte, mib)
	for i := range garbage {
		garbage[i] = byte(1 + r.IntN(254))
	}
	gen := map[string]string{
		"deep_dash_100000":        svc + "    env:\n      k: " + strings.Repeat("- ", 100_000) + "x\n",
		"deep_dash_top":           fill("", "- ", "x\n"),
		"deep_flow_unclosed":      fill("a: ", "[", "\n"),
		"deep_flow_map_unclosed":  fill("a: ", "{a: ", "\n"),
		"many_keys_one_map":       lines(svc+"    env:\n", 100_000, func(i int) string { return fmt.Sprintf("      K%d: v%d\n", i, i) }),
		"many_keys_spread":        lines("services:\n", 100_000, func(i int) string { return spreadKey(i) }),
		"many_list_items":         lines(svc+"    args:\n", 200_000, func(i int) string { return fmt.Sprintf("      - a%d\n", i) }),
		"many_flow_items":         fill("x: [", "1,", "1]\n"),
		"many_flow_keys":          lines("x: {", 200_000, func(i int) string { return fmt.Sprintf("k%d: 1, ", i) }) + "}\n",
		"many_services":           lines("services:\n", 100_000, func(i int) string { return fmt.Sprintf("  s%d: {command: [x]}\n", i) }),
		"many_documents":          fill("", "---\na: 1\n", ""),
		"many_empty_documents":    fill("", "---\n", ""),
		"many_comment_lines":      fill("", "# c\n", svc),
		"many_blank_lines":        fill("", "\n", svc),
		"many_tags":               fill(svc+"    args: [", "!!str a, ", "b]\n"),
		"many_anchors_flow":       lines(svc+"    args: [", 200_000, func(i int) string { return fmt.Sprintf("&a%d x, ", i) }) + "]\n",
		"many_aliases_flow":       fill(svc+"    env: &e {}\n    args: [", "*e, ", "]\n"),
		"huge_plain_scalar":       fill(svc+"    env:\n      K: ", "a", "\n"),
		"huge_quoted_scalar":      fill(svc+"    env:\n      K: '", "a", "'\n"),
		"huge_double_escapes":     fill(svc+"    env:\n      K: \"", `\u00e9`, "\"\n"),
		"huge_block_scalar":       fill(svc+"    env:\n      K: |\n", "        "+strings.Repeat("a", 100)+"\n", ""),
		"huge_folded_scalar":      fill(svc+"    env:\n      K: >-\n", "        "+strings.Repeat("b ", 50)+"\n", ""),
		"huge_multiline_quoted":   fill(svc+"    env:\n      K: \"x\n", "        "+strings.Repeat("c", 1000)+"\n", "        \"\n"),
		"huge_multiline_plain":    fill(svc+"    env:\n      K: x\n", "        "+strings.Repeat("d", 1000)+"\n", ""),
		"huge_multiline_shortlns": fill(svc+"    env:\n      K: \"x\n", "        c\n", "        \"\n"),
		"long_key":                fill(svc+"    env:\n      ", "k", ": v\n"),
		"long_anchor_name":        fill(svc+"    env: &", "n", " {}\n"),
		"long_alias_name":         fill(svc+"    env: *", "n", "\n"),
		"long_tag":                fill(svc+"    env: !", "t", " {}\n"),
		"long_comment":            fill("# ", "c", "\n"+svc),
		"line_over_limit":         svc + "    env:\n      K: " + strings.Repeat("a", 64<<10) + "\n",
		"block_scalar_over_limit": svc + "    env:\n      K: |\n" + strings.Repeat("        a\n", 8<<10),
		"most_keys_accepted":      lines("services:\n", 4_960, func(i int) string { return spreadKeyN(i, 998) }),
		"most_flow_accepted":      lines("x:\n", 4, func(i int) string { return "  - [" + strings.Repeat("1,", 990) + "1]\n" }),
		"oversize":                "a: " + strings.Repeat("b", mib) + "\n",
		"binary_garbage":          string(garbage),
		"tabs_everywhere":         fill("", "\t", "a: b\n"),
		"crlf_many":               fill("", "a: b\r\n", ""),
		"colon_spam":              fill("", ":", "\n"),
		"dash_spam_no_space":      fill("", "-", "\n"),
		"bracket_close_spam":      fill("", "]", "\n"),
		"question_spam":           fill("", "? \n", ""),
		"quote_spam":              fill("", "'", "\n"),
		"unclosed_quote_lines":    fill("a: '", "x\n", ""),
	}
	for name, s := range gen {
		out = append(out, hostile{"gen/" + name, []byte(s)})
	}
	return out
}

func spreadKeyN(i, n int) string {
	if i%n == 0 {
		return fmt.Sprintf("  w%d:\n    command: [x]\n    env:\n", i)
	}
	return fmt.Sprintf("      K%d: v%d\n", i, i)
}

func spreadKey(i int) string {
	if i%1001 == 0 {
		return fmt.Sprintf("  w%d:\n    command: [x]\n    env:\n", i)
	}
	return fmt.Sprintf("      K%d: v%d\n", i, i)
}

// TestHostileConfigs: every hostile config is answered (accepted, or
// refused with file:line:col) in under a second and 100 MB of allocations.
func TestHostileConfigs(t *testing.T) {
	corpus := hostileCorpus(t)
	if len(corpus) < 50 {
		t.Fatalf("the hostile corpus holds %d configs, want at least 50", len(corpus))
	}
	for _, h := range corpus {
		took, alloc, err := measureParse(h.name+".yaml", h.data)
		if took > hostileTime*slowdown || alloc > hostileAlloc {
			t.Errorf("%s (%d bytes): answered in %v with %d MB allocated, want < %v and < %d MB",
				h.name, len(h.data), took.Round(time.Millisecond), alloc>>20, hostileTime*slowdown, hostileAlloc>>20)
		}
		if err == nil {
			if testing.Verbose() {
				t.Logf("%-40s %8d B %6v %4d MB  accepted", h.name, len(h.data), took.Round(time.Millisecond), alloc>>20)
			}
			continue
		}
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Errorf("%s: error is %T, want config.Errors: %v", h.name, err, err)
			continue
		}
		for _, e := range errs {
			if e.File != h.name+".yaml" || e.Line < 1 || e.Col < 1 {
				t.Errorf("%s: error without file:line:col: %v", h.name, e)
			}
			if strings.Contains(e.Msg, "internal error") {
				t.Errorf("%s: %v", h.name, e)
			}
		}
		if testing.Verbose() {
			t.Logf("%-40s %8d B %6v %4d MB  %s", h.name, len(h.data), took.Round(time.Millisecond), alloc>>20, firstLine(err.Error()))
		}
	}
}

// TestHostileGuardsName: the bombs and the deep nestings are refused by
// the bounds with a message saying which, not by a later error.
func TestHostileGuardsName(t *testing.T) {
	want := map[string]string{
		"merge_bomb_9x9":              "once aliases and merge keys are expanded",
		"billion_laughs_lists":        "once aliases and merge keys are expanded",
		"deep_dash_10000":             "nested more than 100 levels",
		"deep_mapping_indent_150":     "nested more than 100 levels",
		"deep_seq_of_maps_120":        "nested more than 100 levels",
		"many_keys_1001":              "more than 1000 entries in one list or mapping",
		"many_flow_keys_1001":         "more than 1000 entries in one list or mapping",
		"gen/line_over_limit":         "a line may not exceed",
		"gen/block_scalar_over_limit": "a block scalar longer than 65536 bytes",
		"block_scalar_hides_dashes":   "", // valid: a block scalar's text is not nesting
	}
	byName := map[string][]byte{}
	for _, h := range hostileCorpus(t) {
		byName[h.name] = h.data
	}
	for name, msg := range want {
		_, err := config.Parse(name+".yaml", byName[name])
		switch {
		case msg == "" && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case msg != "" && (err == nil || !strings.Contains(err.Error(), msg)):
			t.Errorf("%s: got %v, want an error containing %q", name, err, msg)
		}
	}
}

func measureParse(name string, data []byte) (time.Duration, uint64, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := config.Parse(name, data)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return took, after.TotalAlloc - before.TotalAlloc, err
}

// TestLoadRefusesSpecialFiles: a config path naming a device, a FIFO or a
// directory is refused at once (before: /dev/zero was read without end and
// a FIFO blocked the load until a writer came).
func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	link := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", "/dev/urandom", "/dev/null", fifo, link, dir} {
		done := make(chan error, 1)
		go func() { _, err := config.Load(path); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, config.ErrNotRegular) {
				t.Errorf("Load(%s) = %v, want ErrNotRegular", path, err)
			}
		case <-time.After(hostileTime * slowdown):
			// Unblock the goroutine stuck on the FIFO before failing.
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("Load(%s) still running after %v", path, hostileTime*slowdown)
		}
	}
}

// TestLoadCapsRead: a regular file larger than the limit is refused after
// reading at most one byte past the limit.
func TestLoadCapsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, make([]byte, 3<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil || !strings.Contains(err.Error(), "big.yaml:1:1: file is larger than 1048576 bytes") {
		t.Errorf("Load(3 MiB) = %v", err)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
