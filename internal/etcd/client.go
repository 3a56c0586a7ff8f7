// Package etcd is medic's thin layer over go.etcd.io/etcd/client/v3 and its
// concurrency package: a client with short reconnects, a Session whose lease
// has an explicit TTL and is renewed by its owner (so the owner knows, from
// the time each renewal was sent, the earliest moment the lease can expire),
// an Election whose creation revision is the fencing token of every write a
// leader makes, and a watched snapshot of a key prefix.
//
// medic never runs an election of its own: who leads is decided by etcd's
// compare-and-swap on the election keys (concurrency.Election).
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrLeaseExpired: the session's lease is gone (expired or revoked); keys bound to it are deleted.
	ErrLeaseExpired = errors.New("etcd: lease expired")
	// ErrNotLeader: the caller's election key is gone or was replaced (the fence held).
	ErrNotLeader = errors.New("etcd: not leader")
	// ErrNoLeader: nobody holds the election.
	ErrNoLeader = errors.New("etcd: no leader")
	// ErrExists: Create found the key already present.
	ErrExists = errors.New("etcd: key exists")
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are host:port, http://host:port or https://host:port.
	// Required. With TLS set, host:port means TLS too and http:// is refused;
	// without it, https:// endpoints are verified against the system roots,
	// and https:// and plaintext endpoints may not be mixed.
	Endpoints []string
	// DialTimeout bounds connecting to one endpoint; 0 means 2s.
	DialTimeout time.Duration
	// Username and Password for etcd authentication; empty means none.
	Username, Password string
	// TLS, if set, secures every connection (see TLSConfig, which builds it
	// from PEM files; a client certificate in it answers etcd's
	// --client-cert-auth). Its ServerName, if set, is the name every
	// endpoint's certificate must carry instead of the endpoint's host. nil
	// means plaintext unless the endpoints are https://, which are then
	// verified against the system roots.
	TLS *tls.Config
	// Cut, if set, carries every connection to etcd, so that a drill can
	// cut this client off (Cut.Cut) and restore it.
	Cut *Cut
}

// Client is a connection to an etcd cluster, safe for concurrent use.
type Client struct {
	cli *clientv3.Client
}

// Dial makes a client. It does not wait for a connection: the first request
// does, within its context. A lost connection is retried at most 1s apart
// (gRPC's default backoff grows to 2 minutes, too slow for a failover).
//
// Over TLS, Dial first makes one TLS connection to each endpoint, all at once
// within DialTimeout, and fails when none accepts the client and one refused
// it for a TLS reason (an unknown CA, a certificate for another name, a
// client certificate missing or refused), naming the endpoint and the reason.
// An etcd that cannot be reached is no error: the client keeps trying.
func Dial(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	secure, err := checkSchemes(cfg.Endpoints, cfg.TLS != nil)
	if err != nil {
		return nil, err
	}
	dt := cfg.DialTimeout
	if dt <= 0 {
		dt = 2 * time.Second
	}
	opts := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: dt,
	})}
	if cfg.Cut != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Cut.dial))
	}
	if secure {
		probe := cfg.TLS
		if probe == nil {
			probe = &tls.Config{} // https:// endpoints: the system roots
		}
		if err := checkTLS(cfg.Endpoints, probe, dt); err != nil {
			return nil, err
		}
	}
	if cfg.TLS != nil && cfg.TLS.ServerName != "" {
		// gRPC ignores tls.Config.ServerName: it verifies the certificate
		// against the authority, which is the endpoint's host unless set.
		opts = append(opts, grpc.WithAuthority(cfg.TLS.ServerName))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          dt,
		DialKeepAliveTime:    5 * time.Second, // etcd's default --grpc-keepalive-min-time is 5s
		DialKeepAliveTimeout: 2 * time.Second,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		Logger:               zap.NewNop(),
		DialOptions:          opts,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %v: %w", cfg.Endpoints, err)
	}
	return &Client{cli: cli}, nil
}

// Close ends the client's connections and every watch made through it.
func (c *Client) Close() error { return c.cli.Close() }

// Raw is the underlying client, for what this package does not wrap.
func (c *Client) Raw() *clientv3.Client { return c.cli }

// KV is one key's value with its revisions.
type KV struct {
	Value     []byte
	CreateRev int64 // revision that created the key (the fencing token of an election key)
	ModRev    int64 // revision of the last write
	Lease     int64 // lease the key is bound to; 0 for none
}

// Get reads key; ok is false when it does not exist.
func (c *Client) Get(ctx context.Context, key string) (kv KV, ok bool, err error) {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return KV{}, false, fmt.Errorf("etcd: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, false, nil
	}
	k := resp.Kvs[0]
	return KV{Value: k.Value, CreateRev: k.CreateRevision, ModRev: k.ModRevision, Lease: k.Lease}, true, nil
}

// Put writes key without a lease.
func (c *Client) Put(ctx context.Context, key, value string) error {
	if _, err := c.cli.Put(ctx, key, value); err != nil {
		return fmt.Errorf("etcd: put %s: %w", key, err)
	}
	return nil
}

// Create writes key only if it does not exist, bound to lease (0: none). It
// returns ErrExists when the key is present.
func (c *Client) Create(ctx context.Context, key, value string, lease int64) error {
	var opts []clientv3.OpOption
	if lease != 0 {
		opts = append(opts, clientv3.WithLease(clientv3.LeaseID(lease)))
	}
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, opts...)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd: create %s: %w", key, ErrExists)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	if _, err := c.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("etcd: delete %s: %w", key, err)
	}
	return nil
}

// DeletePrefix deletes every key under prefix.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) error {
	if _, err := c.cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: delete prefix %s: %w", prefix, err)
	}
	return nil
}

// DeleteIfRev removes key only if its last write is still modRev, so that a
// request read earlier is not confused with a newer one. A missing or
// rewritten key is not an error: there is nothing of ours to delete.
func (c *Client) DeleteIfRev(ctx context.Context, key string, modRev int64) error {
	_, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: delete %s at revision %d: %w", key, modRev, err)
	}
	return nil
}

// TimeToLive returns how long lease has left, as etcd sees it now;
// ErrLeaseExpired when it is gone.
func (c *Client) TimeToLive(ctx context.Context, lease int64) (time.Duration, error) {
	resp, err := c.cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, fmt.Errorf("etcd: lease %x: %w", lease, ErrLeaseExpired)
		}
		return 0, fmt.Errorf("etcd: time to live of lease %x: %w", lease, err)
	}
	if resp.TTL <= 0 {
		return 0, fmt.Errorf("etcd: lease %x: %w", lease, ErrLeaseExpired)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}

// Revoke revokes lease id, deleting every key bound to it; a lease already
// gone is not an error.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	if _, err := c.cli.Revoke(ctx, clientv3.LeaseID(id)); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: revoke lease %x: %w", id, err)
	}
	return nil
}
