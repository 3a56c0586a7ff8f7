package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// TLSConfig builds the client TLS settings for Config.TLS from PEM files:
// ca is the bundle that verifies etcd's server certificate ("" means the
// system roots), cert and key are the client certificate for etcd's
// --client-cert-auth (both or neither), and serverName, when set, is the name
// the server certificate must carry instead of the endpoint's host. There is
// deliberately no way to skip verification.
//
// Every file is read and checked here, so that a wrong path or a key that
// does not match its certificate is reported at start-up, naming the file.
// The client certificate is then read again at every handshake (etcd's
// transport.TLSInfo does so), so a renewed certificate is used by the next
// connection without a restart; the CA bundle is read only here.
func TLSConfig(ca, cert, key, serverName string) (*tls.Config, error) {
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("etcd tls: a client certificate needs both cert and key (cert %q, key %q)", cert, key)
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("etcd tls: read CA bundle: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd tls: CA bundle %s holds no PEM certificate", ca)
		}
	}
	if cert != "" {
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("etcd tls: load client certificate %s with key %s: %w", cert, key, err)
		}
	}
	info := transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca, ServerName: serverName}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd tls: build client config: %w", err)
	}
	return cfg, nil
}

// checkSchemes reports whether the client will use TLS (withTLS, or every
// endpoint is https://). It refuses endpoints whose security the etcd client
// would get wrong without a word: it drops the credentials of an http://
// endpoint (plaintext even though TLS is configured), and it picks one
// security for every endpoint from the first, so that without TLS settings a
// mix of https:// and plain endpoints talks to some of them the wrong way.
func checkSchemes(endpoints []string, withTLS bool) (bool, error) {
	secure := 0
	for _, ep := range endpoints {
		scheme, _, ok := strings.Cut(ep, "://")
		switch scheme = strings.ToLower(scheme); {
		case ok && scheme == "http" && withTLS:
			return false, fmt.Errorf("etcd: endpoint %s is plaintext http:// but TLS is configured: write https://host:port or host:port", ep)
		case ok && scheme == "https":
			secure++
		}
	}
	if !withTLS && secure > 0 && secure < len(endpoints) {
		return false, fmt.Errorf("etcd: endpoints %v mix https:// and plaintext: use https:// for all of them, or TLS settings", endpoints)
	}
	return withTLS || secure > 0, nil
}

// checkTLS makes one TLS connection to every endpoint at once, within
// timeout, so that a certificate either side rejects is reported by Dial,
// naming the endpoint and the reason. Through the etcd client the reason is
// lost: its requests wait for a usable connection and end with nothing but
// "context deadline exceeded". It returns nil as soon as one endpoint
// accepts the client (a cluster with one misconfigured member still works),
// and nil when none can be reached at all (etcd may be down while medic
// starts; the client keeps trying).
func checkTLS(endpoints []string, cfg *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	accepted := make([]bool, len(endpoints))
	refused := make([]error, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() { accepted[i], refused[i] = probeTLS(ctx, ep, cfg) })
	}
	wg.Wait()
	var first error
	for i, err := range refused {
		if accepted[i] {
			return nil
		}
		if err != nil && first == nil {
			first = fmt.Errorf("etcd: TLS with %s: %w", endpoints[i], err)
		}
	}
	return first
}

// http2Hello is the HTTP/2 client preface and an empty SETTINGS frame, to
// which etcd's gRPC server answers at once with its own SETTINGS.
const http2Hello = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// probeTLS connects to ep and reports whether it accepted the client (ok), or
// the error of the TLS layer that refused it. Both are zero when ep is not
// reachable or does not answer in time: that is not a TLS problem.
//
// With TLS 1.3 a server refuses a client certificate only after the client
// has finished its handshake, so the probe also speaks: it sends the
// HTTP/2 preface and waits for the server's first bytes or its alert.
func probeTLS(ctx context.Context, ep string, base *tls.Config) (ok bool, refused error) {
	addr := ep
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		addr = u.Host
	}
	cfg := base.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	cfg.NextProtos = []string{"h2"}
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, nil
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		return false, tlsRefusal(err)
	}
	if _, err := conn.Write([]byte(http2Hello)); err != nil {
		return false, tlsRefusal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return false, tlsRefusal(err)
	}
	return true, nil
}

// tlsRefusal returns err when it is the TLS layer refusing the connection
// (a certificate not trusted or not for this name, an alert from the server
// such as "certificate required", a server that does not speak TLS), else nil.
func tlsRefusal(err error) error {
	var (
		verify *tls.CertificateVerificationError
		record tls.RecordHeaderError
		op     *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &record):
		return err
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert from the peer this way.
		return err
	}
	return nil
}
