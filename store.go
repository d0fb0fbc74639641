package mcpauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/store"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Shared state across instances: the Caddy side of internal/store. Provision takes the
// client from storePool, Cleanup gives it back; checkBinding claims each DPoP proof there.

// Values of on_error.
const (
	storeOnErrorClosed = "closed"
	storeOnErrorOpen   = "open"
)

// storeOpenWarnEvery rate-limits the warning of on_error open: every DPoP request while the
// store is down would log it.
const storeOpenWarnEvery = time.Minute

// StoreConfig is the `store` group: state shared by every instance behind a load balancer
// (the DPoP proofs already used, and with encryption_key the introspection answers), in
// Redis or Valkey.
type StoreConfig struct {
	// Redis is a Redis or Valkey server: standalone, Sentinel or Cluster.
	//
	// JSON: `redis`. Caddyfile: `store redis { ... }`.
	Redis *RedisStore `json:"redis,omitempty"`

	client  *store.Client
	sealed  *store.Sealed
	poolKey string
	closed  bool // on_error closed
	// lastOpenWarn is when on_error open last warned (unix nanoseconds).
	lastOpenWarn atomic.Int64
	logger       *zap.Logger
}

// RedisStore configures the connection to Redis or Valkey.
type RedisStore struct {
	// Addresses are host:port of a standalone server, of Sentinels (with master_name), or
	// seeds of a Cluster (several addresses).
	//
	// JSON: `addresses`. Caddyfile: `address`.
	Addresses []string `json:"addresses,omitempty"`

	// MasterName is the Sentinel master set name; the addresses are then Sentinels.
	//
	// JSON: `master_name`. Caddyfile: `master_name`.
	MasterName string `json:"master_name,omitempty"`

	// Username is the ACL user (Redis 6 and later).
	//
	// JSON: `username`. Caddyfile: `username`.
	Username string `json:"username,omitempty"`

	// Password authenticates the user. Write `{env.NAME}` or `{file.PATH}`; never logged.
	//
	// JSON: `password`. Caddyfile: `password`.
	Password string `json:"password,omitempty"`

	// TLS connects over TLS, verifying the server with the system roots or with CA.
	//
	// JSON: `tls`. Caddyfile: `tls [ca <file>]`.
	TLS *StoreTLS `json:"tls,omitempty"`

	// DB is the database number (standalone and Sentinel only).
	//
	// JSON: `db`. Caddyfile: `db`.
	DB int `json:"db,omitempty"`

	// KeyPrefix starts every key this module writes. Default "mcp_auth:".
	//
	// JSON: `key_prefix`. Caddyfile: `key_prefix`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Timeout bounds every call to the store. Default 100ms.
	//
	// JSON: `timeout`. Caddyfile: `timeout`.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// OnError is what a request that needs the store gets while it is down: `closed`
	// (default) answers 503 with Retry-After; `open` falls back to this instance's caches.
	//
	// JSON: `on_error`. Caddyfile: `on_error`.
	OnError string `json:"on_error,omitempty"`

	// EncryptionKey, at least 32 bytes, seals what is cached in the store (introspection
	// answers). Without it only DPoP proofs are shared. Write `{env.NAME}`; never logged.
	//
	// JSON: `encryption_key`. Caddyfile: `encryption_key`.
	EncryptionKey string `json:"encryption_key,omitempty"`
}

// StoreTLS is the TLS of the store connection.
type StoreTLS struct {
	// CA is a PEM file of the certificate authorities that sign the server's certificate;
	// empty: the system roots.
	//
	// JSON: `ca`. Caddyfile: `tls ca <file>`.
	CA string `json:"ca,omitempty"`
}

// storePool holds one client per connection config, shared by every handler and kept
// across reloads while any config uses it: a reload does not reconnect.
var storePool = caddy.NewUsagePool()

type pooledStore struct{ *store.Client }

func (p pooledStore) Destruct() error { return p.Close() }

