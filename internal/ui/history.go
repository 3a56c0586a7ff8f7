package ui

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/sqlite"
)

// DefaultKeep is how much history is kept: the hour an operator scrolls back
// through at 3 a.m. Older samples are deleted as new ones arrive.
const DefaultKeep = time.Hour

// History is the metrics history behind the dashboard's charts, in the
// embedded store's ui_history table (one row per series per sample, created
// by a migration in internal/sqlite). Samples are stored as taken and
// downsampled on read. Safe for concurrent use.
type History struct {
	db   *sqlite.DB
	keep time.Duration
}

// NewHistory returns the history kept in db for keep (0 means DefaultKeep).
func NewHistory(db *sqlite.DB, keep time.Duration) *History {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &History{db: db, keep: keep}
}

// Keep returns how far back the history reaches.
func (h *History) Keep() time.Duration { return h.keep }

// validSeries is what a series name looks like: "service/web/rps",
// "instance/web/0/rss_bytes". It keeps names safe in URLs and in LIKE.
var validSeries = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]{0,199}$`)

// Append stores one sample of every series at time at (second resolution)
// and deletes samples older than the history's reach, in one transaction.
// Non-finite values and invalid names are skipped.
func (h *History) Append(ctx context.Context, at time.Time, points map[string]float64) error {
	t := at.Unix()
	err := h.db.WithTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, "INSERT OR REPLACE INTO ui_history (series, t, value) VALUES (?, ?, ?)")
		if err != nil {
			return err
		}
		defer st.Close()
		for name, v := range points {
			if math.IsNaN(v) || math.IsInf(v, 0) || !validSeries.MatchString(name) {
				continue
			}
			if _, err := st.ExecContext(ctx, name, t, v); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM ui_history WHERE t < ?", at.Add(-h.keep).Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("ui: append %d history samples: %w", len(points), err)
	}
	return nil
}

// Point is one stored sample.
type Point struct {
	T int64 // Unix seconds
	V float64
}

// Query returns the samples in [since, until) of the named series and of
// every series whose name starts with prefix (when not ""), oldest first,
// at most maxSeries series (sorted by name).
func (h *History) Query(ctx context.Context, names []string, prefix string, since, until time.Time, maxSeries int) (map[string][]Point, error) {
	var where []string
	args := []any{since.Unix(), until.Unix()}
	if len(names) > 0 {
		where = append(where, "series IN ("+strings.TrimSuffix(strings.Repeat("?,", len(names)), ",")+")")
		for _, n := range names {
			args = append(args, n)
		}
	}
	if prefix != "" {
		where = append(where, "substr(series, 1, ?) = ?")
		args = append(args, len(prefix), prefix)
	}
	if len(where) == 0 {
		return map[string][]Point{}, nil
	}
	q := "SELECT series, t, value FROM ui_history WHERE t >= ? AND t < ? AND (" + strings.Join(where, " OR ") + ") ORDER BY series, t"
	rows, err := h.db.SQL().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ui: query history: %w", err)
	}
	defer rows.Close()
	out := map[string][]Point{}
	for rows.Next() {
		var name string
		var p Point
		if err := rows.Scan(&name, &p.T, &p.V); err != nil {
			return nil, fmt.Errorf("ui: query history: %w", err)
		}
		if _, ok := out[name]; !ok && len(out) >= maxSeries {
			continue
		}
		out[name] = append(out[name], p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ui: query history: %w", err)
	}
	return out, nil
}

// Downsample averages pts into n buckets of width step starting at from:
// bucket i covers [from + i·step, from + (i+1)·step). A bucket with no sample
// is nil (a gap in the chart, not a zero). pts must be sorted by time.
func Downsample(pts []Point, from time.Time, step time.Duration, n int) []*float64 {
	out := make([]*float64, n)
	if step <= 0 || n <= 0 {
		return out
	}
	start, width := from.Unix(), int64(step/time.Second)
	if width < 1 {
		width = 1
	}
	sum := make([]float64, n)
	count := make([]int, n)
	for _, p := range pts {
		if p.T < start {
			continue
		}
		i := int((p.T - start) / width)
		if i >= n {
			break
		}
		sum[i] += p.V
		count[i]++
	}
	for i := range out {
		if count[i] > 0 {
			v := sum[i] / float64(count[i])
			out[i] = &v
		}
	}
	return out
}

// seriesNames returns the keys of m, sorted.
func seriesNames(m map[string][]Point) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
