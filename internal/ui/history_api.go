package ui

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/api"
)

// HistoryDoc is the body of GET /v1/history: every series on the same time
// axis, ready for a chart. Times are the buckets' starts in Unix seconds; a
// value is the mean of the samples in its bucket, or null when there were none.
type HistoryDoc struct {
	From   int64                 `json:"from"`
	Step   int64                 `json:"step"` // seconds
	Times  []int64               `json:"times"`
	Series map[string][]*float64 `json:"series"`
}

// History query limits: enough points for a wide chart, enough series for
// every instance of a large service.
const (
	defaultPoints = 120
	maxPoints     = 720
	maxSeries     = 2000
)

// history serves GET /v1/history?series=A,B&prefix=P&range=1h&points=120.
// series (repeatable, comma-separated) names series exactly; prefix selects
// every series whose name starts with it; range (default and maximum: the
// history's reach) ends now, rounded up to a bucket boundary so that polls
// see stable buckets.
func (u *UI) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var names []string
	for _, v := range q["series"] {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n == "" {
				continue
			}
			if !validSeries.MatchString(n) {
				api.WriteError(w, http.StatusBadRequest, "series %q: want letters, digits and ._/:- only", n)
				return
			}
			names = append(names, n)
		}
	}
	prefix := q.Get("prefix")
	if prefix != "" && !validSeries.MatchString(prefix) {
		api.WriteError(w, http.StatusBadRequest, "prefix %q: want letters, digits and ._/:- only", prefix)
		return
	}
	if len(names) == 0 && prefix == "" {
		api.WriteError(w, http.StatusBadRequest, "name series (series=service/web/rps) or a prefix (prefix=instance/web/)")
		return
	}
	if len(names) > maxSeries {
		api.WriteError(w, http.StatusBadRequest, "at most %d series per query", maxSeries)
		return
	}
	span := u.opts.History.Keep()
	if v := q.Get("range"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			api.WriteError(w, http.StatusBadRequest, "range %q: want a duration of at least 1m, such as 15m or 1h", v)
			return
		}
		span = min(d, span)
	}
	points := defaultPoints
	if v := q.Get("points"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > maxPoints {
			api.WriteError(w, http.StatusBadRequest, "points %q: want a number from 2 to %d", v, maxPoints)
			return
		}
		points = n
	}
	step := max(span/time.Duration(points), time.Second).Truncate(time.Second)
	end := u.clock.Now().Truncate(step).Add(step)
	from := end.Add(-step * time.Duration(points))
	got, err := u.opts.History.Query(r.Context(), names, prefix, from, end, maxSeries)
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	doc := HistoryDoc{From: from.Unix(), Step: int64(step / time.Second), Times: make([]int64, points), Series: map[string][]*float64{}}
	for i := range doc.Times {
		doc.Times[i] = from.Unix() + int64(i)*doc.Step
	}
	for _, name := range seriesNames(got) {
		doc.Series[name] = Downsample(got[name], from, step, points)
	}
	api.WriteJSON(w, http.StatusOK, doc)
}
