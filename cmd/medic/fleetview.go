package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/fleetview"
	"github.com/medic-dev/medic/internal/safetext"
)

// The fleet's one view (docs/fleet.md): the local agent answers from the
// summaries every host publishes in etcd.

func printFleetStatus(w io.Writer, cl *client, asJSON bool) error {
	var st fleetview.Status
	if err := cl.getJSON("GET", "/v1/fleet/status", 10*time.Second, &st); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	note := ""
	if !st.Watching {
		note = " (this agent has not read the fleet from etcd yet: the list is incomplete)"
	}
	fmt.Fprintf(w, "fleet %s, seen from %s%s\n", safetext.Line(st.Fleet), safetext.Line(st.Self), note)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tSERVICE\tREADY/DESIRED\tRUNNING\tAUDIT HEAD\tSUMMARY AGE")
	for _, h := range st.Hosts {
		name := safetext.Line(h.Host)
		if h.Self {
			name += " (this host)"
		}
		if h.Summary == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tnone\n", name, h.State)
			continue
		}
		head := fmt.Sprintf("%d", h.Summary.Audit.Seq)
		age := (time.Duration(h.AgeSeconds*1e3) * time.Millisecond).Round(100 * time.Millisecond).String()
		if len(h.Summary.Services) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t%s\t%s\n", name, h.State, head, age)
		}
		for i, s := range h.Summary.Services {
			svc := safetext.Line(s.Name)
			if s.Fleet {
				svc += " (fleet)"
			}
			if i > 0 {
				name, head, age = "", "", ""
			}
			state := h.State.String()
			if i > 0 {
				state = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", name, state, svc, s.Ready, s.Desired, s.Running, head, age)
		}
	}
	return tw.Flush()
}

func printFleetEvents(w io.Writer, cl *client, asJSON bool) error {
	var doc struct {
		Fleet    string                `json:"fleet"`
		Watching bool                  `json:"watching"`
		Events   []fleetview.HostEvent `json:"events"`
	}
	if err := cl.getJSON("GET", "/v1/fleet/events", 10*time.Second, &doc); err != nil {
		return err
	}
	for _, e := range doc.Events {
		if asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintln(w, string(b))
			continue
		}
		fmt.Fprintf(w, "%s  %-8s %-18s %-10s %s\n", e.Time.Local().Format("15:04:05.000"), safetext.Line(e.Host),
			safetext.Line(e.Kind), safetext.Line(e.Target), safetext.Line(e.Reason))
	}
	if !doc.Watching {
		fmt.Fprintln(os.Stderr, "this agent has not read the fleet from etcd yet: the list is incomplete")
	}
	return nil
}

// fleetCard prints the fleet's scorecard; it reports whether every answer is yes.
func fleetCard(w io.Writer, cl *client, asJSON bool) (bool, error) {
	var c fleetview.Card
	if err := cl.getJSON("GET", "/v1/fleet/scorecard", 30*time.Second, &c); err != nil {
		return false, err
	}
	all := c.No == 0 && c.Unknown == 0 && c.Yes > 0
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return all, enc.Encode(c)
	}
	fmt.Fprintf(w, "fleet scorecard: %d yes, %d no, %d unknown (yes only when every host that is not lost answers yes)\n", c.Yes, c.No, c.Unknown)
	if len(c.Excluded) > 0 {
		fmt.Fprintf(w, "not asked (lost): %s\n", safetext.Line(strings.Join(c.Excluded, ", ")))
	}
	for _, it := range c.Items {
		fmt.Fprintf(w, "\n%-8s %s\n", strings.ToUpper(it.Answer), it.ID)
		for _, h := range it.Hosts {
			fmt.Fprintf(w, "  %-10s %-8s %s\n", safetext.Line(h.Host), h.Answer, safetext.Line(h.Why))
		}
	}
	return all, nil
}

