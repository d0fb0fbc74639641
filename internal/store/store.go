// Package store keeps the state that instances behind a load balancer must share (the DPoP
// proofs already used, cached introspection answers and exchanged tokens) in a Redis or
// Valkey server: standalone, Sentinel or Cluster. It knows nothing of Caddy.
//
// The client is github.com/redis/go-redis/v9 rather than valkey-go. Each request makes at
// most one call (a DPoP proof is one SET NX PX), never a batch, so valkey-go's automatic
// pipelining would only pay at call rates far above what one instance checking proof
// signatures reaches; its client-side caching does not help either: proof keys are written
// once and never read back, and token answers are already cached in process in front of the
// store. go-redis speaks RESP2 (so a minimal ACL needs no HELLO and works through proxies
// that do not speak RESP3), covers the three topologies behind one UniversalClient, is
// maintained by Redis with a long release history, is the client Caddy's own Redis storage
// module uses, and adds little to the build (xxhash is already in Caddy's graph; it brings
// zeebo/xxh3 and go.uber.org/atomic).
//
// The interfaces are small: Replay claims a key once (SET NX PX), Sealed gets and sets
// values sealed with AES-256-GCM under a key derived from the operator's secret, by
// (namespace, SHA-256 key). Every call is bounded by Options.Timeout; the client tracks
// whether the server answers (Up), logs each transition once, and reconnects by itself.
package store

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultTimeout   = 100 * time.Millisecond
	DefaultKeyPrefix = "mcp_auth:"
	// probeEvery is how often a store marked down is pinged until it answers again.
	probeEvery = time.Second
)

// Options configure a Client. A zero field takes its default.
type Options struct {
	// Addrs: one address for a standalone server (or, with MasterName, Sentinels); several
	// for a Cluster's seeds (or Sentinels).
	Addrs []string
	// MasterName names the Sentinel master set; empty for standalone and Cluster.
	MasterName string
	// Cluster forces Cluster mode with a single seed address.
	Cluster  bool
	Username string
	Password string
	DB       int
	TLS      *tls.Config
	// KeyPrefix starts every key. Default "mcp_auth:".
	KeyPrefix string
	// Timeout bounds every call. Default 100ms.
	Timeout time.Duration
	// Logger returns the logger to write health transitions to (the one of the config
	// running now: a client outlives the config that created it).
	Logger func() *zap.Logger
	// Observe, when set, is told of every call: its operation ("claim", "get", "set",
	// "ping"), its outcome (CallOutcome: telemetry.OK for a success or a miss) and how long it
	// took. A call the caller gave up on is not told: it says nothing about the store.
	Observe func(op, outcome string, took time.Duration)
	// OnHealth, when set, is told of every transition: false when the store stops
	// answering, true when it answers again.
	OnHealth func(up bool)
}

// Client is a connection to one store, safe for concurrent use.
type Client struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	logger  func() *zap.Logger
	observe func(op, outcome string, took time.Duration)
	health  func(bool)

	// ctx is the client's own, cancelled by Close: the prober outlives any one request.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	down    atomic.Bool
	probing atomic.Bool
}

// ErrUnavailable wraps every failure to reach the store or get an answer in time.
var ErrUnavailable = errors.New("store unavailable")

// errUnexpectedReply is an answer to a command that Redis never gives to it.
var errUnexpectedReply = errors.New("unexpected reply")

// New makes a client. It does not connect: the first call does, and a store that is down at
// start is reported by the first call that needs it.
func New(o Options) (*Client, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("store: no address")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop
	}
	dial := max(o.Timeout, time.Second)
	var dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	if o.TLS != nil {
		dialer = tlsDialer(o.TLS, dial)
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Dialer:        dialer,
		Addrs:         o.Addrs,
		MasterName:    o.MasterName,
		IsClusterMode: o.Cluster,
		Username:      o.Username,
		Password:      o.Password,
		DB:            o.DB,
		// RESP2 and no CLIENT SETINFO: the commands on the wire are AUTH, SELECT, PING, SET
		// and GET, which a minimal ACL allows (docs/fleet.md), and the HELLO 2 go-redis opens
		// every connection with, which such an ACL refuses and go-redis then goes on without.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              dial,
		// One dial per call: go-redis's retries wait 100ms between attempts, longer than a
		// call may last; the prober reconnects a store that was down.
		DialerRetries:         1,
		ReadTimeout:           o.Timeout,
		WriteTimeout:          o.Timeout,
		ContextTimeoutEnabled: true,
		// Never retried: a SET NX that reached the server before its answer was lost would,
		// retried, read as "seen" and refuse a fresh proof.
		MaxRetries: -1,
	})
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		rdb: rdb, prefix: o.KeyPrefix, timeout: o.Timeout, logger: o.Logger,
		observe: o.Observe, health: o.OnHealth, ctx: ctx, cancel: cancel,
	}, nil
}

