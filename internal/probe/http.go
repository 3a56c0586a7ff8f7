package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// maxBodyScan is how much of a response the body check reads (Kubernetes
// reads at most 10 KiB; medic's config documents 64 KiB).
const maxBodyScan = 64 << 10

// httpChecker GETs one URL and judges the status (and optionally the body).
type httpChecker struct {
	client *http.Client
	// Plain http probes skip net/http's client: the request is built once
	// (raw) and each check dials addr, writes it and reads one response on
	// the probe's own goroutine. net/http's Transport starts a read and a
	// write goroutine for every connection, and a probe opens one per check:
	// with 100 probes a second that was most of the agent's CPU.
	raw  []byte
	addr string
	// keepAlive: plain http checks reuse one connection (keepRaw, sent
	// without Connection: close) while the instance keeps it open. Only set
	// by Set for a readiness probe whose instance also has an http liveness
	// probe to the same address: that one dials afresh every time, so a hung
	// accept loop is still found (docs/design.md, "Probes").
	keepAlive bool
	keepRaw   []byte
	idleMu    sync.Mutex
	idle      net.Conn      // kept open between checks, nil when none
	idleBr    *bufio.Reader // its reader (may hold nothing: one request at a time)
	dialer    net.Dialer
	url       string
	host      string // Host header override, "" for the URL's host
	header    http.Header
	lo, hi    int
	body      []byte
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
	if scheme == "http" {
		// Plain http is written and read on the socket (checkRaw, checkKept):
		// no net/http client (a Transport and a TLS config, about 1 KB per
		// probe, 150 KB for 50 instances × three probes).
		h.addr = addr
		h.raw = rawProbeRequest(u, h.host, h.header, true)
		h.keepRaw = rawProbeRequest(u, h.host, h.header, false)
		return h, nil
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

// rawProbeRequest is the GET a plain http probe sends, with Connection:
// close (a fresh connection per check, as kubelet's probes) unless the
// checker keeps its connection.
func rawProbeRequest(u *url.URL, host string, header http.Header, close bool) []byte {
	if host == "" {
		host = u.Host
	}
	var b bytes.Buffer
	b.WriteString("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host + "\r\n")
	_ = header.Write(&b)
	if close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// reuseConnection makes c, when it is a plain http checker, keep its
// connection between checks; it reports whether it did.
func reuseConnection(c Checker) bool {
	h, ok := c.(*httpChecker)
	if !ok || h.raw == nil {
		return false
	}
	h.keepAlive = true
	return true
}

// sameHTTPAddress reports whether a and b are plain http checkers of one address.
func sameHTTPAddress(a, b Checker) bool {
	ha, ok1 := a.(*httpChecker)
	hb, ok2 := b.(*httpChecker)
	return ok1 && ok2 && ha.raw != nil && hb.raw != nil && ha.addr == hb.addr
}

// closeIdle closes the connection a keep-alive checker kept, if any.
func (h *httpChecker) closeIdle() {
	h.idleMu.Lock()
	c := h.idle
	h.idle, h.idleBr = nil, nil
	h.idleMu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// probeReaders recycle the response readers of plain http probes.
var probeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// Check GETs the URL once.
func (h *httpChecker) Check(ctx context.Context) Outcome {
	if h.keepAlive {
		return h.checkKept(ctx)
	}
	if h.raw != nil {
		return h.checkRaw(ctx)
	}
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
	return h.judge(ctx, start, resp)
}

// checkRaw is Check for plain http: one connection, one request, one response.
func (h *httpChecker) checkRaw(ctx context.Context) Outcome {
	start := time.Now()
	conn, err := h.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return h.failed(ctx, start, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(h.raw); err != nil {
		return h.failed(ctx, start, err)
	}
	br := probeReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() { br.Reset(nil); probeReaders.Put(br) }()
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return h.failed(ctx, start, err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			defer resp.Body.Close()
			return h.judge(ctx, start, resp)
		}
		// 1xx interim answers are skipped, as net/http's client does.
	}
}

// checkKept is checkRaw on a kept connection: the one the previous check
// left open if there is one, else a fresh one. A kept connection that fails
// before any byte of a response arrived (the instance closed it while idle)
// is replaced by a fresh one once, as net/http retries an idempotent request;
// any other failure counts, and the connection is dropped.
func (h *httpChecker) checkKept(ctx context.Context) Outcome {
	start := time.Now()
	h.idleMu.Lock()
	conn, br := h.idle, h.idleBr
	h.idle, h.idleBr = nil, nil
	h.idleMu.Unlock()
	if conn != nil {
		o, keep, retry := h.exchange(ctx, start, conn, br)
		if !retry || ctx.Err() != nil {
			h.keepOrClose(conn, br, keep)
			return o
		}
		_ = conn.Close()
	}
	conn, err := h.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return h.failed(ctx, start, err)
	}
	br = bufio.NewReaderSize(conn, 4<<10)
	o, keep, _ := h.exchange(ctx, start, conn, br)
	h.keepOrClose(conn, br, keep)
	return o
}

// keepOrClose keeps conn for the next check or closes it.
func (h *httpChecker) keepOrClose(conn net.Conn, br *bufio.Reader, keep bool) {
	if !keep {
		_ = conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	h.idleMu.Lock()
	old := h.idle
	h.idle, h.idleBr = conn, br
	h.idleMu.Unlock()
	if old != nil { // checks overlapped (they do not on a Set): keep one
		_ = old.Close()
	}
}

// exchange sends one request on conn and judges its response. keep says the
// connection may serve the next check; retry that it failed before any byte
// of a response arrived, so a fresh connection may try again.
func (h *httpChecker) exchange(ctx context.Context, start time.Time, conn net.Conn, br *bufio.Reader) (o Outcome, keep, retry bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(h.keepRaw); err != nil {
		return h.failed(ctx, start, err), false, true
	}
	for {
		if _, err := br.Peek(1); err != nil {
			return h.failed(ctx, start, err), false, ctx.Err() == nil && !errors.Is(err, os.ErrDeadlineExceeded)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return h.failed(ctx, start, err), false, false
		}
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // 1xx interim answers are skipped, as net/http's client does
		}
		o = h.judge(ctx, start, resp)
		// The connection serves the next check only if this response was
		// read to its end and the instance did not ask to close.
		keep = !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols && ctx.Err() == nil
		if keep {
			n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyScan))
			keep = err == nil && n < maxBodyScan
		}
		if !keep {
			_ = conn.Close() // before the body's Close, which would read what is left
		}
		resp.Body.Close()
		return o, keep, false
	}
}

// failed is the outcome of a check that got no response.
func (h *httpChecker) failed(ctx context.Context, start time.Time, err error) Outcome {
	// The socket carries ctx's deadline, and may report it a moment before
	// ctx does: that is the probe's timeout, not the instance's error.
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return ended(ctx, start)
	}
	if o, ok := own(err); ok {
		return o
	}
	return Fail(err.Error())
}

// judge applies the status range and the body check to a response.
func (h *httpChecker) judge(ctx context.Context, start time.Time, resp *http.Response) Outcome {
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
