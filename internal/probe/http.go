package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// maxBodyScan is how much of a response the body check reads (Kubernetes
// reads at most 10 KiB; medic's config documents 64 KiB).
const maxBodyScan = 64 << 10

// httpChecker GETs one URL and judges the status (and optionally the body).
type httpChecker struct {
	client *http.Client
	url    string
	host   string // Host header override, "" for the URL's host
	header http.Header
	lo, hi int
	body   []byte
}

func newHTTPChecker(c *config.HTTPProbe, t Target) (*httpChecker, error) {
	addr, err := address("http", c.Host, c.Port, t)
	if err != nil {
		return nil, err
	}
	scheme := strings.ToLower(c.Scheme)
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		return nil, fmt.Errorf("probe: http: scheme %q: want http or https", c.Scheme)
	}
	path := c.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + addr + path)
	if err != nil {
		return nil, fmt.Errorf("probe: http: parse url: %w", err)
	}
	lo, hi, err := ParseStatusRange(c.Status)
	if err != nil {
		return nil, fmt.Errorf("probe: http: %w", err)
	}
	h := &httpChecker{url: u.String(), header: http.Header{}, lo: lo, hi: hi, body: []byte(c.Body)}
	h.header.Set("User-Agent", UserAgent)
	h.header.Set("Accept", "*/*")
	for k, v := range c.Headers {
		if strings.EqualFold(k, "Host") {
			h.host = v
			continue
		}
		h.header.Set(k, v)
	}
	h.client = &http.Client{
		Transport: &http.Transport{
			// A probe opens a fresh connection every time, as kubelet's does:
			// through a pooled connection a server whose accept loop hung
			// would still look alive.
			DisableKeepAlives: true,
			// Never send a probe of a local instance through HTTP_PROXY.
			Proxy:       nil,
			DialContext: (&net.Dialer{}).DialContext,
			// Like kubelet, https probes check that TLS is served, not who serves it:
			// instances commonly use self-signed certificates on loopback.
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
			TLSHandshakeTimeout: 0, // the context bounds the whole check
		},
		// A redirect is judged by its own status (3xx passes by default);
		// following it could probe another server.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return h, nil
}

// Check GETs the URL once.
func (h *httpChecker) Check(ctx context.Context) Outcome {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return Fail(fmt.Sprintf("build request: %v", err))
	}
	req.Header = h.header.Clone()
	if h.host != "" {
		req.Host = h.host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ended(ctx, start)
		}
		if o, ok := own(err); ok {
			return o
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the `Get "http://…":` prefix: the probe config already names the URL
		}
		return Fail(err.Error())
	}
	defer resp.Body.Close()
	status := "HTTP " + strconv.Itoa(resp.StatusCode)
	if resp.StatusCode < h.lo || resp.StatusCode > h.hi {
		return Fail(status)
	}
	if len(h.body) == 0 {
		return Pass(status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyScan))
	if err != nil {
		if ctx.Err() != nil {
			return ended(ctx, start)
		}
		return Fail(fmt.Sprintf("%s: read body: %v", status, err))
	}
	if !bytes.Contains(b, h.body) {
		return Fail(fmt.Sprintf("%s: body does not contain %q", status, clip(string(h.body), 64)))
	}
	return Pass(status)
}

// ParseStatusRange parses an accepted-status range "LO-HI" (or a single code).
// The empty string means 200-399, Kubernetes' rule.
func ParseStatusRange(s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 200, 399, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("status range %q: want LO-HI with 100 <= LO <= HI <= 599, e.g. 200-399", s)
	}
	return lo, hi, nil
}
