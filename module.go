// Package mcpauth is a Caddy HTTP handler that makes Caddy the OAuth 2.1 resource server in
// front of an MCP server. It publishes RFC 9728 protected resource metadata; verifies access
// tokens (JWTs against the authorization server's JWKS, opaque ones by RFC 7662
// introspection), with their DPoP (RFC 9449) or certificate (RFC 8705) binding; decides who
// may do what (internal/policy: scopes, clients, claims, per-tool/prompt/resource/method
// rules) on the JSON-RPC body, filters list results, binds MCP sessions to their caller and
// writes an audit event per decision; and answers failures with RFC 6750 challenges.
//
//	mcp_auth {
//		resource              https://mcp.example.com/mcp
//		authorization_servers https://auth.example.com
//		scopes                mcp:read
//		tool delete_* {
//			scopes mcp:admin
//		}
//	}
package mcpauth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/tokencache"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults and bounds. They are part of the documented behaviour (README).
const (
	defaultLeeway     = 30 * time.Second
	maxLeeway         = 5 * time.Minute
	maxTokenBytes     = 16 << 10
	defaultRefresh    = time.Hour
	defaultRetryAfter = 10 // seconds, for 503 while no keys were ever loaded
)

// minJWKSRefresh is the shortest jwks_refresh accepted.
const minJWKSRefresh = time.Minute

