package mcpauth

import (
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/clientauth"
	"github.com/mcpauth/caddy-mcp-auth/internal/exchange"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Token exchange toward the upstream (RFC 8693). MCP forbids passing the client's token on
// (MCP authorization, "Access Token Privilege Restriction"): an MCP server that calls other
// APIs for the user gets a token of its own for them, exchanged here after the request is
// allowed, per tool when a rule names its own target.

// Defaults of the token_exchange group.
const (
	defaultExchangeCacheTTL    = 5 * time.Minute
	defaultExchangeTimeout     = 5 * time.Second
	defaultExchangeMaxInFlight = 16
)

// exchangedAudiencePlaceholder holds the audience (else the resource) of the target the
// request's token was exchanged for.
const exchangedAudiencePlaceholder = "http.auth.mcp.exchanged_audience"

// ExchangeTarget is what the exchanged token is asked for: RFC 8693 §2.1 `audience` and
// `scope`, RFC 8707 `resource`. At least one of audience and resource is required.
type ExchangeTarget struct {
	// Audience are the logical names or URIs of the upstream API the new token is for (RFC
	// 8693 `audience`, one parameter each).
	//
	// JSON: `audience`. Caddyfile: `audience`.
	Audience []string `json:"audience,omitempty"`

	// Resource is the URI of the upstream API (RFC 8707 `resource`).
	//
	// JSON: `resource`. Caddyfile: `resource`.
	Resource string `json:"resource,omitempty"`

	// Scope are the scopes requested for the new token; none by default (the
	// authorization server decides).
	//
	// JSON: `scope`. Caddyfile: `scope`.
	Scope []string `json:"scope,omitempty"`
}

// TokenExchange is the `token_exchange` group: after a request is allowed, its access token
// is exchanged at the authorization server's token endpoint (RFC 8693) for a token for the
// upstream, which the upstream request carries instead of the incoming one. A `tool` rule
// with its own `exchange` target asks for a token for that tool's API.
type TokenExchange struct {
	// Endpoint is the token endpoint URL. By default, the `token_endpoint` of the issuer's
	// RFC 8414 metadata (which then needs exactly one authorization server).
	//
	// JSON: `endpoint`. Caddyfile: `endpoint`.
	Endpoint string `json:"endpoint,omitempty"`

	// ClientID identifies this resource server, as an OAuth client, to the authorization
	// server.
	//
	// JSON: `client_id`. Caddyfile: `client_id`.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret authenticates client_id with client_secret_basic or client_secret_post.
	// Write `{env.NAME}` or `{file.PATH}`; it is expanded at load and never logged.
	//
	// JSON: `client_secret`. Caddyfile: `client_secret`.
	ClientSecret string `json:"client_secret,omitempty"`

	// AuthMethod is `client_secret_basic` (default), `client_secret_post` or
	// `private_key_jwt` (RFC 7523, with PrivateKey).
	//
	// JSON: `auth_method`. Caddyfile: `auth_method`.
	AuthMethod string `json:"auth_method,omitempty"`

	// PrivateKey is the path of a PKCS#8 PEM private key that signs the private_key_jwt
	// client assertion.
	//
	// JSON: `private_key`. Caddyfile: `private_key`.
	PrivateKey string `json:"private_key,omitempty"`

	// ExchangeTarget is the site's target: `audience`, `resource` and `scope`, used by
	// every request that no `tool` rule with an `exchange` target matches.
	ExchangeTarget

	// Header is the request header the new token goes in: `Authorization` (default) as
	// `Bearer <token>`, or another header with the bare token. The incoming Authorization
	// header is removed in both cases.
	//
	// JSON: `header`. Caddyfile: `header`.
	Header string `json:"header,omitempty"`

	// CacheTTL is the longest time an exchanged token is reused. It is never reused past its
	// own exp (less the leeway) nor past the incoming token's exp. Default 5m.
	//
	// JSON: `cache_ttl`. Caddyfile: `cache_ttl`.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// Timeout bounds each call to the token endpoint, and the wait for a free slot among
	// MaxInFlight. Default 5s.
	//
	// JSON: `timeout`. Caddyfile: `timeout`.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// MaxInFlight is how many exchanges may run at once; requests that find no free slot
	// within Timeout are answered 503 with Retry-After. Default 16.
	//
	// JSON: `max_in_flight`. Caddyfile: `max_in_flight`.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	client *exchange.Client
	header string // canonical form of Header
	// headerCGI is Header in lower case with '-' for '_' and '.', when it has one of them:
	// the name CGI-style servers read as the same variable (HTTP_X_UPSTREAM_TOKEN).
	headerCGI string
	// rules are the `tool` rules with an exchange target, in config order: target i+1.
	rules []exchangeRule
	// policy tells which rules a message matches: the rule's patterns, read as its scopes are.
	policy *policy.Policy
	// audience is {http.auth.mcp.exchanged_audience} per target, boxed once; label names
	// the target in the audit event.
	audience []any
	label    []string
	now      func() time.Time
	metrics  *handlerMetrics
}

// exchangeRule is a `tool` rule's target.
type exchangeRule struct {
	rule   int // index into Handler.Rules (and policy.Config.Rules)
	target int
}

// siteTarget is the index of the site's target.
const siteTarget = 0

// Provision expands placeholders, sets defaults, reads the private key and builds the
// exchange client. It runs after the handler's verification and policy are set up (h.now,
// h.leeway, h.policy).
func (x *TokenExchange) Provision(_ caddy.Context, h *Handler) error {
	repl := caddy.NewReplacer()
	var err error
	for _, f := range []struct {
		name string
		v    *string
	}{{"endpoint", &x.Endpoint}, {"client_id", &x.ClientID}, {"private_key", &x.PrivateKey}, {"resource", &x.Resource}} {
		if *f.v, err = expandAtLoad(repl, "token_exchange "+f.name, *f.v); err != nil {
			return err
		}
	}
	if x.ClientSecret != "" {
		// The error never repeats the value: it may be the secret itself.
		out := repl.ReplaceKnown(x.ClientSecret, "")
		if len(placeholders(out)) > 0 || out == "" {
			return errors.New("token_exchange client_secret: a placeholder in it has no value when the config loads, " +
				"or it expands to nothing (is the environment variable set, the file readable?)")
		}
		x.ClientSecret = out
	}
	if x.Header == "" {
		x.Header = "Authorization"
	}
	if x.CacheTTL == 0 {
		x.CacheTTL = caddy.Duration(defaultExchangeCacheTTL)
	}
	if x.Timeout == 0 {
		x.Timeout = caddy.Duration(defaultExchangeTimeout)
	}
	if x.MaxInFlight == 0 {
		x.MaxInFlight = defaultExchangeMaxInFlight
	}
	if err := x.Validate(); err != nil {
		return err
	}
	if x.Endpoint == "" && len(h.AuthorizationServers) != 1 {
		return errors.New("token_exchange endpoint: required with several authorization_servers (the endpoint is discovered only for one)")
	}
	cred := clientauth.Credentials{ClientID: x.ClientID, ClientSecret: x.ClientSecret, Method: x.AuthMethod, Now: h.now}
	if x.PrivateKey != "" {
		k, err := loadPrivateKey(x.PrivateKey)
		if err != nil {
			return fmt.Errorf("token_exchange private_key %s: %w", x.PrivateKey, err)
		}
		cred.PrivateKey = k
	}
	if len(h.AuthorizationServers) == 1 {
		// RFC 7523 §3: the assertion's audience identifies the authorization server.
		cred.AssertionAudience = h.AuthorizationServers[0]
	}

	x.header = textproto.CanonicalMIMEHeaderKey(x.Header)
	if strings.ContainsAny(x.header, "-_.") {
		x.headerCGI = strings.Map(cgiFold, strings.ToLower(x.header))
	}
	x.now = h.now
	x.policy = h.policy
	targets := []exchange.Target{x.target(&x.ExchangeTarget)}
	x.label = []string{"site"}
	for i, r := range h.Rules {
		if r.Exchange == nil {
			continue
		}
		x.rules = append(x.rules, exchangeRule{rule: i, target: len(targets)})
		targets = append(targets, x.target(r.Exchange))
		x.label = append(x.label, ruleLabel(r))
	}
	x.audience = make([]any, len(targets))
	for i, t := range targets {
		v := strings.Join(t.Audiences, " ")
		if v == "" {
			v = t.Resource
		}
		x.audience[i] = v
	}
	timeout := time.Duration(x.Timeout)
	httpClient := clientauth.NewHTTPClient(timeout)
	size := defaultTokenCacheSize
	if h.TokenCacheSize != nil && *h.TokenCacheSize > 0 {
		size = *h.TokenCacheSize
	}
	x.client = &exchange.Client{
		Endpoint:    x.Endpoint,
		Credentials: cred,
		Targets:     targets,
		Bearer:      x.header == "Authorization",
		CacheTTL:    time.Duration(x.CacheTTL),
		Leeway:      h.leeway,
		Timeout:     timeout,
		MaxInFlight: x.MaxInFlight,
		CacheSize:   size,
		HTTP:        httpClient,
		Logger:      h.logger.Named("token_exchange"),
		Now:         h.now,
		OnCall:      observeASCall,
		OnCache:     h.metrics.exchangeCache,
		Shared:      x.storeTokens(h),
	}
	x.metrics = h.metrics
	if x.Endpoint == "" {
		x.client.Discover = discoverer(httpClient, h.AuthorizationServers[0], "token_endpoint")
	}
	ep := x.Endpoint
	if ep == "" {
		ep = "(discovered from " + h.AuthorizationServers[0] + ")"
	}
	h.logger.Info("token exchange on", zap.String("resource", h.Resource), zap.String("endpoint", ep),
		zap.String("client_id", x.ClientID), zap.String("auth_method", cred.MethodName()),
		zap.String("header", x.header), zap.Int("targets", len(targets)))
	if x.header != "Authorization" {
		// Caddy's log encoders redact Authorization, Cookie and Proxy-Authorization only:
		// reverse_proxy's debug log of each upstream round trip, and the access log with
		// log_credentials, hold any other header, the exchanged token with it.
		h.logger.Warn("token_exchange header: Caddy does not redact this header in its logs; "+
			"at debug level, reverse_proxy logs every exchanged token sent in it (use Authorization, "+
			"or keep the debug level off for http.handlers.reverse_proxy)", zap.String("header", x.header))
	}
	return nil
}

func (x *TokenExchange) target(t *ExchangeTarget) exchange.Target {
	return exchange.Target{Audiences: t.Audience, Resource: t.Resource, Scopes: t.Scope}
}

// Validate checks the group. It is fast and has no side effects.
func (x *TokenExchange) Validate() error {
	if x.Endpoint != "" {
		if err := jwks.CheckHTTPURL(x.Endpoint); err != nil {
			return fmt.Errorf("token_exchange endpoint %q: %w", x.Endpoint, err)
		}
		if u, err := url.Parse(x.Endpoint); err == nil && u.User != nil {
			// Credentials in the URL would be logged with it, and net/http would send them
			// as Basic authentication beside the configured method. The error does not
			// repeat the URL: it holds them.
			return errors.New("token_exchange endpoint: has user information; give the credentials as client_id and client_secret")
		}
	}
	if x.ClientID == "" {
		return fmt.Errorf("token_exchange client_id: %w", errRequired)
	}
	if err := checkClientAuth("token_exchange", x.AuthMethod, x.ClientSecret, x.PrivateKey); err != nil {
		return err
	}
	if err := x.ExchangeTarget.validate("token_exchange"); err != nil {
		return err
	}
	if x.Header != "" {
		if err := checkExchangeHeader(x.Header); err != nil {
			return fmt.Errorf("token_exchange header %q: %w", x.Header, err)
		}
	}
	for _, d := range []struct {
		name string
		v    caddy.Duration
	}{{"cache_ttl", x.CacheTTL}, {"timeout", x.Timeout}} {
		if d.v < 0 {
			return fmt.Errorf("token_exchange %s: %s is negative", d.name, time.Duration(d.v))
		}
	}
	if x.MaxInFlight < 0 {
		return fmt.Errorf("token_exchange max_in_flight: %d is negative", x.MaxInFlight)
	}
	return nil
}

// validateExchangeRules checks the rules' exchange targets, with or without token_exchange,
// and what the handler's own fields must be with token_exchange. The group checks itself.
func (h *Handler) validateExchangeRules() error {
	for i, r := range h.Rules {
		if r == nil || r.Exchange == nil {
			continue
		}
		if h.TokenExchange == nil {
			return fmt.Errorf("rules[%d].exchange: needs the token_exchange group (the token endpoint and client)", i)
		}
		if len(r.Prompts)+len(r.ResourceURIs)+len(r.Methods) > 0 || len(r.Tools) == 0 {
			return fmt.Errorf("rules[%d].exchange: only in a tool rule (a rule with tools and no other list)", i)
		}
		if err := r.Exchange.validate(fmt.Sprintf("rules[%d].exchange", i)); err != nil {
			return err
		}
	}
	if h.TokenExchange != nil && h.StripToken {
		// strip_token would remove the exchanged token from Authorization; the incoming
		// one never reaches the upstream with token_exchange anyway.
		return errors.New("strip_token: cannot be combined with token_exchange, which always removes the incoming token")
	}
	return nil
}

func (t *ExchangeTarget) validate(where string) error {
	if len(t.Audience) == 0 && t.Resource == "" {
		return fmt.Errorf("%s: %w: audience or resource, so that the authorization server knows what the token is for", where, errRequired)
	}
	for _, a := range t.Audience {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("%s audience %q: empty, or contains a space or control character", where, a)
		}
	}
	if t.Resource != "" {
		if err := checkResourceURL(t.Resource); err != nil {
			return fmt.Errorf("%s resource %q: %w", where, t.Resource, err)
		}
	}
	for _, s := range t.Scope {
		if !validScopeToken(s) {
			return fmt.Errorf("%s scope %q: %w", where, s, errBadScope)
		}
	}
	return nil
}

