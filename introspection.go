package mcpauth

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Defaults of the introspection group.
const (
	defaultIntrospectionCacheTTL    = 5 * time.Minute
	defaultIntrospectionNegativeTTL = 30 * time.Second
	defaultIntrospectionTimeout     = 5 * time.Second
	defaultIntrospectionMaxInFlight = 16
	// maxMetadataBytes bounds the issuer metadata document read to find the endpoint.
	maxMetadataBytes = 1 << 20
)

// Introspection is the `introspection` group: tokens that are not JWTs (opaque access
// tokens) are checked by asking the authorization server (RFC 7662), and JWTs too with
// jwt_too. Answers are cached by the token's SHA-256, never past the token's exp.
type Introspection struct {
	// Endpoint is the introspection endpoint URL. By default, the `introspection_endpoint`
	// of the issuer's RFC 8414 metadata (which then needs exactly one authorization server).
	//
	// JSON: `endpoint`. Caddyfile: `endpoint`.
	Endpoint string `json:"endpoint,omitempty"`

	// ClientID identifies this resource server to the authorization server.
	//
	// JSON: `client_id`. Caddyfile: `client_id`.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret authenticates client_id with client_secret_basic or client_secret_post.
	// Write `{env.NAME}` or `{file.PATH}` rather than the secret itself; it is expanded at
	// load and never logged.
	//
	// JSON: `client_secret`. Caddyfile: `client_secret`.
	ClientSecret string `json:"client_secret,omitempty"`

	// AuthMethod is how the client authenticates: `client_secret_basic` (default),
	// `client_secret_post`, or `private_key_jwt` (RFC 7523, with PrivateKey).
	//
	// JSON: `auth_method`. Caddyfile: `auth_method`.
	AuthMethod string `json:"auth_method,omitempty"`

	// PrivateKey is the path of a PKCS#8 PEM private key (RSA, EC P-256/384/521 or Ed25519)
	// that signs the private_key_jwt client assertion.
	//
	// JSON: `private_key`. Caddyfile: `private_key`.
	PrivateKey string `json:"private_key,omitempty"`

	// CacheTTL is the longest time an active answer is trusted before the authorization
	// server is asked again, so revocation takes effect within it. Never past the token's
	// `exp`. Default 5m.
	//
	// JSON: `cache_ttl`. Caddyfile: `cache_ttl`.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long an inactive answer (or another refusal the answer decides)
	// is remembered. Default 30s.
	//
	// JSON: `negative_ttl`. Caddyfile: `negative_ttl`.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// Timeout bounds each call to the authorization server, and the wait for a free slot
	// among MaxInFlight. Default 5s.
	//
	// JSON: `timeout`. Caddyfile: `timeout`.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxInFlight is how many calls to the authorization server may run at once. Four
	// requests per slot may wait for one, at most Timeout; the excess, and those that find no
	// slot in time, are answered 503 with Retry-After. Each client address may hold a quarter of
	// the slots (with its waiters). Default 16.
	//
	// JSON: `max_in_flight`. Caddyfile: `max_in_flight`.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// MaxRate bounds the calls to the authorization server per second for tokens no cache
	// answers, in total; each client address may make a quarter of them. Beyond it requests
	// get 503 with Retry-After at once, so a flood of made-up tokens is not a flood at the
	// server, and one address cannot use up what real tokens from others need. Default 50.
	//
	// JSON: `max_rate`. Caddyfile: `max_rate`.
	MaxRate int `json:"max_rate,omitempty"`

	// JWTToo introspects JWTs as well, after the local checks pass, so that a JWT revoked
	// at the authorization server is refused within CacheTTL.
	//
	// JSON: `jwt_too`. Caddyfile: `jwt_too`.
	JWTToo bool `json:"jwt_too,omitempty"`

	key      crypto.Signer
	cacheKey string // of the shared answer cache, while held
}