// defaultAlgorithms are the asymmetric JWS algorithms accepted when none are configured.
var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Handler is the `http.handlers.mcp_auth` module. It protects the routes it is placed in and
// serves the protected resource metadata document for the configured resource.
type Handler struct {
	// Resource is the canonical URI of the protected MCP endpoint, for example
	// `https://mcp.example.com/mcp`. It is the `resource` of the metadata document, the
	// default accepted audience, and the base of the `resource_metadata` URL in challenges.
	//
	// JSON: `resource`. Caddyfile: `resource`.
	Resource string `json:"resource,omitempty"`

	// AuthorizationServers are the issuer identifiers of the authorization servers that issue
	// tokens for this resource. They are published in the metadata document. At least one is
	// required.
	//
	// JSON: `authorization_servers`. Caddyfile: `authorization_servers`.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`

	// ResourceName is a human-readable name published in the metadata document.
	//
	// JSON: `resource_name`. Caddyfile: `resource_name`.
	ResourceName string `json:"resource_name,omitempty"`

	// ResourceDocumentation is a URL of human-readable documentation, published in the
	// metadata document.
	//
	// JSON: `resource_documentation`. Caddyfile: `resource_documentation`.
	ResourceDocumentation string `json:"resource_documentation,omitempty"`

	// ScopesSupported are the scopes advertised in the metadata document. By default, the
	// values of Scopes followed by those of AnyOf.
	//
	// JSON: `scopes_supported`. Caddyfile: `scopes_supported`.
	ScopesSupported []string `json:"scopes_supported,omitempty"`

	// Issuers are the accepted values of the token's `iss` claim. By default, the
	// AuthorizationServers.
	//
	// JSON: `issuers`. Caddyfile: `issuers`.
	Issuers []string `json:"issuers,omitempty"`

	// JWKSURLs are URLs of JSON Web Key Sets whose keys may sign tokens of any accepted
	// issuer. When neither JWKSURLs nor JWKSFile is set, each issuer's JWKS is found through
	// its RFC 8414 or OpenID Connect discovery document.
	//
	// JSON: `jwks_urls`. Caddyfile: `jwks_url` (one or more, repeatable).
	JWKSURLs []string `json:"jwks_urls,omitempty"`

	// JWKSFile is the path of a static JSON Web Key Set file, read at load. It may be
	// combined with JWKSURLs.
	//
	// JSON: `jwks_file`. Caddyfile: `jwks_file`.
	JWKSFile string `json:"jwks_file,omitempty"`

	// Audiences are the accepted values of the token's `aud` claim (a string or an array,
	// of which one value must match). By default, the Resource.
	//
	// JSON: `audiences`. Caddyfile: `audiences`.
	Audiences []string `json:"audiences,omitempty"`

	// AllowAnyAudience turns the audience check off. Tokens issued for any other service
	// are then accepted here, so this is logged as a warning at start.
	//
	// JSON: `allow_any_audience`. Caddyfile: `allow_any_audience`.
	AllowAnyAudience bool `json:"allow_any_audience,omitempty"`

	// Algorithms are the accepted JWS `alg` values. Only asymmetric algorithms are allowed.
	// By default RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA.
	//
	// JSON: `algorithms`. Caddyfile: `algorithms`.
	Algorithms []string `json:"algorithms,omitempty"`

	// Leeway is the clock skew tolerated when checking `exp`, `nbf` and `iat`. Default 30s,
	// at most 5m.
	//
	// JSON: `leeway`. Caddyfile: `leeway`.
	Leeway *caddy.Duration `json:"leeway,omitempty"`

	// RequireATJWT requires the JOSE header `typ` to be `at+jwt` (or `application/at+jwt`),
	// as RFC 9068 §4 asks of resource servers.
	//
	// JSON: `require_at_jwt`. Caddyfile: `require_at_jwt`.
	RequireATJWT bool `json:"require_at_jwt,omitempty"`

	// Scopes are required: the token must hold every one of them.
	//
	// JSON: `scopes`. Caddyfile: `scopes`.
	Scopes []string `json:"scopes,omitempty"`

	// AnyOf are alternatives: the token must hold at least one of them (in addition to
	// Scopes). The first one is the preferred one, named in challenges.
	//
	// JSON: `any_of`. Caddyfile: `any_of`.
	AnyOf []string `json:"any_of,omitempty"`

	// SkipScopes turns the scope check off. Exactly one of Scopes/AnyOf or SkipScopes must
	// be configured, so a policy is never forgotten by accident. Logged as a warning at start.
	//
	// JSON: `skip_scopes`. Caddyfile: `skip_scopes`.
	SkipScopes bool `json:"skip_scopes,omitempty"`

	// ScopeClaim names the claims that hold the granted scopes, each a string of scopes
	// separated by spaces (U+0020 only, RFC 6749 §3.3) or an array of strings, one scope per
	// element. An item that is not an RFC 6749 scope-token grants nothing; a claim that
	// appears twice in a token refuses it. With several claims (Entra ID: `scp` for
	// delegated tokens, `roles` for app-only ones), the granted scopes are the union. By
	// default `scope`, and `scp` when there is no `scope`.
	//
	// JSON: `scope_claim`, a string or an array of strings. Caddyfile: `scope_claim`.
	ScopeClaim ClaimNames `json:"scope_claim,omitempty"`

	// StripToken removes the Authorization header before the request reaches the next
	// handler, so the upstream never sees the token.
	//
	// JSON: `strip_token`. Caddyfile: `strip_token`.
	StripToken bool `json:"strip_token,omitempty"`

	// Rules are per-operation requirements, judged on the JSON-RPC messages of a POST body:
	// every rule that applies to a message adds its scopes to the base policy (Scopes and
	// AnyOf), and all of them must hold. With rules, the body is read after the token is
	// verified, and handed on unchanged.
	//
	// JSON: `rules`. Caddyfile: `tool`, `prompt`, `resource_uri` and `method` blocks.
	Rules []*Rule `json:"rules,omitempty"`

	// FilterToolsList removes from the result of a `tools/list` request (JSON or an SSE
	// stream) the tools that the token may not call under Rules, and marks the result
	// `cacheScope: "private"` (MCP 2026-07-28, "Caching").
	//
	// JSON: `filter_tools_list`. Caddyfile: `filter_tools_list`.
	FilterToolsList bool `json:"filter_tools_list,omitempty"`

	// MaxBodySize is the largest request body, in bytes, read for Rules and FilterToolsList.
	// A larger body is refused with 413. Default 1 MiB.
	//
	// JSON: `max_body_size`. Caddyfile: `max_body_size`.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// JWKSRefresh is how often remote key sets are fetched again in the background.
	// Default 1h.
	//
	// JSON: `jwks_refresh`. Caddyfile: `jwks_refresh`.
	JWKSRefresh caddy.Duration `json:"jwks_refresh,omitempty"`

	// TokenCacheSize is how many verified tokens are remembered, so that a token is
	// verified once and not on every request of a session. Default 10000; 0 turns the cache
	// off. Entries never outlive the token's exp or the key that signed it.
	//
	// JSON: `token_cache_size`. Caddyfile: `token_cache_size`.
	TokenCacheSize *int `json:"token_cache_size,omitempty"`

	// Clients, when set, are the only clients allowed: the token's client_id (else azp)
	// must match one of these patterns, exact or glob with `*` (client ID metadata document
	// clients are URLs: https://app.example.com/*). Another client gets 403 access_denied.
	//
	// JSON: `clients`. Caddyfile: `clients`.
	Clients []string `json:"clients,omitempty"`

	// RequireClaims are conditions on the token's claims, all of which must hold; a
	// failing one is answered 403 access_denied. A claim the token's JSON holds more than
	// once fails (fail closed).
	//
	// JSON: `require_claims`. Caddyfile: `require_claim <claim> <value...>` (repeatable).
	RequireClaims []ClaimCondition `json:"require_claims,omitempty"`

	// ScopeImplies maps a scope to scopes that holding it counts as holding, transitively
	// (MCP 2026-07-28: servers account for scope hierarchies). A cycle is refused. A 403
	// still names the scope a rule asks for, never the one implying it.
	//
	// JSON: `scope_implies`. Caddyfile: `scope_implies <scope> <implied...>` (repeatable).
	ScopeImplies map[string][]string `json:"scope_implies,omitempty"`

	// AllowMissingAudienceFor are client patterns whose tokens may lack `aud` altogether
	// (Cognito, Keycloak CIMD clients). A token that names another audience is still
	// refused.
	//
	// JSON: `allow_missing_audience_for`. Caddyfile: `allow_missing_audience_for`.
	AllowMissingAudienceFor []string `json:"allow_missing_audience_for,omitempty"`

	// ScopePrefix is put in front of every scope advertised (scopes_supported, challenges),
	// while a token may hold the scope with or without it. Entra ID: the resource (an
	// Application ID URI of the app) and "/".
	//
	// JSON: `scope_prefix`. Caddyfile: `scope_prefix`.
	ScopePrefix string `json:"scope_prefix,omitempty"`

	// Tenants limits the tokens accepted through an issuer with `{tenantid}` (Entra ID
	// multi-tenant) to these tenant ids (`tid`).
	//
	// JSON: `tenants`. Caddyfile: `tenants`.
	Tenants []string `json:"tenants,omitempty"`

	// FilterLists does for `prompts/list`, `resources/list` and `resources/templates/list`
	// what FilterToolsList does for tools, and implies it: a prompt is hidden when the token
	// may not get it, a resource when it may not read its URI, a resource template when it may
	// read none of its expansions (docs/filter.md says how that is told). Every list filtered
	// says `cacheScope: "private"`: it varies by caller (MCP 2026-07-28, "Caching").
	//
	// JSON: `filter_lists`. Caddyfile: `filter_lists`.
	FilterLists bool `json:"filter_lists,omitempty"`

	// Introspection checks tokens that are not JWTs with the authorization server
	// (RFC 7662), and JWTs too with its jwt_too. Off unless configured.
	//
	// JSON: `introspection`. Caddyfile: `introspection { ... }`.
	Introspection *Introspection `json:"introspection,omitempty"`

	// hashKeys: opaque tokens are cached under their SHA-256 (introspection is on).
	hashKeys bool

	// DPoP accepts DPoP-bound access tokens (RFC 9449) with the DPoP scheme and a proof on
	// every request. Tokens bound to a key (cnf.jkt) are refused as bearer tokens whether or
	// not this is set.
	//
	// JSON: `dpop`. Caddyfile: `dpop` (alone, or with a block).
	DPoP *DPoPConfig `json:"dpop,omitempty"`

	// MTLSBound honours certificate-bound access tokens (RFC 8705): a token with
	// cnf.x5t#S256 passes only over TLS with the client certificate of that SHA-256
	// thumbprint (Caddy's tls client_auth asks for it). Without it such tokens are refused.
	//
	// JSON: `mtls_bound`. Caddyfile: `mtls_bound`.
	MTLSBound bool `json:"mtls_bound,omitempty"`

	// BindSessions binds each MCP session to the caller who opened it (iss, sub and
	// client_id): the client is handed the server's Mcp-Session-Id with an HMAC tag, and a
	// request whose session ID does not carry the presenting caller's tag is answered 404, as
	// a session the server does not know, without reaching the MCP server. A refreshed token
	// of the same caller keeps the session. An empty object turns binding on with a key
	// generated at start (sessions then end when Caddy restarts).
	//
	// JSON: `bind_sessions`. Caddyfile: `bind_sessions [<key>]`.
	BindSessions *SessionBinding `json:"bind_sessions,omitempty"`

	// Audit writes one structured event per decision (allow or deny) at info level on the
	// logger `http.handlers.mcp_auth.audit`, for Caddy's `log` config to route. The JSON-RPC
	// body of POSTs is then read, as with rules, so that events name the method and tool.
	//
	// JSON: `audit`. Caddyfile: `audit`.
	Audit bool `json:"audit,omitempty"`

	// CloseStreamsAtExpiry ends a streamed response (an SSE stream, GET or POST) when the
	// token that opened it expires, plus the leeway; the client reconnects with a fresh token.
	//
	// JSON: `close_streams_at_expiry`. Caddyfile: `close_streams_at_expiry`.
	CloseStreamsAtExpiry bool `json:"close_streams_at_expiry,omitempty"`

	// TokenExchange exchanges the incoming access token, once the request is allowed, for a
	// token for the upstream (RFC 8693), which the upstream request carries instead.
	//
	// JSON: `token_exchange`. Caddyfile: `token_exchange { ... }`.
	TokenExchange *TokenExchange `json:"token_exchange,omitempty"`
	// Public lists what a caller without a token may do; lifecycle and discovery
	// (initialize, notifications, ping, server/discover and the list methods) are then
	// always allowed without one. With it, tools/list answers carry every tool's
	// securitySchemes, computed from the rules. Without it every request needs a token.
	//
	// JSON: `public`. Caddyfile: `public { tool|prompt|resource_uri|method <pattern...> }`.
	Public *PublicOps `json:"public,omitempty"`

	// ChallengeInResult lists clients (globs on the User-Agent, or on the client_id of the
	// token) that act only on a challenge inside a tool result: their single tools/call
	// refused for lack of a token or of scopes gets 200 and a result with isError and
	// _meta["mcp/www_authenticate"]. The Caddyfile subdirective alone lists `openai-mcp/*`
	// (ChatGPT).
	//
	// JSON: `challenge_in_result`. Caddyfile: `challenge_in_result [<client-glob...>]`.
	ChallengeInResult []string `json:"challenge_in_result,omitempty"`

	inResult *inResultClients // nil unless challenge_in_result

	// Store shares state with the other instances behind a load balancer, in Redis or
	// Valkey: every DPoP proof is claimed there once, and with its encryption_key the
	// introspection answers are cached there too.
	//
	// JSON: `store`. Caddyfile: `store redis { ... }`.
	Store *StoreConfig `json:"store,omitempty"`

	sessions *sessionBinder // nil unless bind_sessions
	audit    *zap.Logger    // nil unless audit

	logger   *zap.Logger
	leeway   time.Duration    // Leeway, or its default
	now      func() time.Time // the clock of verification and cache; tests replace it
	cache    *tokenCache
	metrics  *handlerMetrics
	verifier verify.Verifier
	policy   *policy.Policy
	ops      *opPolicy
	meta     metadataDoc
	chall    challenges
	keySets  *keySources
	released bool
	// missingAudienceOK is allow_missing_audience_for as a hook, nil when not set: every
	// verifier (JWT, introspection) asks it about a token without `aud`.
	missingAudienceOK func(clientID string) bool

	dpop         *verify.DPoP // nil when DPoP is off
	dpopRequired bool
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, prepares everything that does not depend on the request and
// acquires the key sets. Each config group (introspection, dpop, bind_sessions, store) provisions
// itself, as reverse_proxy's health checks do.
func (h *Handler) Provision(ctx caddy.Context) (err error) {
	// Errors found here have no Caddyfile line (the Caddyfile is already JSON): name the
	// site, so that a user with several sites knows which block to look at.
	defer func() { err = inSite(err, h.Resource) }()
	h.logger = ctx.Logger()
	testClock := h.now // nil but in tests: the token cache reads the real clock itself then
	if h.now == nil {
		h.now = time.Now
	}
	if err := h.expandPlaceholders(); err != nil {
		return err
	}
	// Validate runs after Provision, but the derived state below needs a sane config, so the
	// checks run here first; Validate repeats them for configs that skip Provision. The
	// groups check themselves in their Provision, once their placeholders are expanded.
	if err := h.validateOwn(); err != nil {
		return err
	}
	h.setDefaults()
	if err := initMetrics(ctx); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.metrics = newHandlerMetrics(h.Resource)

	if h.Public != nil {
		if err := h.Public.Provision(ctx, h); err != nil {
			return err
		}
	}
	if h.policy, err = policy.Compile(h.policyConfig()); err != nil {
		return err
	}
	h.inResult = newInResultClients(h.ChallengeInResult)
	h.ops = h.newOpPolicy()
	if h.Audit {
		h.audit = h.logger.Named(auditLoggerName)
	}
	if h.BindSessions != nil {
		if err := h.BindSessions.Provision(ctx, h); err != nil {
			return err
		}
	}
	if len(h.ScopesSupported) == 0 {
		// Base scopes first, then the rules'; a scope in several places is advertised once.
		h.ScopesSupported = h.policy.Scopes()
	}
	// With scope_prefix, clients must request the prefixed form (Entra reads a bare scope as
	// Microsoft Graph's): that is the form advertised.
	h.ScopesSupported = h.policy.Advertised(h.ScopesSupported)
	if h.DPoP != nil {
		if err := h.DPoP.Provision(ctx, h); err != nil {
			return err
		}
	}
	if h.Store != nil {
		// Before introspection, which caches its answers there too.
		if err := h.Store.Provision(ctx, h); err != nil {
			return err
		}
	}
	if h.meta, err = newMetadataDoc(h); err != nil {
		return err
	}
	h.chall = newChallenges(h.policy.ChallengeScope(), h.meta.url, h.challengeSchemes()...)
	h.warnIfMisplaced(ctx)

	if h.keySets, err = acquireKeySources(h); err != nil {
		return err
	}
	h.verifier = h.newJWTVerifier()
	if h.Introspection != nil {
		if err := h.Introspection.Provision(ctx, h); err != nil {
			return err
		}
	}
	if h.TokenExchange != nil {
		if err := h.TokenExchange.Provision(ctx, h); err != nil {
			return err
		}
	}
	size := defaultTokenCacheSize
	if h.TokenCacheSize != nil {
		size = *h.TokenCacheSize
	}
	h.cache = tokencache.New[*caller](size, testClock)
	h.logStart()
	return nil
}

// expandPlaceholders replaces the placeholders known at load in the handler's own fields.
func (h *Handler) expandPlaceholders() error {
	repl := caddy.NewReplacer()
	var expandErr error
	expand := func(field string, v *string) {
		if expandErr == nil {
			*v, expandErr = expandAtLoad(repl, field, *v)
		}
	}
	if err := checkNoTenantTemplate(h.AuthorizationServers); err != nil {
		return err
	}
	// {tenantid} in an issuer is not a Caddy placeholder but Entra's issuer template: it is
	// kept through the expansion of the rest ({env.*}).
	expandIssuer := func(v *string) {
		parts := strings.Split(*v, verify.TenantPlaceholder)
		for i := range parts {
			if parts[i] != "" {
				expand("issuers", &parts[i])
			}
		}
		*v = strings.Join(parts, verify.TenantPlaceholder)
	}
	for i := range h.Issuers {
		expandIssuer(&h.Issuers[i])
	}
	expand("resource", &h.Resource)
	expand("resource_name", &h.ResourceName)
	expand("resource_documentation", &h.ResourceDocumentation)
	expand("jwks_file", &h.JWKSFile)
	for _, l := range []struct {
		field string
		list  []string
	}{{"authorization_servers", h.AuthorizationServers},
		{"jwks_url (JSON jwks_urls)", h.JWKSURLs}, {"audiences", h.Audiences}} {
		for i := range l.list {
			expand(l.field, &l.list[i])
		}
	}
	return expandErr
}

// setDefaults fills the defaults of the handler's own fields.
func (h *Handler) setDefaults() {
	if len(h.Issuers) == 0 {
		h.Issuers = slices.Clone(h.AuthorizationServers)
	}
	if len(h.Audiences) == 0 && !h.AllowAnyAudience {
		h.Audiences = []string{h.Resource}
	}
	if len(h.Algorithms) == 0 {
		h.Algorithms = slices.Clone(defaultAlgorithms)
	}
	h.leeway = defaultLeeway
	if h.Leeway != nil {
		h.leeway = time.Duration(*h.Leeway)
	}
	if h.JWKSRefresh == 0 {
		h.JWKSRefresh = caddy.Duration(defaultRefresh)
	}
	if h.MaxBodySize == 0 {
		h.MaxBodySize = defaultMaxBodySize
	}
	if len(h.AllowMissingAudienceFor) > 0 {
		h.missingAudienceOK = policy.MatchClients(h.AllowMissingAudienceFor)
	}
}

// newOpPolicy is how requests are read for the policy, or nil when their bodies need not be:
// no rule, no list filtered, no audit.
func (h *Handler) newOpPolicy() *opPolicy {
	var lists mcpjson.ListKinds
	if h.FilterToolsList {
		lists = mcpjson.KindsOf(mcpjson.ListTools)
	}
	if h.FilterLists {
		lists = mcpjson.AllLists
	}
	if h.Public != nil {
		lists |= mcpjson.KindsOf(mcpjson.ListTools) // securitySchemes on every tools/list answer
	}
	if len(h.Rules) == 0 && lists == 0 && !h.Audit && len(h.ChallengeInResult) == 0 {
		return nil
	}
	ops := &opPolicy{lists: lists, maxBody: h.MaxBodySize, audit: h.Audit}
	// For audit events, and for the request's span when Caddy's tracing records it.
	ops.ruleLabels = make([]string, len(h.Rules))
	for i, r := range h.Rules {
		ops.ruleLabels[i] = ruleLabel(r)
	}
	return ops
}

// challengeSchemes are the authentication schemes challenged, in order: Bearer unless DPoP
// is required, then DPoP when it is on; none given means Bearer alone.
func (h *Handler) challengeSchemes() []scheme {
	if h.DPoP == nil {
		return nil
	}
	var schemes []scheme
	if !h.DPoP.Required {
		schemes = append(schemes, bearerScheme)
	}
	return append(schemes, dpopScheme(h.DPoP.Algorithms))
}

// newJWTVerifier is the verifier of JWT access tokens (RFC 9068) under the key sets.
func (h *Handler) newJWTVerifier() verify.Verifier {
	jv := &verify.JWT{
		Keys:         keyLookup{&h.keySets.Sources},
		Algorithms:   h.Algorithms,
		Issuers:      h.Issuers,
		Audiences:    h.Audiences,
		AnyAudience:  h.AllowAnyAudience,
		RequireATJWT: h.RequireATJWT,
		Leeway:       h.leeway,
		ScopeClaims:  h.ScopeClaim,
		Now:          h.now,
		Tenants:      h.Tenants,
	}
	if h.missingAudienceOK != nil {
		jv.AllowMissingAudience = h.missingAudienceOK
	}
	return jv
}

// logStart says at load what of the configuration an operator should know.
func (h *Handler) logStart() {
	if h.AllowAnyAudience {
		h.logger.Warn("allow_any_audience is set: tokens issued for any audience are accepted",
			zap.String("resource", h.Resource))
	}
	if h.SkipScopes {
		h.logger.Warn("skip_scopes is set: no scope is required", zap.String("resource", h.Resource))
	}
	if h.ops != nil {
		// forward_auth sends a GET without the body, so rules would silently not apply there.
		h.logger.Info("per-operation rules are judged on the JSON-RPC body of each POST; "+
			"behind forward_auth the body does not travel and only the base scopes apply, "+
			"so run mcp_auth in the Caddy that proxies to the MCP server",
			zap.String("resource", h.Resource), zap.Int("rules", len(h.Rules)),
			zap.Bool("filter_tools_list", h.FilterToolsList), zap.Bool("filter_lists", h.FilterLists))
	}
	h.keySets.logStart(h.logger, h.Resource)
}

// inSite appends to a provisioning error the resource of the site it belongs to.
func inSite(err error, resource string) error {
	if err == nil || resource == "" {
		return err
	}
	return fmt.Errorf("%w (in the mcp_auth of resource %s)", err, resource)
}

// expandAtLoad replaces the placeholders known when the config loads ({env.*}, {file.*}, …)
// and says which placeholder, as the user wrote it, left a value empty or unresolved, rather
// than letting the check of the result report "required" or a stray '{'.
func expandAtLoad(repl *caddy.Replacer, field, v string) (string, error) {
	if !strings.Contains(v, "{") {
		return v, nil
	}
	out := repl.ReplaceKnown(v, "")
	if phs := placeholders(out); len(phs) > 0 {
		return "", fmt.Errorf("%s %q: %w", field, v, errRequestPlaceholder(phs[0]))
	}
	if out == "" {
		return "", fmt.Errorf("%s %q: expands to an empty value (is the environment variable set?)", field, v)
	}
	return out, nil
}

// Validate checks the configuration. It is fast and has no side effects.
func (h *Handler) Validate() error {
	return h.validateConfig()
}

// validateConfig checks the handler's fields, then each config group's.
func (h *Handler) validateConfig() error {
	if err := h.validateOwn(); err != nil {
		return err
	}
	if h.Introspection != nil {
		if err := h.Introspection.Validate(); err != nil {
			return err
		}
	}
	if h.DPoP != nil {
		if err := h.DPoP.Validate(); err != nil {
			return err
		}
	}
	if h.Store != nil {
		if err := h.Store.Validate(); err != nil {
			return err
		}
	}
	if h.TokenExchange != nil {
		if err := h.TokenExchange.Validate(); err != nil {
			return err
		}
	}
	if h.Public != nil {
		if err := h.Public.Validate(); err != nil {
			return err
		}
	}
	if h.BindSessions != nil {
		return h.BindSessions.Validate()
	}
	return nil
}

// validateOwn checks the handler's own fields, not the config groups'.
func (h *Handler) validateOwn() error {
	if h.Resource == "" {
		return fmt.Errorf("resource: %w", errRequired)
	}
	if err := checkResourceURL(h.Resource); err != nil {
		return fmt.Errorf("resource %q: %w", h.Resource, err)
	}
	if len(h.AuthorizationServers) == 0 {
		return fmt.Errorf("authorization_servers: %w: at least one issuer URL", errRequired)
	}
	for _, as := range h.AuthorizationServers {
		if err := jwks.CheckHTTPURL(as); err != nil {
			return fmt.Errorf("authorization_servers %q: %w", as, err)
		}
	}
	for _, u := range h.JWKSURLs {
		if err := jwks.CheckHTTPURL(u); err != nil {
			return fmt.Errorf("jwks_url (JSON jwks_urls) %q: %w", u, err)
		}
	}
	for _, iss := range h.Issuers {
		if iss == "" {
			return fmt.Errorf("issuers: empty issuer")
		}
	}
	if h.ResourceDocumentation != "" {
		if err := jwks.CheckHTTPURL(h.ResourceDocumentation); err != nil {
			return fmt.Errorf("resource_documentation %q: %w", h.ResourceDocumentation, err)
		}
	}
	if h.AllowAnyAudience && len(h.Audiences) > 0 {
		return fmt.Errorf("allow_any_audience: cannot be combined with audiences")
	}
	for _, a := range h.Audiences {
		if a == "" {
			return fmt.Errorf("audiences: empty audience")
		}
	}
	for _, alg := range h.Algorithms {
		if err := checkAlgorithm(alg); err != nil {
			return fmt.Errorf("algorithms: %w", err)
		}
	}
	if h.Leeway != nil {
		if l := time.Duration(*h.Leeway); l < 0 || l > maxLeeway {
			return fmt.Errorf("leeway: %s is outside 0 to %s", l, maxLeeway)
		}
	}
	if r := time.Duration(h.JWKSRefresh); r < 0 || (r > 0 && r < minJWKSRefresh) {
		return fmt.Errorf("jwks_refresh: %s is below the minimum of %s", r, minJWKSRefresh)
	}
	if !h.SkipScopes && len(h.Scopes) == 0 && len(h.AnyOf) == 0 {
		return fmt.Errorf("scopes: %w", errNoPolicy)
	}
	if h.SkipScopes && (len(h.Scopes) > 0 || len(h.AnyOf) > 0) {
		return fmt.Errorf("skip_scopes: cannot be combined with scopes or any_of")
	}
	for field, list := range map[string][]string{"scopes": h.Scopes, "any_of": h.AnyOf, "scopes_supported": h.ScopesSupported} {
		for _, s := range list {
			if err := checkScope(s); err != nil {
				return fmt.Errorf("%s: %q: %w", field, s, err)
			}
		}
	}
	if h.TokenCacheSize != nil && *h.TokenCacheSize < 0 {
		return fmt.Errorf("token_cache_size: %d is negative", *h.TokenCacheSize)
	}
	if err := validateRules(h.Rules); err != nil {
		return err
	}
	if h.MaxBodySize < 0 {
		return fmt.Errorf("max_body_size: %d is negative", h.MaxBodySize)
	}
	if err := validateScopeClaims(h.ScopeClaim); err != nil {
		return err
	}
	if err := h.validateExchangeRules(); err != nil {
		return err
	}
	if err := checkInResultClients(h.ChallengeInResult); err != nil {
		return err
	}
	return h.validateAccess()
}

// Cleanup releases the key sets and the store client. Caddy calls it also when Provision failed halfway, so it
// copes with a handler that holds nothing yet, and releases at most once.
func (h *Handler) Cleanup() error {
	if h.released {
		return nil
	}
	h.released = true
	if h.Introspection != nil {
		h.Introspection.releaseAnswers()
	}
	storeErr := h.Store.release()
	if h.keySets != nil {
		return errors.Join(h.keySets.release(), storeErr)
	}
	return storeErr
}

func checkResourceURL(s string) error {
	if err := jwks.CheckHTTPURL(s); err != nil {
		return err
	}
	if strings.Contains(s, "#") {
		return errFragment
	}
	// A DPoP proof's htu names the resource's origin (RFC 9449 §4.3), and no client
	// addresses a URL with user information or a port out of range.
	if _, err := resourceOrigin(s); err != nil {
		return err
	}
	if u, _ := url.Parse(s); u != nil && u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p > 65535 {
			return errNoOrigin
		}
	}
	return nil
}

func checkAlgorithm(alg string) error {
	switch {
	case slices.Contains(defaultAlgorithms, alg):
		return nil
	case strings.EqualFold(alg, "none"):
		return errAlgNone
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return fmt.Errorf("%s: %w", alg, errSymmetric)
	default:
		return fmt.Errorf("%q: %w (known: %s)", alg, errAlgUnk, strings.Join(defaultAlgorithms, " "))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
