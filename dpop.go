package mcpauth

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// DPoP defaults and bounds (RFC 9449; the MCP DPoP extension accepts iat within ±5 minutes).
const (
	defaultDPoPMaxAge      = 5 * time.Minute
	maxDPoPMaxAge          = time.Hour
	defaultDPoPReplayCache = 100000
)

// DPoPConfig turns on DPoP-bound access tokens (RFC 9449): `Authorization: DPoP <token>`
// with one `DPoP` proof header, checked on every request.
type DPoPConfig struct {
	// Required refuses bearer tokens: only DPoP-bound tokens with a proof pass, and the
	// metadata document says dpop_bound_access_tokens_required.
	//
	// JSON: `required`. Caddyfile: `required`.
	Required bool `json:"required,omitempty"`

	// Algorithms are the accepted proof algorithms, asymmetric only. Default ES256 ES384
	// EdDSA PS256 RS256.
	//
	// JSON: `algorithms`. Caddyfile: `algorithms`.
	Algorithms []string `json:"algorithms,omitempty"`

	// MaxAge is how far a proof's iat may lie from now, in either direction. Default 5m.
	//
	// JSON: `max_age`. Caddyfile: `max_age`.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Nonce demands a server nonce in every proof (RFC 9449 §8). Nonces are stateless: the
	// HMAC of a time step under NonceKey, so instances that share the key share nonces.
	//
	// JSON: `nonce`. Caddyfile: `nonce`.
	Nonce bool `json:"nonce,omitempty"`

	// NonceKey is the nonce HMAC key, at least 16 bytes, typically `{env.NAME}`. Without
	// it a random key is made at load, and nonces are good in this instance only.
	//
	// JSON: `nonce_key`. Caddyfile: `nonce <key>`.
	NonceKey string `json:"nonce_key,omitempty"`

	// ReplayCache is how many proof jtis are remembered, per instance, to refuse a replayed
	// proof. Default 100000; 0 turns the replay check off.
	//
	// JSON: `replay_cache`. Caddyfile: `replay_cache`.
	ReplayCache *int `json:"replay_cache,omitempty"`

	// origin is the resource's origin, the only one a proof's htu may name.
	origin string
}

// Provision expands the nonce key, sets the defaults and builds the proof checker of h.
// The handler's resource must be provisioned: proofs are checked against its origin.
func (c *DPoPConfig) Provision(_ caddy.Context, h *Handler) error {
	origin, err := resourceOrigin(h.Resource)
	if err != nil {
		return fmt.Errorf("resource %q: %w", h.Resource, err)
	}
	c.origin = origin
	if c.NonceKey != "" {
		k, err := expandAtLoad(caddy.NewReplacer(), "dpop nonce_key", c.NonceKey)
		if err != nil {
			return err
		}
		c.NonceKey = k
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(verify.DefaultDPoPAlgorithms)
	}
	if c.MaxAge == 0 {
		c.MaxAge = caddy.Duration(defaultDPoPMaxAge)
	}
	h.dpop = c.newChecker(h.now)
	h.dpopRequired = c.Required
	return nil
}

// Validate checks the configuration.
func (c *DPoPConfig) Validate() error {
	for _, alg := range c.Algorithms {
		if err := checkDPoPAlgorithm(alg); err != nil {
			return fmt.Errorf("dpop algorithms: %w", err)
		}
	}
	if err := checkDPoPMaxAge(time.Duration(c.MaxAge)); err != nil {
		return err
	}
	if c.ReplayCache != nil && *c.ReplayCache < 0 {
		return fmt.Errorf("dpop replay_cache: %d is negative", *c.ReplayCache)
	}
	if c.NonceKey != "" {
		if !c.Nonce {
			return fmt.Errorf("dpop nonce_key: set without nonce")
		}
		if !strings.Contains(c.NonceKey, "{") && len(c.NonceKey) < verify.MinNonceKeyBytes {
			return fmt.Errorf("dpop nonce_key: shorter than %d bytes", verify.MinNonceKeyBytes)
		}
	}
	return nil
}

func checkDPoPAlgorithm(alg string) error {
	if slices.Contains(verify.DPoPAlgorithms, alg) {
		return nil
	}
	if err := checkAlgorithm(alg); err != nil {
		return err // none, HS*: the same answer as for token algorithms
	}
	return fmt.Errorf("%q: %w (known: %s)", alg, errAlgUnk, strings.Join(verify.DPoPAlgorithms, " "))
}

func checkDPoPMaxAge(d time.Duration) error {
	if d < 0 || d > maxDPoPMaxAge {
		return fmt.Errorf("dpop max_age: %s is outside 1s to %s", d, maxDPoPMaxAge)
	}
	if d != 0 && d < time.Second {
		return fmt.Errorf("dpop max_age: %s is outside 1s to %s", d, maxDPoPMaxAge)
	}
	return nil
}

// dpopKeyCacheSize bounds the parsed proof keys remembered: one per client (key pair) active
// at a time is what pays off.
const dpopKeyCacheSize = 4096