// checkClientAuth checks that the credentials fit the client authentication method.
func checkClientAuth(group, method, secret, key string) error {
	switch method {
	case "", verify.AuthClientSecretBasic, verify.AuthClientSecretPost:
		if secret == "" {
			return fmt.Errorf("%s client_secret: %w for auth_method %s", group, errRequired, cmpOr(method, verify.AuthClientSecretBasic))
		}
		if key != "" {
			return fmt.Errorf("%s private_key: only for auth_method private_key_jwt", group)
		}
	case verify.AuthPrivateKeyJWT:
		if key == "" {
			return fmt.Errorf("%s private_key: %w for auth_method private_key_jwt", group, errRequired)
		}
		if secret != "" {
			return fmt.Errorf("%s client_secret: not used with auth_method private_key_jwt", group)
		}
	default:
		return fmt.Errorf("%s auth_method %q: not client_secret_basic, client_secret_post or private_key_jwt", group, method)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkExchangeHeader refuses a header name that is not a token (RFC 9110 §5.1), or one that
// means something else to HTTP or to MCP: the new token must not change how the upstream
// reads the request.
func checkExchangeHeader(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errors.New("not a header field name")
		}
	}
	// Compared as CGI-style servers read names (X_Forwarded_For is X-Forwarded-For there).
	folded := strings.Map(cgiFold, strings.ToLower(name))
	if slices.Contains(reservedHeaders, folded) || strings.HasPrefix(folded, "sec-") ||
		strings.HasPrefix(folded, "access-control-") || strings.HasPrefix(folded, "x-forwarded-") {
		return errors.New("a header HTTP or MCP gives another meaning")
	}
	return nil
}

// reservedHeaders are the header names (lower case, '-' for '_' and '.') the new token must
// not go in: hop-by-hop headers (reverse_proxy would drop it), headers that change how a
// server reads the request (method overrides, encodings, ranges, the forwarded-for family),
// and MCP's own.
var reservedHeaders = []string{
	"host", "content-length", "content-type", "content-encoding", "content-range", "transfer-encoding",
	"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect", "range",
	"cookie", "dpop", "proxy-authorization", "proxy-authenticate", "www-authenticate",
	"forwarded", "via", "x-real-ip", "max-forwards", "origin", "accept", "accept-encoding", "early-data",
	"x-http-method-override", "x-http-method", "x-method-override",
	"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id",
}
