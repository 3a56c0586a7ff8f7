package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock/clocktest"
)

// TestDenialsAggregated: 1 000 unauthenticated requests from one client
// add one record at once and one with the count when the window ends;
// 5 000 from 500 addresses add at most 2×(DenialSources+1) records. Before,
// each denial was one fsynced record (≈ 390 records/s from one client).
func TestDenialsAggregated(t *testing.T) {
	f := newFixture(t)
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f.srv.Clock = clk
	denied := func() []audit.Record {
		recs, err := f.log.List(context.Background(), audit.Filter{Kind: string(medic.EventAPIDenied)})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	for range 1000 {
		if w := f.do("GET", "/v1/status", "", ""); w.Code != 401 {
			t.Fatalf("HTTP %d", w.Code)
		}
		clk.Advance(10 * time.Millisecond)
	}
	if recs := denied(); len(recs) != 1 || recs[0].Target != "GET /v1/status" {
		t.Fatalf("records after 1000 denials in the window: %d %+v", len(recs), recs)
	}
	clk.Advance(api.DenialWindow)
	f.do("GET", "/v1/status", "", "") // the next denial closes the window (so does the flush loop)
	recs := denied()
	if len(recs) != 3 {
		t.Fatalf("records after the window: %d, want 3 (first, summary, the next window's first)", len(recs))
	}
	sum := recs[1]
	if !strings.Contains(sum.Reason, "999 more requests denied from 192.0.2.1") ||
		!strings.Contains(sum.Reason, "missing bearer token") {
		t.Fatalf("summary record = %+v", sum)
	}

	// Many sources: bounded by DenialSources per window.
	clk.Advance(2 * api.DenialWindow)
	before := len(denied())
	for i := range 5000 {
		req := f.request("GET", "/v1/status", "", "")
		req.RemoteAddr = fmt.Sprintf("10.0.%d.%d:1234", i%500/250, i%250)
		f.serve(req)
	}
	clk.Advance(api.DenialWindow)
	f.do("GET", "/v1/status", "", "")
	if n := len(denied()) - before; n > 2*(api.DenialSources+1)+1 {
		t.Fatalf("5000 denials from 500 sources added %d records, want at most %d", n, 2*(api.DenialSources+1)+1)
	}
}