// tlsDialer connects over TLS, checking each server's certificate against the host it dials
// (go-redis's own TLS would check every node of a Cluster or Sentinel set against one name).
func tlsDialer(conf *tls.Config, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 5 * time.Minute}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := conf.Clone()
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				raw.Close()
				return nil, err
			}
			c.ServerName = host
		}
		tc := tls.Client(raw, c)
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			raw.Close()
			return nil, err
		}
		return tc, nil
	}
}

// Close stops the prober and closes the connections.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return c.rdb.Close()
}

// Up reports whether the last call reached the store.
func (c *Client) Up() bool { return !c.down.Load() }

// Prefix is the key prefix.
func (c *Client) Prefix() string { return c.prefix }

// Ping asks the store once, within the timeout.
func (c *Client) Ping(ctx context.Context) error {
	cctx, span := c.span(ctx, "ping")
	cctx, cancel := context.WithTimeout(cctx, c.timeout)
	defer cancel()
	start := time.Now()
	err := c.rdb.Ping(cctx).Err()
	return c.done(ctx, span, "ping", start, err)
}

// Outcome is the answer to a claim.
type Outcome int

// Claim outcomes.
const (
	// Fresh: the key was not there; it is now, until its TTL.
	Fresh Outcome = iota
	// Seen: the key was there already.
	Seen
)

// Replay claims keys once, across every instance that shares the store.
type Replay interface {
	ClaimProof(ctx context.Context, jkt, jti string, ttl time.Duration) (Outcome, error)
}

// ProofKey is the key of a DPoP proof: the prefix and the lowercase hex SHA-256 of the
// proof key's RFC 7638 thumbprint (base64url), a 0x00 byte and the jti. The jti is
// hashed, never stored: it is the client's and may carry anything.
func (c *Client) ProofKey(jkt, jti string) string {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [sha256.Size]byte
	return c.prefix + hex.EncodeToString(h.Sum(sum[:0]))
}

// ClaimProof records a DPoP proof as used, for ttl, with one atomic SET NX PX (RFC 9449
// §11.1 asks that a proof be accepted once; behind a load balancer "once" spans every
// instance). Seen means another request, on any instance, used it first.
func (c *Client) ClaimProof(ctx context.Context, jkt, jti string, ttl time.Duration) (Outcome, error) {
	return c.Claim(ctx, c.ProofKey(jkt, jti), ttl)
}

// Claim sets key (already prefixed) if it is absent, expiring after ttl (at least 1ms).
func (c *Client) Claim(ctx context.Context, key string, ttl time.Duration) (Outcome, error) {
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	cctx, span := c.span(ctx, "claim")
	cctx, cancel := context.WithTimeout(cctx, c.timeout)
	defer cancel()
	start := time.Now()
	v, err := c.rdb.Do(cctx, "SET", key, "1", "PX", ms, "NX").Result()
	if errors.Is(err, redis.Nil) {
		// NX refused: the key exists.
		return Seen, c.done(ctx, span, "claim", start, nil)
	}
	if s, _ := v.(string); err == nil && s != "OK" {
		// Only OK says the key was set by this call. Anything else (an integer, QUEUED, an
		// empty array: a proxy or server that does not run SET NX as Redis does) proves
		// nothing, and a proof must not pass on it: fail as a store that cannot answer.
		err = errUnexpectedReply
	}
	if err := c.done(ctx, span, "claim", start, err); err != nil {
		return Fresh, err
	}
	return Fresh, nil
}

