package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MemberHealth is one member of the etcd cluster as a client sees it.
type MemberHealth struct {
	Name     string `json:"name"`
	ID       uint64 `json:"id"`
	Endpoint string `json:"endpoint"` // its first client URL
	// Healthy: the member answered a status request within the timeout,
	// with no error and a known leader.
	Healthy bool   `json:"healthy"`
	Leader  bool   `json:"leader,omitempty"` // it is the raft leader
	Err     string `json:"error,omitempty"`  // why it is not healthy
}

// Quorum is the members a cluster of n needs to write: a majority.
func Quorum(n int) int { return n/2 + 1 }

// Members lists the cluster's members (etcd's member list) and asks each,
// all at once, for its status within timeout. A member without a client URL
// (not started yet) is unhealthy.
func (c *Client) Members(ctx context.Context, timeout time.Duration) ([]MemberHealth, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	resp, err := c.cli.MemberList(lctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	out := make([]MemberHealth, len(resp.Members))
	done := make(chan struct{}, len(resp.Members))
	for i, m := range resp.Members {
		out[i] = MemberHealth{Name: m.Name, ID: m.ID}
		if len(m.ClientURLs) == 0 {
			out[i].Err = "no client URL (the member has not started)"
			done <- struct{}{}
			continue
		}
		out[i].Endpoint = m.ClientURLs[0]
		go func() {
			defer func() { done <- struct{}{} }()
			leader, err := c.MemberHealthy(ctx, out[i].Endpoint, timeout)
			out[i].Healthy, out[i].Leader = err == nil, err == nil && leader
			if err != nil {
				out[i].Err = err.Error()
			}
		}()
	}
	for range resp.Members {
		<-done
	}
	slices.SortFunc(out, func(a, b MemberHealth) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// MemberHealthy asks the member at endpoint for its status within timeout:
// nil when it answers without an error and knows a leader; leader is true
// when it is the leader.
func (c *Client) MemberHealthy(ctx context.Context, endpoint string, timeout time.Duration) (leader bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := c.cli.Status(sctx, endpoint)
	switch {
	case err != nil:
		return false, fmt.Errorf("status of %s: %w", endpoint, err)
	case len(st.Errors) > 0:
		return false, fmt.Errorf("status of %s: %s", endpoint, strings.Join(st.Errors, "; "))
	case st.Leader == 0:
		return false, errors.New("status of " + endpoint + ": no leader")
	}
	return st.Header != nil && st.Header.MemberId == st.Leader, nil
}
