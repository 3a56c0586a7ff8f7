// Package cron parses the schedules of scheduled drills: the five fields of
// crontab(5) — minute, hour, day of month, month, day of week — with *, a-b,
// steps (*/15, 1-30/2) and lists, plus @hourly, @daily, @weekly, @monthly and
// @every DURATION. It is pure: Next takes the time to start from.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule answers when a cron expression next fires.
type Schedule struct {
	expr string
	// every > 0: fire every this long, counted from the time passed to Next.
	every                         time.Duration
	minute, hour, dom, month, dow uint64 // bit i set: value i allowed
	domStar, dowStar              bool
}

// String returns the expression as parsed.
func (s Schedule) String() string { return s.expr }

var macros = map[string]string{
	"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
	"@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}

// Parse reads a cron expression. @every takes a Go duration of at least one
// second ("@every 6h").
func Parse(expr string) (Schedule, error) {
	s := Schedule{expr: strings.TrimSpace(expr)}
	src := s.expr
	if rest, ok := strings.CutPrefix(src, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second {
			return Schedule{}, fmt.Errorf("cron %q: @every wants a duration of at least 1s, such as 6h", expr)
		}
		s.every = d
		return s, nil
	}
	if m, ok := macros[src]; ok {
		src = m
	}
	f := strings.Fields(src)
	if len(f) != 5 {
		return Schedule{}, fmt.Errorf("cron %q: want 5 fields (minute hour day-of-month month day-of-week) or @daily, @every 1h …", expr)
	}
	var err error
	fields := []struct {
		name   string
		lo, hi int
		dst    *uint64
	}{{"minute", 0, 59, &s.minute}, {"hour", 0, 23, &s.hour}, {"day of month", 1, 31, &s.dom}, {"month", 1, 12, &s.month}, {"day of week", 0, 7, &s.dow}}
	for i, fd := range fields {
		if *fd.dst, err = parseField(f[i], fd.lo, fd.hi); err != nil {
			return Schedule{}, fmt.Errorf("cron %q: %s: %w", expr, fd.name, err)
		}
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	s.domStar, s.dowStar = f[2] == "*", f[4] == "*"
	return s, nil
}

func parseField(f string, lo, hi int) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(f, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q: want a number ≥ 1", stepStr)
			}
			step = n
		}
		a, b := lo, hi
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			x, y, _ := strings.Cut(rng, "-")
			var err1, err2 error
			a, err1 = strconv.Atoi(x)
			b, err2 = strconv.Atoi(y)
			if err1 != nil || err2 != nil || a > b {
				return 0, fmt.Errorf("range %q: want LO-HI", rng)
			}
		default:
			n, err := strconv.Atoi(rng)
			if err != nil {
				return 0, fmt.Errorf("%q: want a number, a range, * or a step", rng)
			}
			a = n
			if !hasStep {
				b = n
			}
		}
		if a < lo || b > hi {
			return 0, fmt.Errorf("%q: out of range %d-%d", part, lo, hi)
		}
		for v := a; v <= b; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

func has(bits uint64, v int) bool { return bits&(1<<v) != 0 }

// dayOK applies crontab's rule: when both day fields are restricted, either
// may match.
func (s Schedule) dayOK(t time.Time) bool {
	d, w := has(s.dom, t.Day()), has(s.dow, int(t.Weekday()))
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return w
	case s.dowStar:
		return d
	}
	return d || w
}

// Next returns the first firing time strictly after t, in t's location, or
// the zero time when the expression never fires (such as 0 0 30 2 *).
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Add(s.every)
	}
	loc := t.Location()
	c := t.Truncate(time.Minute).Add(time.Minute)
	for range 5 * 366 * 24 * 60 / 10 { // bounded: each turn skips at least a minute, usually far more
		switch {
		case !has(s.month, int(c.Month())):
			c = time.Date(c.Year(), c.Month()+1, 1, 0, 0, 0, 0, loc)
		case !s.dayOK(c):
			c = time.Date(c.Year(), c.Month(), c.Day()+1, 0, 0, 0, 0, loc)
		case !has(s.hour, c.Hour()):
			c = time.Date(c.Year(), c.Month(), c.Day(), c.Hour()+1, 0, 0, 0, loc)
		case !has(s.minute, c.Minute()):
			c = c.Add(time.Minute)
		default:
			return c
		}
		if c.Year() > t.Year()+5 {
			break
		}
	}
	return time.Time{}
}