// get reads a raw value; ok is false on a miss.
func (c *Client) get(ctx context.Context, key string) ([]byte, bool, error) {
	cctx, span := c.span(ctx, "get")
	cctx, cancel := context.WithTimeout(cctx, c.timeout)
	defer cancel()
	start := time.Now()
	v, err := c.rdb.Get(cctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, c.done(ctx, span, "get", start, nil)
	}
	if err := c.done(ctx, span, "get", start, err); err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// set writes a raw value with a TTL (at least 1ms).
func (c *Client) set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	cctx, span := c.span(ctx, "set")
	cctx, cancel := context.WithTimeout(cctx, c.timeout)
	defer cancel()
	start := time.Now()
	err := c.rdb.Do(cctx, "SET", key, val, "PX", ms).Err()
	return c.done(ctx, span, "set", start, err)
}

// span starts the child span of a call (telemetry.SpanStore) when ctx's span records, with
// the operation: never the key or the value.
func (c *Client) span(ctx context.Context, op string) (context.Context, telemetry.Span) {
	ctx, span := telemetry.StartSpan(ctx, telemetry.SpanStore)
	if span.Recording() {
		span.SetAttributes(opKey.String(op))
	}
	return ctx, span
}

// opKey is the attribute of a store span holding the operation.
const opKey = attribute.Key("mcp_auth.store.operation")

// done records a call: span, metrics, health, and the error the caller sees (wrapping
// ErrUnavailable; the error text holds addresses and causes, never keys or values).
func (c *Client) done(ctx context.Context, span telemetry.Span, op string, start time.Time, err error) error {
	if err != nil && ctx.Err() != nil {
		// The caller gave up (the client went away, the server shuts down): that says
		// nothing about the store.
		span.End(telemetry.Canceled)
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}
	outcome := CallOutcome(err)
	span.End(outcome)
	if c.observe != nil {
		c.observe(op, outcome, time.Since(start))
	}
	if err == nil {
		c.markUp()
		return nil
	}
	// Every failure counts as down, also an error the server answered (a refused password
	// or ACL, a read-only replica, LOADING): the store cannot serve us, and the operator
	// must hear of it once.
	c.markDown(err)
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}

func (c *Client) markUp() {
	if c.down.CompareAndSwap(true, false) {
		c.logger().Info("store reachable again", zap.Strings("addresses", c.addrs()))
		if c.health != nil {
			c.health(true)
		}
	}
}

func (c *Client) markDown(err error) {
	if c.down.CompareAndSwap(false, true) {
		c.logger().Error("store unreachable", zap.Strings("addresses", c.addrs()), zap.Error(err))
		if c.health != nil {
			c.health(false)
		}
	}
	if c.probing.CompareAndSwap(false, true) {
		c.wg.Add(1)
		go c.probe()
	}
}

// probe pings a store marked down until it answers, so that health comes back (and is
// logged) even when no request needs the store meanwhile. It ends with the client.
func (c *Client) probe() {
	defer c.wg.Done()
	defer c.probing.Store(false)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for c.down.Load() {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		_ = c.Ping(c.ctx)
	}
}

// CallOutcome classifies the error of a call as telemetry's outcomes: nil (a success, a miss, a
// claim refused because the key exists) is OK; an error the server answered is Refused for
// authentication and ACLs (NOAUTH, WRONGPASS, NOPERM: our credentials) and ServerError
// otherwise (LOADING, READONLY, CLUSTERDOWN, ...); a connection that failed or a call cut
// at the timeout, or closed under the call (EOF), is Unreachable; no free connection in the
// pool within the timeout is Busy (no call made).
func CallOutcome(err error) string {
	switch {
	case err == nil:
		return telemetry.OK
	case errors.Is(err, redis.ErrPoolTimeout):
		return telemetry.Busy
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return telemetry.Unreachable
	case errors.Is(err, errUnexpectedReply):
		return telemetry.ServerError
	}
	var re redis.Error
	if errors.As(err, &re) && !errors.Is(err, redis.Nil) {
		msg := re.Error()
		for _, p := range []string{"NOAUTH", "WRONGPASS", "NOPERM"} {
			if strings.HasPrefix(msg, p) {
				return telemetry.Refused
			}
		}
		return telemetry.ServerError
	}
	return telemetry.Outcome(err)
}

func (c *Client) addrs() []string {
	switch r := c.rdb.(type) {
	case *redis.Client:
		return []string{r.Options().Addr}
	case *redis.ClusterClient:
		return r.Options().Addrs
	}
	return nil
}
