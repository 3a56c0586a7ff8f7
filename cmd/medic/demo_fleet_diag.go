package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/app"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/placement"
)

// Bounds of the diagnosis `medic demo --fleet` prints when the fleet is not
// placed (or not restored) in time.
const (
	// diagAuditRecords: the newest audit records read from each host.
	diagAuditRecords = 5000
	// diagEvents: the events listed per host; beyond it the first
	// diagEventsHead and the last diagEvents-diagEventsHead, and a count by
	// kind of those left out.
	diagEvents     = 150
	diagEventsHead = 30
	// diagWarnings: the distinct warning messages listed per log (the most
	// frequent).
	diagWarnings = 12
	// diagLine: the longest line printed (a longer one is cut).
	diagLine = 300
)

// diagnoseFleet says, for a fleet demo that did not reach what it waited
// for, where each host stands: its membership view (/v1/fleet/hosts), its
// instances of web (/v1/status), its fleet.*, service.scaled and instance.*
// events with their times since the demo started (its audit log), and its
// log's warnings and errors grouped by message; then the assignment of web
// in etcd and each etcd member's health and warnings. What cannot be read
// is said in its place.
func diagnoseFleet(ctx context.Context, t0 time.Time, agents []*demoFleetAgent, etcdLogs, etcdClients []string) string {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var b strings.Builder
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%+.2fs", t.Sub(t0).Seconds())
	}
	fmt.Fprintf(&b, "diagnosis at %s (times are since the demo started, %s)\n", rel(time.Now()), t0.UTC().Format(time.RFC3339Nano))
	var coord *fleet.Status // the view of the host that coordinates in its own view
	ready := map[string]int{}
	for _, a := range agents {
		fmt.Fprintf(&b, "\n== %s (api %s, log %s)\n", a.name, a.api, a.proc.log)
		if a.proc.exited() {
			fmt.Fprintf(&b, "agent exited (%v); its log's end:\n%s\n", a.proc.cmd.ProcessState, tailFile(a.proc.log, 1500))
		}
		var hs fleet.Status
		if err := getJSON(ctx, "http://"+a.api+"/v1/fleet/hosts", &hs); err != nil {
			fmt.Fprintf(&b, "view: %v\n", err)
		} else {
			b.WriteString(describeView(hs, rel))
			if app.PlacementView(hs, hs.Joined).Coordinator && coord == nil {
				coord = &hs
			}
		}
		var st api.StatusDoc
		if err := getJSON(ctx, "http://"+a.api+"/v1/status", &st); err != nil {
			fmt.Fprintf(&b, "web: %v\n", err)
		} else {
			for _, s := range st.Services {
				if s.Name != "web" {
					continue
				}
				ready[a.name] = s.Ready
				fmt.Fprintf(&b, "web: %d ready of %d desired", s.Ready, s.Desired)
				if s.Rollout != "" {
					fmt.Fprintf(&b, "; rollout: %s", s.Rollout)
				}
				b.WriteString("\n")
				for _, in := range s.Instances {
					fmt.Fprintf(&b, "  %s %s ready=%v since %s restarts %d %s\n", in.ID, in.State, in.Ready, rel(in.Since), in.Restarts, in.Reason)
				}
			}
		}
		var recs struct {
			Records []audit.Record `json:"records"`
		}
		if err := getJSON(ctx, "http://"+a.api+"/v1/audit?limit="+strconv.Itoa(diagAuditRecords), &recs); err != nil {
			// The log has them too, without their fields.
			fmt.Fprintf(&b, "audit: %v; the events from the log instead\n", err)
			recs.Records = eventsFromLog(a.proc.log)
		}
		b.WriteString(describeEvents(recs.Records, rel))
		b.WriteString(describeWarnings(a.proc.log, "log", t0))
	}
	b.WriteString("\n== etcd\n")
	rec, ok, err := readPlacement(ctx, etcdClients)
	switch {
	case err != nil:
		fmt.Fprintf(&b, "assignment of web: %v\n", err)
	case !ok:
		b.WriteString("assignment of web: none written\n")
	default:
		fmt.Fprintf(&b, "assignment of web: %s, written by %s at %s: %s\n", rec.Assign, rec.By, rel(rec.At), rec.Why)
	}
	if coord == nil {
		b.WriteString("placement: no host coordinates in its own view (joined, watching, first up host by name)\n")
	} else if err == nil {
		// What the coordinator decides now, with the ready counts read
		// above (it counts those its peers published: they may lag).
		hosts := app.PlacementView(*coord, coord.Joined).Hosts
		st := placement.Next(placement.Spec{Instances: 6}, hosts, rec.Assign, ready)
		fmt.Fprintf(&b, "placement: %s coordinates; its next step with ready %v: %s\n", coord.Self, placement.Assignment(ready), st.Why)
	}
	for i, c := range etcdClients {
		fmt.Fprintf(&b, "member %s: healthy %v\n", c, etcdHealthy(ctx, "http://"+c))
		if i < len(etcdLogs) {
			b.WriteString(describeWarnings(etcdLogs[i], "log "+etcdLogs[i], t0))
		}
	}
	return b.String()
}

