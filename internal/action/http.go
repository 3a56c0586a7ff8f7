package action

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// HTTP makes one request and fails unless the status is in in.Status
// (default 200-299). Redirects are not followed: a 3xx is a status like any
// other. The first 4 KiB of the response body are kept.
type HTTP struct {
	// Client sends the request; nil uses a client without redirects.
	Client *http.Client
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Do sends the request within in.Timeout (and ctx).
func (a HTTP) Do(ctx context.Context, in Input) (Output, error) {
	lo, hi, err := statusRange(in.Status)
	if err != nil {
		return Output{}, fmt.Errorf("http: %w", err)
	}
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.Timeout)
		defer cancel()
	}
	method := in.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, in.URL, strings.NewReader(in.Body))
	if err != nil {
		return Output{}, fmt.Errorf("http %s %s: %w", method, in.URL, err)
	}
	req.Header.Set("User-Agent", "medic")
	if in.Incident != "" {
		req.Header.Set("X-Medic-Incident", in.Incident)
	}
	for k, v := range in.Headers {
		req.Header.Set(k, v)
	}
	client := a.Client
	if client == nil {
		client = noRedirects
	}
	resp, err := client.Do(req)
	if err != nil {
		return Output{Summary: method + " " + in.URL + " failed"}, fmt.Errorf("http %s %s: %w", method, in.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	out := Output{Detail: string(body), Changed: true, Targets: []string{in.URL},
		Fields:  map[string]string{"status": strconv.Itoa(resp.StatusCode)},
		Summary: fmt.Sprintf("%s %s: %d", method, in.URL, resp.StatusCode)}
	if resp.StatusCode < lo || resp.StatusCode > hi {
		return out, fmt.Errorf("http %s %s: status %d, want %d-%d", method, in.URL, resp.StatusCode, lo, hi)
	}
	return out, nil
}

// statusRange parses "200-299" or "204"; "" is 200-299.
func statusRange(s string) (int, int, error) {
	if s == "" {
		return 200, 299, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("invalid status range %q: want LO-HI or one code within 100-599", s)
	}
	return lo, hi, nil
}