// Provision expands the secrets, checks the group, and takes the client from the pool.
func (s *StoreConfig) Provision(ctx caddy.Context, h *Handler) error {
	if s.Redis == nil {
		return errors.New("store: no backend; write `store redis { ... }`")
	}
	r := s.Redis
	repl := caddy.NewReplacer()
	for i := range r.Addresses {
		v, err := expandAtLoad(repl, "store address", r.Addresses[i])
		if err != nil {
			return err
		}
		r.Addresses[i] = v
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"username", &r.Username}, {"master_name", &r.MasterName}, {"key_prefix", &r.KeyPrefix}} {
		v, err := expandAtLoad(repl, "store "+f.name, *f.v)
		if err != nil {
			return err
		}
		*f.v = v
	}
	if r.TLS != nil {
		v, err := expandAtLoad(repl, "store tls ca", r.TLS.CA)
		if err != nil {
			return err
		}
		r.TLS.CA = v
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"password", &r.Password}, {"encryption_key", &r.EncryptionKey}} {
		if *f.v == "" {
			continue
		}
		// The error never repeats the value: it may be the secret itself.
		out := repl.ReplaceKnown(*f.v, "")
		if len(placeholders(out)) > 0 || out == "" {
			return fmt.Errorf("store %s: a placeholder in it has no value when the config loads, "+
				"or it expands to nothing (is the environment variable set?)", f.name)
		}
		*f.v = out
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = store.DefaultKeyPrefix
	}
	if r.Timeout == 0 {
		r.Timeout = caddy.Duration(store.DefaultTimeout)
	}
	if r.OnError == "" {
		r.OnError = storeOnErrorClosed
	}
	if err := s.Validate(); err != nil {
		return err
	}
	s.closed = r.OnError == storeOnErrorClosed
	s.logger = ctx.Logger().Named("store")

	var tlsConf *tls.Config
	if r.TLS != nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if r.TLS.CA != "" {
			pem, err := os.ReadFile(r.TLS.CA)
			if err != nil {
				return fmt.Errorf("store tls ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("store tls ca %s: no PEM certificate in it", r.TLS.CA)
			}
			tlsConf.RootCAs = pool
		}
	}
	if err := initStoreMetrics(ctx); err != nil {
		return fmt.Errorf("registering store metrics: %w", err)
	}

	// The pool key is every setting of the connection; secrets enter it hashed.
	pw := sha256.Sum256([]byte(r.Password))
	s.poolKey = strings.Join([]string{"redis", strings.Join(r.Addresses, ","), r.MasterName, r.Username,
		hex.EncodeToString(pw[:]), strconv.Itoa(r.DB), fmt.Sprint(r.TLS != nil), caCA(r.TLS),
		r.KeyPrefix, time.Duration(r.Timeout).String()}, "|")
	v, _, err := storePool.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		c, err := store.New(store.Options{
			Addrs: r.Addresses, MasterName: r.MasterName, Username: r.Username, Password: r.Password,
			DB: r.DB, TLS: tlsConf, KeyPrefix: r.KeyPrefix, Timeout: time.Duration(r.Timeout),
			Logger: storeLogger, Observe: observeStore,
		})
		if err != nil {
			return nil, err
		}
		return pooledStore{c}, nil
	})
	if err != nil {
		s.poolKey = ""
		return fmt.Errorf("store: %w", err)
	}
	s.client = v.(pooledStore).Client
	if r.EncryptionKey != "" {
		if s.sealed, err = s.client.Sealed([]byte(r.EncryptionKey)); err != nil {
			return fmt.Errorf("store encryption_key: %w", err)
		}
	}
	if h.DPoP == nil && (s.sealed == nil || h.Introspection == nil && h.TokenExchange == nil) {
		s.logger.Warn("store is configured but nothing uses it: it holds DPoP proofs (dpop) and, with encryption_key, introspection answers and exchanged tokens",
			zap.String("resource", h.Resource))
	}
	s.logger.Info("shared store on", zap.String("resource", h.Resource),
		zap.Strings("addresses", r.Addresses), zap.String("key_prefix", r.KeyPrefix),
		zap.String("on_error", r.OnError), zap.Bool("dpop_replay", h.DPoP != nil),
		zap.Bool("introspection_cache", s.sealed != nil && h.Introspection != nil),
		zap.Bool("exchange_cache", s.sealed != nil && h.TokenExchange != nil))
	return nil
}

func caCA(t *StoreTLS) string {
	if t == nil {
		return ""
	}
	return t.CA
}

// Validate checks the group. It is fast and has no side effects.
func (s *StoreConfig) Validate() error {
	r := s.Redis
	if r == nil {
		return errors.New("store: no backend; write `store redis { ... }`")
	}
	if len(r.Addresses) == 0 {
		return fmt.Errorf("store address: %w", errRequired)
	}
	for i, a := range r.Addresses {
		if strings.Contains(a, "{") {
			continue // a placeholder, expanded and checked at Provision
		}
		// Only host:port: the addresses are logged (at load, and when the store stops
		// answering), and a URL such as redis://user:password@host:6379 (as REDIS_URL often
		// holds) would put its password there. The error does not repeat the value.
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" ||
			strings.ContainsAny(a, "@/ \t\r\n") {
			return fmt.Errorf("store address %d of %d: not host:port (write a URL's host and port here, "+
				"and its user and password in username and password)", i+1, len(r.Addresses))
		}
	}
	switch r.OnError {
	case "", storeOnErrorClosed, storeOnErrorOpen:
	default:
		return fmt.Errorf("store on_error %q: not closed or open", r.OnError)
	}
	if r.Timeout < 0 {
		return fmt.Errorf("store timeout: %s is negative", time.Duration(r.Timeout))
	}
	if r.DB < 0 {
		return fmt.Errorf("store db: %d is negative", r.DB)
	}
	if r.DB != 0 && len(r.Addresses) > 1 && r.MasterName == "" {
		return errors.New("store db: a Cluster has only database 0")
	}
	if r.EncryptionKey != "" && !strings.Contains(r.EncryptionKey, "{") && len(r.EncryptionKey) < store.MinEncryptionKeyBytes {
		return fmt.Errorf("store encryption_key: shorter than %d bytes; use a long random value, for example {env.MCP_STORE_KEY}", store.MinEncryptionKeyBytes)
	}
	return nil
}