// describeView is one host's membership view, a line per host it knows.
func describeView(hs fleet.Status, rel func(time.Time) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "view: joined %v, lease %x, safe until %s, watching %v, storm brake %v, coordinates %v\n",
		hs.Joined, hs.Lease, rel(hs.SafeUntil), hs.Watching, hs.StormBrake, app.PlacementView(hs, hs.Joined).Coordinator)
	ms := slices.Clone(hs.Hosts)
	slices.SortFunc(ms, func(x, y fleet.Member) int { return strings.Compare(x.Host, y.Host) })
	for _, m := range ms {
		fmt.Fprintf(&b, "  %s %s since %s, lease %x, joined %s", m.Host, m.State, rel(m.Since), m.Lease, rel(m.Started))
		if !m.GoneAt.IsZero() {
			fmt.Fprintf(&b, ", gone at %s", rel(m.GoneAt))
		}
		b.WriteString("\n")
	}
	if len(ms) == 0 {
		b.WriteString("  no host\n")
	}
	return b.String()
}

// diagKind: the events the diagnosis lists.
func diagKind(kind string) bool {
	return strings.HasPrefix(kind, "fleet.") || kind == "service.scaled" || strings.HasPrefix(kind, "instance.")
}

// describeEvents lists the fleet.*, service.scaled and instance.* records,
// at most diagEvents of them (the first diagEventsHead and the last ones;
// those left out counted by kind).
func describeEvents(recs []audit.Record, rel func(time.Time) string) string {
	var sel []audit.Record
	for _, r := range recs {
		if diagKind(r.Kind) {
			sel = append(sel, r)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "events (fleet.*, service.scaled, instance.*): %d\n", len(sel))
	line := func(r audit.Record) {
		s := fmt.Sprintf("  %9s %-22s %-10s %s", rel(r.Time), r.Kind, r.Target, r.Reason)
		for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
			s += fmt.Sprintf(" %s=%s", k, r.Fields[k])
		}
		b.WriteString(cut(s) + "\n")
	}
	if len(sel) <= diagEvents {
		for _, r := range sel {
			line(r)
		}
		return b.String()
	}
	tail := diagEvents - diagEventsHead
	for _, r := range sel[:diagEventsHead] {
		line(r)
	}
	left := map[string]int{}
	for _, r := range sel[diagEventsHead : len(sel)-tail] {
		left[r.Kind]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(left)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, left[k]))
	}
	fmt.Fprintf(&b, "  … %d left out: %s\n", len(sel)-diagEvents, strings.Join(parts, ", "))
	for _, r := range sel[len(sel)-tail:] {
		line(r)
	}
	return b.String()
}