// newChecker builds the proof checker once provisioned.
func (c *DPoPConfig) newChecker(now func() time.Time) *verify.DPoP {
	size := defaultDPoPReplayCache
	if c.ReplayCache != nil {
		size = *c.ReplayCache
	}
	d := &verify.DPoP{
		Algorithms: c.Algorithms,
		MaxAge:     time.Duration(c.MaxAge),
		Replay:     verify.NewReplayCache(size),
		Keys:       verify.NewProofKeyCache(dpopKeyCacheSize),
		Now:        now,
	}
	if c.Nonce {
		// A nonce lives one to two steps; the step is the proof window, so a nonce is never
		// younger than the proofs it may appear in need to be.
		d.Nonces = verify.NewNonces([]byte(c.NonceKey), time.Duration(c.MaxAge))
	}
	return d
}

// unmarshalDPoP reads `dpop [{ ... }]`.
func unmarshalDPoP(d *caddyfile.Dispenser) (*DPoPConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("dpop: takes a block, not a value")
	}
	c := new(DPoPConfig)
	seen := map[string]bool{}
	for d.NextBlock(1) {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("dpop %s: given more than once", name)
		}
		seen[name] = true
		args := d.RemainingArgs()
		switch name {
		case "required":
			if len(args) != 0 {
				return nil, d.Errf("dpop required: takes no value")
			}
			c.Required = true
		case "algorithms":
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, a := range args {
				if err := checkDPoPAlgorithm(a); err != nil {
					return nil, d.Errf("dpop algorithms: %v", err)
				}
			}
			c.Algorithms = args
		case "max_age":
			if len(args) != 1 {
				return nil, d.Errf("dpop max_age: takes one duration")
			}
			v, err := caddy.ParseDuration(args[0])
			if err != nil {
				return nil, d.Errf("dpop max_age: %v", err)
			}
			if err := checkDPoPMaxAge(v); err != nil || v == 0 {
				return nil, d.Errf("dpop max_age: %s is outside 1s to %s", v, maxDPoPMaxAge)
			}
			c.MaxAge = caddy.Duration(v)
		case "nonce":
			c.Nonce = true
			switch len(args) {
			case 0:
			case 1:
				if p := placeholders(args[0]); len(p) > 0 {
					for _, ph := range p {
						if !loadTimePlaceholder(ph) {
							return nil, d.Errf("dpop nonce: %v", errRequestPlaceholder(ph))
						}
					}
				} else if len(args[0]) < verify.MinNonceKeyBytes {
					return nil, d.Errf("dpop nonce: the key is shorter than %d bytes; use a long random value, for example {env.DPOP_NONCE_KEY}", verify.MinNonceKeyBytes)
				}
				c.NonceKey = args[0]
			default:
				return nil, d.Errf("dpop nonce: takes at most one key")
			}
		case "replay_cache":
			n, err := strconv.Atoi(strings.Join(args, " "))
			if len(args) != 1 || err != nil || n < 0 {
				return nil, d.Errf("dpop replay_cache: takes one whole number >= 0")
			}
			c.ReplayCache = &n
		default:
			return nil, d.Errf("dpop: unrecognized subdirective %q (required, algorithms, max_age, nonce, replay_cache)", name)
		}
	}
	return c, nil
}

// dpopProof returns the one DPoP header of a request (RFC 9449 §4.3 check 1).
func dpopProof(hdr http.Header) (string, error) {
	vals := hdr["Dpop"]
	switch {
	case len(vals) == 0:
		return "", verify.ErrProofMissing
	case len(vals) > 1:
		return "", verify.ErrProofMultiple
	}
	return vals[0], nil
}

// requestHTU is the URI a proof's htu must name (RFC 9449 §4.3 check 9): the origin of the
// resource, whatever the request's Host says, and the path the client addressed, before any
// rewrite. The origin is not taken from the request: on a site that answers any host name, a
// relay that was sent a proof made for another server could set Host (or, through a trusted
// proxy, X-Forwarded-Host) to that server's name and pass the proof on. The resource is the
// URL clients are told to address (RFC 9728 §3.3: they check the metadata's resource against
// it), so a proof made for this resource names its origin.
func (c *DPoPConfig) requestHTU(r *http.Request) string {
	u := r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u = orig.URL
	}
	return c.origin + u.EscapedPath()
}

// resourceOrigin is the origin of the resource in normal form (RFC 3986 §6.2.2, §6.2.3:
// lowercase scheme and host, no default port), without a trailing slash. It fails for a
// resource no proof could name: not absolute http(s), no host, user information.
func resourceOrigin(resource string) (string, error) {
	n, ok := verify.NormalizeHTU(resource)
	if !ok {
		return "", errNoOrigin
	}
	i := strings.Index(n, "://") + len("://")
	if j := strings.IndexByte(n[i:], '/'); j >= 0 {
		n = n[:i+j]
	}
	return n, nil
}