// verifyFleet checks every host's audit log, read over its own API with
// this client's token, against the heads it anchored in etcd. It prints one
// line per host and returns errReported when a host's log was rewritten or
// could not be checked.
func verifyFleet(w io.Writer, cl *client) error {
	var doc struct {
		Fleet   string                      `json:"fleet"`
		Self    string                      `json:"self"`
		Anchors map[string]fleetview.Anchor `json:"anchors"`
		Hosts   []fleet.Member              `json:"hosts"`
	}
	if err := cl.getJSON("GET", "/v1/fleet/audit/anchors", 15*time.Second, &doc); err != nil {
		return err
	}
	names := map[string]bool{}
	for h := range doc.Anchors {
		names[h] = true
	}
	for _, m := range doc.Hosts {
		names[m.Host] = true
	}
	bad := 0
	for _, host := range slices.Sorted(func(yield func(string) bool) {
		for h := range names {
			if !yield(h) {
				return
			}
		}
	}) {
		a, ok := doc.Anchors[host]
		if !ok {
			bad++
			fmt.Fprintf(w, "%-10s NOT VERIFIED: no audit head anchored in etcd (an agent older than the anchoring, or it never appended)\n", safetext.Line(host))
			continue
		}
		n, err := verifyHost(cl, a)
		switch {
		case errors.Is(err, fleetview.ErrRewritten):
			bad++
			fmt.Fprintf(w, "%-10s REWRITTEN: %s\n", safetext.Line(host), safetext.Line(err.Error()))
		case err != nil:
			bad++
			fmt.Fprintf(w, "%-10s NOT VERIFIED: %s\n", safetext.Line(host), safetext.Line(err.Error()))
		default:
			fmt.Fprintf(w, "%-10s ok: %d records verified, record %d matches the head anchored in etcd at %s\n", safetext.Line(host), n,
				a.Newest().Seq, a.At.Local().Format(time.RFC3339))
		}
	}
	if bad > 0 {
		fmt.Fprintf(w, "fleet %s: %d of %d hosts failed the check\n", safetext.Line(doc.Fleet), bad, len(names))
		return errReported
	}
	fmt.Fprintf(w, "fleet %s: every host's audit log extends its anchored head (%d hosts)\n", safetext.Line(doc.Fleet), len(names))
	return nil
}

// verifyHost reads a's host's chain (the links of its records, no content)
// from the first record up to its newest anchored head, PageRecords at a
// time, and checks it. It sends no token: the peer's address comes from
// etcd, and whoever can write etcd must not collect the operator's token;
// the links are served unauthenticated and rate limited (a 429 is waited
// out, at most 30 times).
func verifyHost(cl *client, a fleetview.Anchor) (int, error) {
	if a.API == "" {
		return 0, fmt.Errorf("its API listens on loopback only, so its records cannot be read from here (its newest anchored head is record %d)", a.Newest().Seq)
	}
	peer := &client{base: strings.TrimRight(a.API, "/"), http: cl.http, where: a.API}
	c := fleetview.NewChecker(a)
	var after int64
	deadline := time.Now().Add(5 * time.Minute)
	throttled := 0
	for after < c.Want() {
		if time.Now().After(deadline) {
			return c.Records(), fmt.Errorf("reading its records took more than 5m (at record %d of %d)", after, c.Want())
		}
		var page struct {
			Links []fleetview.Link `json:"links"`
		}
		path := fmt.Sprintf("/v1/fleet/audit/chain?after=%d&limit=%d", after, fleetview.PageRecords)
		if err := peer.getJSON("GET", path, time.Minute, &page); err != nil {
			if strings.Contains(err.Error(), "(HTTP 429)") && throttled < 30 {
				throttled++
				time.Sleep(time.Second) // the peer's Retry-After
				continue
			}
			return c.Records(), err
		}
		if len(page.Links) == 0 {
			break
		}
		for _, r := range page.Links {
			if r.Seq > c.Want() {
				return c.Records(), nil
			}
			if err := c.AddLink(r); err != nil {
				return c.Records(), err
			}
			after = r.Seq
		}
	}
	return c.Records(), c.Done()
}
