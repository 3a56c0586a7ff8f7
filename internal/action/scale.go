package action

import (
	"context"
	"fmt"
	"strconv"
)

// Scale changes a service's instance count by in.By or to in.To, clamped to
// the service's bounds (services.NAME.remedy.min_instances/max_instances).
// At the bound it changes nothing and says so (Output.Changed false), which
// ends a repeating scale runbook.
type Scale struct{ Deps }

// Do scales the service in.Target.
func (a Scale) Do(ctx context.Context, in Input) (Output, error) {
	if a.Supervisor == nil {
		return Output{}, fmt.Errorf("scale: %w: no supervisor", ErrUnsupported)
	}
	status := a.Supervisor.Status()
	svc, err := Service(in.Target, status)
	if err != nil {
		return Output{Summary: "refused: " + err.Error()}, fmt.Errorf("scale: %w", err)
	}
	cur := 0
	for _, s := range status {
		if s.Name == svc {
			cur = s.Desired
		}
	}
	lo, hi, ok := 1, cur, false
	if a.Bounds != nil {
		lo, hi, ok = a.Bounds(svc)
	}
	if !ok {
		lo, hi = cur, cur // no bounds known: never scale
	}
	want := cur + in.By
	if in.To > 0 {
		want = in.To
	}
	n := min(max(want, lo), hi)
	fields := map[string]string{"from": strconv.Itoa(cur), "to": strconv.Itoa(n), "wanted": strconv.Itoa(want),
		"min": strconv.Itoa(lo), "max": strconv.Itoa(hi)}
	if n == cur {
		return Output{Summary: fmt.Sprintf("%s stays at %d instances (wanted %d, bounds %d..%d)", svc, cur, want, lo, hi),
			Targets: []string{svc}, Fields: fields}, nil
	}
	if err := a.Supervisor.Scale(ctx, svc, n, in.Actor); err != nil {
		return Output{Summary: fmt.Sprintf("scale %s to %d failed", svc, n), Targets: []string{svc}, Fields: fields},
			fmt.Errorf("scale %s from %d to %d: %w", svc, cur, n, err)
	}
	return Output{Summary: fmt.Sprintf("scaled %s from %d to %d instances", svc, cur, n), Targets: []string{svc},
		Changed: true, Fields: fields}, nil
}