// Provision expands placeholders, sets defaults, reads the private key and puts the
// introspection verifier behind h's verifier (a JWS still goes to the JWT verifier). It runs
// once h's issuers, audiences, leeway, clock and JWT verifier are provisioned.
func (in *Introspection) Provision(_ caddy.Context, h *Handler) error {
	if err := in.prepare(caddy.NewReplacer()); err != nil {
		return err
	}
	if in.Endpoint == "" && len(h.AuthorizationServers) > 1 {
		return errors.New("introspection endpoint: required with several authorization_servers (the endpoint is discovered only for one)")
	}
	logger := h.logger.Named("introspection")
	iv := in.newVerifier(h, logger)
	if err := iv.Start(); err != nil {
		return err
	}
	h.verifier = &verify.Chain{JWT: h.verifier, Introspection: iv, JWTToo: in.JWTToo}
	h.hashKeys = true
	ep := in.Endpoint
	if ep == "" {
		ep = "(discovered from " + h.AuthorizationServers[0] + ")"
	}
	h.logger.Info("token introspection on", zap.String("resource", h.Resource),
		zap.String("endpoint", ep), zap.String("client_id", in.ClientID),
		zap.String("auth_method", in.authMethod()), zap.Bool("jwt_too", in.JWTToo))
	return nil
}

// prepare expands placeholders, sets defaults, validates and reads the private key.
func (in *Introspection) prepare(repl *caddy.Replacer) error {
	var err error
	for _, f := range []struct {
		name string
		v    *string
	}{{"endpoint", &in.Endpoint}, {"client_id", &in.ClientID}, {"private_key", &in.PrivateKey}} {
		if *f.v, err = expandAtLoad(repl, "introspection "+f.name, *f.v); err != nil {
			return err
		}
	}
	if in.ClientSecret != "" {
		// The error never repeats the value: it may be the secret itself.
		out := repl.ReplaceKnown(in.ClientSecret, "")
		if len(placeholders(out)) > 0 || out == "" {
			return errors.New("introspection client_secret: a placeholder in it has no value when the config loads, " +
				"or it expands to nothing (is the environment variable set, the file readable?)")
		}
		in.ClientSecret = out
	}
	if in.CacheTTL == 0 {
		in.CacheTTL = caddy.Duration(defaultIntrospectionCacheTTL)
	}
	if in.NegativeTTL == 0 {
		in.NegativeTTL = caddy.Duration(defaultIntrospectionNegativeTTL)
	}
	if in.Timeout == 0 {
		in.Timeout = caddy.Duration(defaultIntrospectionTimeout)
	}
	if in.MaxInFlight == 0 {
		in.MaxInFlight = defaultIntrospectionMaxInFlight
	}
	if in.MaxRate == 0 {
		in.MaxRate = verify.DefaultMaxRate
	}
	if err := in.Validate(); err != nil {
		return err
	}
	if in.PrivateKey != "" {
		if in.key, err = loadPrivateKey(in.PrivateKey); err != nil {
			return fmt.Errorf("introspection private_key %s: %w", in.PrivateKey, err)
		}
	}
	return nil
}

// Validate checks the group. It is fast and has no side effects.
func (in *Introspection) Validate() error {
	if in.Endpoint != "" {
		if err := jwks.CheckHTTPURL(in.Endpoint); err != nil {
			return fmt.Errorf("introspection endpoint %q: %w", in.Endpoint, err)
		}
	}
	if in.ClientID == "" {
		return fmt.Errorf("introspection client_id: %w", errRequired)
	}
	switch in.AuthMethod {
	case "", verify.AuthClientSecretBasic, verify.AuthClientSecretPost:
		if in.ClientSecret == "" {
			return fmt.Errorf("introspection client_secret: %w for auth_method %s", errRequired, in.authMethod())
		}
		if in.PrivateKey != "" {
			return fmt.Errorf("introspection private_key: only for auth_method private_key_jwt")
		}
	case verify.AuthPrivateKeyJWT:
		if in.PrivateKey == "" {
			return fmt.Errorf("introspection private_key: %w for auth_method private_key_jwt", errRequired)
		}
		if in.ClientSecret != "" {
			return fmt.Errorf("introspection client_secret: not used with auth_method private_key_jwt")
		}
	default:
		// The value is a method name, not a secret: safe to repeat.
		return fmt.Errorf("introspection auth_method %q: not client_secret_basic, client_secret_post or private_key_jwt", in.AuthMethod)
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"cache_ttl", in.CacheTTL}, {"negative_ttl", in.NegativeTTL}, {"timeout", in.Timeout}} {
		if d.v < 0 {
			return fmt.Errorf("introspection %s: %s is negative", d.name, time.Duration(d.v))
		}
	}
	if in.MaxInFlight < 0 {
		return fmt.Errorf("introspection max_in_flight: %d is negative", in.MaxInFlight)
	}
	if in.MaxRate < 0 {
		return fmt.Errorf("introspection max_rate: %d is negative", in.MaxRate)
	}
	return nil
}