// eventsFromLog reads the events of medic's text log (the lines with a
// kind=): time, kind, target and message.
func eventsFromLog(path string) []audit.Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ln := sc.Text()
		kind := logField(ln, "kind")
		if kind == "" {
			continue
		}
		at, _ := time.Parse(time.RFC3339Nano, logField(ln, "time"))
		out = append(out, audit.Record{Time: at, Kind: kind, Target: logField(ln, "target"), Reason: logField(ln, "msg")})
	}
	return out
}

// logField is the value of key in a slog text line ("" when absent),
// unquoted.
func logField(ln, key string) string {
	rest := ""
	if v, ok := strings.CutPrefix(ln, key+"="); ok {
		rest = v
	} else if _, v, ok := strings.Cut(ln, " "+key+"="); ok {
		rest = v
	} else {
		return ""
	}
	if strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			v, _ := strconv.Unquote(q)
			return v
		}
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// describeWarnings groups the warnings and errors of a log file by message:
// how many, the first and last time, and the last line. It reads medic's
// text lines (level=WARN msg=...) and etcd's JSON lines ("level":"warn").
func describeWarnings(path, what string, t0 time.Time) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("%s: %v\n", what, err)
	}
	defer f.Close()
	type group struct {
		n           int
		first, last time.Time
		line        string
	}
	groups := map[string]*group{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		ln := sc.Text()
		msg, at, ok := warning(ln)
		if !ok {
			continue
		}
		g := groups[msg]
		if g == nil {
			g = &group{first: at}
			groups[msg] = g
		}
		g.n++
		g.last, g.line = at, ln
	}
	if err := sc.Err(); err != nil {
		return fmt.Sprintf("%s: %v\n", what, err)
	}
	if len(groups) == 0 {
		return what + ": no warning\n"
	}
	msgs := slices.SortedFunc(maps.Keys(groups), func(x, y string) int {
		if d := groups[y].n - groups[x].n; d != 0 {
			return d
		}
		return strings.Compare(x, y)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d distinct warnings or errors\n", what, len(msgs))
	for i, m := range msgs {
		if i == diagWarnings {
			fmt.Fprintf(&b, "  … %d more messages\n", len(msgs)-diagWarnings)
			break
		}
		g := groups[m]
		fmt.Fprintf(&b, "  ×%d %+.2fs..%+.2fs %s\n", g.n, g.first.Sub(t0).Seconds(), g.last.Sub(t0).Seconds(), cut(m))
		fmt.Fprintf(&b, "      last: %s\n", cut(g.line))
	}
	return b.String()
}

// warning parses a log line: its message and time when it is a warning or
// an error (medic's slog text, or etcd's zap JSON).
func warning(ln string) (msg string, at time.Time, ok bool) {
	if strings.HasPrefix(ln, "{") {
		var z struct {
			Level, TS, Msg string
		}
		if json.Unmarshal([]byte(ln), &z) != nil || (z.Level != "warn" && z.Level != "error" && z.Level != "fatal" && z.Level != "panic") {
			return "", time.Time{}, false
		}
		at, _ = time.Parse(time.RFC3339Nano, z.TS)
		return z.Msg, at, true
	}
	if lv := logField(ln, "level"); lv != "WARN" && lv != "ERROR" {
		return "", time.Time{}, false
	}
	at, _ = time.Parse(time.RFC3339Nano, logField(ln, "time"))
	return logField(ln, "msg"), at, true
}

// readPlacement reads web's assignment from etcd.
func readPlacement(ctx context.Context, clients []string) (placement.Record, bool, error) {
	var rec placement.Record
	cli, err := etcd.Dial(etcd.Config{Endpoints: clients})
	if err != nil {
		return rec, false, err
	}
	defer cli.Close()
	key := placement.Key(config.DefaultEtcdPrefix, "demo", "web")
	gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	kv, ok, err := cli.Get(gctx, key)
	if err != nil || !ok {
		return rec, ok, err
	}
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return rec, false, fmt.Errorf("%s: %w", key, err)
	}
	return rec, true, nil
}

func cut(s string) string {
	if len(s) > diagLine {
		return s[:diagLine] + "…"
	}
	return s
}