// release gives the client back to the pool.
func (s *StoreConfig) release() error {
	if s == nil || s.poolKey == "" {
		return nil
	}
	k := s.poolKey
	s.poolKey = ""
	_, err := storePool.Delete(k)
	return err
}

// claimProof claims an accepted DPoP proof in the store, so that no other instance accepts
// it again (RFC 9449 §11.1). The in-process replay cache ran first: a proof it knows never
// comes here. The key lives until no instance could accept the proof: its iat + max_age,
// plus the leeway for clocks that differ between instances.
func (s *StoreConfig) claimProof(ctx context.Context, p verify.Proof, leeway time.Duration, now time.Time) (denial, error) {
	jti, until := p.ReplayID()
	ttl := time.Unix(until, 0).Add(leeway).Sub(now)
	got, err := s.client.ClaimProof(ctx, p.JKT, jti, ttl)
	if err != nil {
		if s.closed {
			return denyStoreUnavailable, err
		}
		s.warnOpen(err)
		return denyNone, nil
	}
	if got == store.Seen {
		return denyDPoPProof, verify.ErrProofReplayed
	}
	return denyNone, nil
}

// warnOpen says, at most once a minute, that proofs are checked by this instance alone.
func (s *StoreConfig) warnOpen(err error) {
	now, last := time.Now().UnixNano(), s.lastOpenWarn.Load()
	if now-last < int64(storeOpenWarnEvery) || !s.lastOpenWarn.CompareAndSwap(last, now) {
		return
	}
	s.logger.Warn("store unavailable and on_error is open: DPoP proofs are checked against this instance's replay cache only, "+
		"so a proof used at another instance may be accepted here", zap.Error(err))
}

// storeLogger is the logger of the config running now (a client outlives its config).
func storeLogger() *zap.Logger {
	if ctx := caddy.ActiveContext(); ctx.Context != nil {
		return ctx.Logger(Handler{}).Named("store")
	}
	return caddy.Log().Named("http.handlers.mcp_auth.store")
}

// unmarshalStore reads `store redis { ... }`.
func unmarshalStore(d *caddyfile.Dispenser) (*StoreConfig, error) {
	if !d.NextArg() {
		return nil, d.Errf("store: name the backend: store redis { ... }")
	}
	if d.Val() != "redis" {
		return nil, d.Errf("store %q: unknown backend (redis, which serves Valkey too)", d.Val())
	}
	if d.NextArg() {
		return nil, d.Errf("store redis: takes a block, not a value")
	}
	r := new(RedisStore)
	seen := map[string]bool{}
	for d.NextBlock(1) {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("store %s: given more than once", name)
		}
		seen[name] = true
		args := d.RemainingArgs()
		one := func() (string, error) {
			if len(args) != 1 {
				return "", d.Errf("store %s: takes one value", name)
			}
			return args[0], nil
		}
		var err error
		switch name {
		case "address":
			if len(args) == 0 {
				return nil, d.Errf("store address: takes one or more host:port")
			}
			r.Addresses = args
		case "master_name":
			r.MasterName, err = one()
		case "username":
			r.Username, err = one()
		case "password":
			r.Password, err = one()
		case "tls":
			r.TLS = new(StoreTLS)
			switch {
			case len(args) == 0:
			case len(args) == 2 && args[0] == "ca":
				r.TLS.CA = args[1]
			default:
				return nil, d.Errf("store tls: takes nothing, or ca <file>")
			}
		case "db":
			v, err := one()
			if err != nil {
				return nil, err
			}
			n, cerr := strconv.Atoi(v)
			if cerr != nil || n < 0 {
				return nil, d.Errf("store db: %q is not a whole number >= 0", v)
			}
			r.DB = n
		case "key_prefix":
			r.KeyPrefix, err = one()
		case "timeout":
			v, err := one()
			if err != nil {
				return nil, err
			}
			dur, cerr := caddy.ParseDuration(v)
			if cerr != nil || dur <= 0 {
				return nil, d.Errf("store timeout: %q is not a positive duration", v)
			}
			r.Timeout = caddy.Duration(dur)
		case "on_error":
			v, err := one()
			if err != nil {
				return nil, err
			}
			if v != storeOnErrorClosed && v != storeOnErrorOpen {
				return nil, d.Errf("store on_error %q: not closed or open", v)
			}
			r.OnError = v
		case "encryption_key":
			v, err := one()
			if err != nil {
				return nil, err
			}
			if len(placeholders(v)) == 0 && len(v) < store.MinEncryptionKeyBytes {
				return nil, d.Errf("store encryption_key: shorter than %d bytes; use a long random value, for example {env.MCP_STORE_KEY}", store.MinEncryptionKeyBytes)
			}
			r.EncryptionKey = v
		default:
			return nil, d.Errf("store: unrecognized subdirective %q (address, master_name, username, password, tls, db, key_prefix, timeout, on_error, encryption_key)", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(r.Addresses) == 0 {
		return nil, d.Errf("store address: required")
	}
	return &StoreConfig{Redis: r}, nil
}
