package flags

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/medic-dev/medic/internal/action"
)

// Action is the set_flag runbook action: the step's target names the
// service, flag the flag and value the value ("true" or "false"), e.g.
// "degrade recommendations when the recommender's breaker opens".
type Action struct{ Store *Store }

var _ action.Action = Action{}

// Do sets the flag; setting it to the value it has is not a change.
func (a Action) Do(_ context.Context, in action.Input) (action.Output, error) {
	service, _, _ := strings.Cut(in.Target, "/")
	v, err := strconv.ParseBool(in.FlagValue)
	if err != nil {
		return action.Output{Summary: "refused: bad value"}, fmt.Errorf("set_flag %s: value %q: want true or false", in.Flag, in.FlagValue)
	}
	changed, err := a.Store.Set(service, in.Flag, v, in.Actor, in.Reason)
	if err != nil {
		return action.Output{Summary: "refused: " + err.Error()}, err
	}
	out := action.Output{Changed: changed, Targets: []string{service + "/" + in.Flag},
		Fields: map[string]string{"flag": in.Flag, "value": strconv.FormatBool(v)}}
	if changed {
		out.Summary = fmt.Sprintf("flag %s/%s set to %v", service, in.Flag, v)
	} else {
		out.Summary = fmt.Sprintf("flag %s/%s already %v", service, in.Flag, v)
	}
	return out, nil
}