func (in *Introspection) authMethod() string {
	if in.AuthMethod == "" {
		return verify.AuthClientSecretBasic
	}
	return in.AuthMethod
}

// loadPrivateKey reads a PKCS#8 PEM private key that can sign.
func loadPrivateKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`not a PEM block of type "PRIVATE KEY" (PKCS#8)`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing PKCS#8: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	if _, err := verify.SigningMethodFor(s); err != nil {
		return nil, err
	}
	return s, nil
}

// newVerifier builds the introspection verifier of handler h (provisioned up to policy).
func (in *Introspection) newVerifier(h *Handler, logger *zap.Logger) *verify.Introspection {
	timeout := time.Duration(in.Timeout)
	client := verify.NewIntrospectionClient(timeout)
	v := &verify.Introspection{
		Endpoint:     in.Endpoint,
		ClientID:     in.ClientID,
		ClientSecret: in.ClientSecret,
		AuthMethod:   in.authMethod(),
		PrivateKey:   in.key,
		Issuers:      h.Issuers,
		Audiences:    h.Audiences,
		AnyAudience:  h.AllowAnyAudience,
		// allow_missing_audience_for: nil (an answer without aud or resource is refused)
		// unless clients are listed.
		AllowMissingAudience: h.missingAudienceOK,
		ScopeClaims:          h.ScopeClaim,
		Tenants:              h.Tenants,
		Leeway:               h.leeway,
		CacheTTL:             time.Duration(in.CacheTTL),
		NegativeTTL:          time.Duration(in.NegativeTTL),
		Timeout:              timeout,
		MaxInFlight:          in.MaxInFlight,
		MaxRate:              float64(in.MaxRate),
		MinTokenLen:          verify.MinTokenLen,
		// Caddy's client IP: the forwarded address when the request came through one of
		// the server's trusted_proxies, else the connection's.
		ClientAddress:     remoteIP,
		Answers:           in.acquireAnswers(h),
		Shared:            h.storeAnswers(),
		NegativeCacheSize: defaultTokenCacheSize,
		Client:            client,
		Logger:            logger,
		Now:               h.now,
		OnCall:            observeASCall,
		OnNegativeCache:   h.metrics.introspectionCache,
		OnAnswerCache:     h.metrics.introspectionAnswers,
	}
	if len(h.AuthorizationServers) == 1 {
		// RFC 7523 §3: the assertion's audience identifies the authorization server; its
		// issuer identifier is what servers that follow draft-ietf-oauth-rfc7523bis accept.
		v.AssertionAudience = h.AuthorizationServers[0]
	}
	if in.Endpoint == "" {
		v.Discover = discoverer(client, h.AuthorizationServers[0], "introspection_endpoint")
	}
	return v
}

// unmarshalCaddyfile reads the block of `introspection { ... }`.
func (in *Introspection) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("introspection: takes a block, not a value")
	}
	seen := map[string]bool{}
	for d.NextBlock(1) {
		name := d.Val()
		if seen[name] {
			return d.Errf("introspection %s: given more than once", name)
		}
		seen[name] = true
		if name == "jwt_too" {
			if d.NextArg() {
				return d.Errf("introspection jwt_too: takes no value")
			}
			in.JWTToo = true
			continue
		}
		val, err := oneValue(d, "introspection", name)
		if err != nil {
			return err
		}
		handled, err := clientLine(d, "introspection", name, val, clientLines{&in.Endpoint, &in.ClientID,
			&in.ClientSecret, &in.AuthMethod, &in.PrivateKey})
		if err != nil {
			return err
		}
		if handled {
			continue
		}
		duration := func(dst *caddy.Duration) error { return positiveDuration(d, "introspection", name, val, dst) }
		switch name {
		case "cache_ttl":
			err = duration(&in.CacheTTL)
		case "negative_ttl":
			err = duration(&in.NegativeTTL)
		case "timeout":
			err = duration(&in.Timeout)
		case "max_in_flight":
			n, cerr := strconv.Atoi(val)
			if cerr != nil || n < 1 {
				return d.Errf("introspection max_in_flight: %q is not a whole number >= 1", val)
			}
			in.MaxInFlight = n
		case "max_rate":
			n, cerr := strconv.Atoi(val)
			if cerr != nil || n < 1 {
				return d.Errf("introspection max_rate: %q is not a whole number of calls per second >= 1", val)
			}
			in.MaxRate = n
		default:
			return d.Errf("unrecognized introspection subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
