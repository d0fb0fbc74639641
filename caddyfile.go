package mcpauth

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_auth", parseCaddyfile)
	// Authentication comes before everything that serves content; before basic_auth so that
	// both may be combined with mcp_auth deciding first.
	httpcaddyfile.RegisterDirectiveOrder("mcp_auth", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcp_auth [<matcher>] {
//		resource               <url>
//		authorization_servers  <url...>
//		resource_name          <text>
//		resource_documentation <url>
//		scopes_supported       <scope...>
//
//		issuers                <url...>
//		jwks_url               <url...>
//		jwks_file              <path>
//		jwks_refresh           <duration>
//		audiences              <aud...>
//		allow_any_audience
//		algorithms             <alg...>
//		leeway                 <duration>
//		require_at_jwt
//
//		scopes                 <scope...>
//		any_of                 <scope...>
//		skip_scopes
//		scope_claim            <claim...>
//
//		strip_token
//		token_cache_size       <n>
//
//		tool         <name-pattern...>    { scopes <scope...> | any_of <scope...> }
//		prompt       <name-pattern...>    { ... }
//		resource_uri <uri-pattern...>     { ... }
//		method       <jsonrpc-method...>  { ... }
//		filter_tools_list
//		filter_lists
//		max_body_size <size>
//
//		clients                    <client-pattern...>
//		require_claim              <claim> <value...>
//		scope_implies              <scope> <implied-scope...>
//		allow_missing_audience_for <client-pattern...>
//		scope_prefix               <prefix>
//		tenants                    <tenant-id...>
//		introspection {
//			endpoint      <url>
//			client_id     <id>
//			client_secret <secret>
//			auth_method   client_secret_basic|client_secret_post|private_key_jwt
//			private_key   <path>
//			cache_ttl     <duration>
//			negative_ttl  <duration>
//			timeout       <duration>
//			max_in_flight <n>
//			max_rate      <n>
//			jwt_too
//		}
//		dpop [{
//			required
//			algorithms   <alg...>
//			max_age      <duration>
//			nonce        [<key>]
//			replay_cache <n>
//		}]
//		mtls_bound
//		bind_sessions [<key>]
//		audit
//		close_streams_at_expiry
//
//		public {
//			tool         <name-pattern...>
//			prompt       <name-pattern...>
//			resource_uri <uri-pattern...>
//			method       <jsonrpc-method...>
//		}
//		challenge_in_result [<client-glob...>]
//	}
//
// Rule blocks also take clients and require_claim. require_claim and scope_implies may be
// repeated.
//
// Lists may be given on one line or repeated over several. Each single-valued subdirective
// and each flag may appear once. tool, prompt, resource_uri and method may appear any number
// of times; each becomes one rule, in order, whose block sets scopes, any_of, or both.
// max_body_size takes a size such as 512KiB or 2MB. The bind_sessions key is best given as
// {env.NAME} or {file.PATH}; a key written out must have 32 bytes or more.
//
// What Validate would refuse is refused here already, where the error can carry the file and
// line and name the subdirective as the user wrote it; values with {env.*} placeholders are
// checked by Provision once expanded.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	directive := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	at := make(map[string]caddyfile.Token) // where each subdirective was written, for errors found at the end
	for d.NextBlock(0) {
		name := d.Val()
		if _, ok := at[name]; !ok {
			at[name] = d.Token()
		}
		single := func(dst *string) error {
			if seen[name] {
				return d.Errf("%s: given more than once", name)
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			*dst = d.Val()
			if err := checkValue(name, *dst); err != nil {
				return d.WrapErr(err)
			}
			if d.NextArg() {
				return d.Errf("%s: takes one value, got more", name)
			}
			return nil
		}
		list := func(dst *[]string) error {
			if !d.NextArg() {
				return d.ArgErr()
			}
			for {
				if err := checkValue(name, d.Val()); err != nil {
					return d.WrapErr(err)
				}
				*dst = append(*dst, d.Val())
				if !d.NextArg() {
					return nil
				}
			}
		}
		flag := func(dst *bool) error {
			if seen[name] {
				return d.Errf("%s: given more than once", name)
			}
			if d.NextArg() {
				return d.Errf("%s: takes no value", name)
			}
			*dst = true
			return nil
		}
		duration := func(dst *caddy.Duration) error {
			var s string
			if err := single(&s); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			if err := checkDuration(name, dur); err != nil {
				return d.WrapErr(err)
			}
			*dst = caddy.Duration(dur)
			return nil
		}

		var err error
		switch name {
		case "resource":
			err = single(&h.Resource)
		case "authorization_servers":
			err = list(&h.AuthorizationServers)
		case "resource_name":
			err = single(&h.ResourceName)
		case "resource_documentation":
			err = single(&h.ResourceDocumentation)
		case "scopes_supported":
			err = list(&h.ScopesSupported)
		case "issuers":
			err = list(&h.Issuers)
		case "jwks_url":
			err = list(&h.JWKSURLs)
		case "jwks_file":
			err = single(&h.JWKSFile)
		case "jwks_refresh":
			err = duration(&h.JWKSRefresh)
		case "audiences":
			err = list(&h.Audiences)
		case "allow_any_audience":
			err = flag(&h.AllowAnyAudience)
		case "algorithms":
			err = list(&h.Algorithms)
		case "leeway":
			var l caddy.Duration
			if err = duration(&l); err == nil {
				h.Leeway = &l
			}
		case "require_at_jwt":
			err = flag(&h.RequireATJWT)
		case "scopes":
			err = list(&h.Scopes)
		case "any_of":
			err = list(&h.AnyOf)
		case "skip_scopes":
			err = flag(&h.SkipScopes)
		case "scope_claim":
			err = parseScopeClaim(d, h)
		case "strip_token":
			err = flag(&h.StripToken)
		case "token_cache_size":
			var v string
			if err = single(&v); err == nil {
				n, convErr := strconv.Atoi(v)
				if convErr != nil || n < 0 {
					return d.Errf("token_cache_size: %q is not a whole number >= 0", v)
				}
				h.TokenCacheSize = &n
			}
		case "tool", "prompt", "resource_uri", "method":
			err = parseRule(d, h)
		case "filter_tools_list":
			err = flag(&h.FilterToolsList)
		case "max_body_size":
			var s string
			if err = single(&s); err == nil {
				var size uint64
				if size, err = humanize.ParseBytes(s); err != nil || size == 0 || size > math.MaxInt64 {
					return d.Errf("max_body_size: %q is not a size", s)
				}
				h.MaxBodySize = int64(size)
			}
		case "clients":
			err = list(&h.Clients)
		case "require_claim":
			err = parseClaimCondition(d, &h.RequireClaims)
		case "scope_implies":
			err = parseScopeImplies(d, h)
		case "allow_missing_audience_for":
			err = list(&h.AllowMissingAudienceFor)
		case "scope_prefix":
			err = single(&h.ScopePrefix)
		case "tenants":
			err = list(&h.Tenants)
		case "filter_lists":
			err = flag(&h.FilterLists)
		case "introspection":
			if seen[name] {
				return d.Errf("introspection: given more than once")
			}
			h.Introspection = new(Introspection)
			err = h.Introspection.unmarshalCaddyfile(d)
		case "token_exchange":
			if seen[name] {
				return d.Errf("token_exchange: given more than once")
			}
			h.TokenExchange = new(TokenExchange)
			err = h.TokenExchange.unmarshalCaddyfile(d)
		case "store":
			if seen[name] {
				return d.Errf("store: given more than once")
			}
			if h.Store, err = unmarshalStore(d); err != nil {
				return err
			}
			seen[name] = true
			continue // the block is read
		case "dpop":
			if seen[name] {
				return d.Errf("dpop: given more than once")
			}
			if h.DPoP, err = unmarshalDPoP(d); err != nil {
				return err
			}
			seen[name] = true
			continue // the block is read
		case "mtls_bound":
			err = flag(&h.MTLSBound)
		case "bind_sessions":
			if seen[name] {
				return d.Errf("%s: given more than once", name)
			}
			h.BindSessions = &SessionBinding{}
			if d.NextArg() {
				h.BindSessions.Key = d.Val()
				if err := checkSessionKeyArg(h.BindSessions.Key); err != nil {
					return d.WrapErr(err)
				}
				if d.NextArg() {
					return d.Errf("%s: takes at most one value, the key", name)
				}
			}
		case "audit":
			err = flag(&h.Audit)
		case "close_streams_at_expiry":
			err = flag(&h.CloseStreamsAtExpiry)
		case "public":
			if seen[name] {
				return d.Errf("public: given more than once")
			}
			if h.Public, err = unmarshalPublic(d); err != nil {
				return err
			}
			seen[name] = true
			continue // the block is read
		case "challenge_in_result":
			err = unmarshalChallengeInResult(d, h)
		default:
			return d.Errf("unrecognized mcp_auth subdirective %q", name)
		}
		if err != nil {
			return err
		}
		if d.NextBlock(1) {
			return d.Errf("%s: takes no block", name)
		}
		seen[name] = true
	}
	return checkBlock(h, directive, at)
}

// checkValue refuses, while the Caddyfile position is known, a value that Validate would
// refuse later without one. A value with placeholders known when the config loads ({env.*},
// {file.*}, …) is checked by Provision once expanded; a request placeholder never has a
// value there, so it is refused now.
func checkValue(name, v string) error {
	if name == "authorization_servers" {
		if err := checkNoTenantTemplate([]string{v}); err != nil {
			return err
		}
	}
	if name == "issuers" {
		// {tenantid} is Entra's issuer template, not a placeholder (see Provision).
		v = strings.ReplaceAll(v, verify.TenantPlaceholder, "")
	}
	if expandedAtLoad(name) {
		if phs := placeholders(v); len(phs) > 0 {
			for _, ph := range phs {
				if !loadTimePlaceholder(ph) {
					return fmt.Errorf("%s %q: %w", name, v, errRequestPlaceholder(ph))
				}
			}
			return nil // checked by Provision once expanded
		}
	}
	var err error
	switch name {
	case "resource":
		err = checkResourceURL(v)
	case "authorization_servers", "jwks_url", "resource_documentation":
		err = jwks.CheckHTTPURL(v)
	case "scopes", "any_of", "scopes_supported":
		err = checkScope(v)
		if err == nil && v == offlineAccess {
			return fmt.Errorf("%s: %w", name, errOfflineAccess)
		}
	case "scope_prefix":
		if !validScopeToken(v) {
			err = errBadScope
		}
	case "tenants":
		if !validTenant(v) {
			return fmt.Errorf("tenants: %q is not a tenant id (letters, digits and '-')", v)
		}
	case "algorithms":
		if err := checkAlgorithm(v); err != nil {
			return fmt.Errorf("algorithms: %w", err) // the error names the algorithm
		}
	}
	if err != nil {
		return fmt.Errorf("%s %q: %w", name, v, err)
	}
	return nil
}

// checkDuration applies the bounds of leeway and jwks_refresh.
func checkDuration(name string, d time.Duration) error {
	switch {
	case name == "leeway" && (d < 0 || d > maxLeeway):
		return fmt.Errorf("leeway: %s is outside 0 to %s", d, maxLeeway)
	case name == "jwks_refresh" && (d < 0 || (d > 0 && d < minJWKSRefresh)):
		return fmt.Errorf("jwks_refresh: %s is below the minimum of %s", d, minJWKSRefresh)
	}
	return nil
}

// checkBlock applies the rules that concern the whole block once it is read, and reports
// them at the line of the subdirective at fault, or of mcp_auth itself for a missing one.
func checkBlock(h *Handler, directive caddyfile.Token, at map[string]caddyfile.Token) error {
	errAt := func(tok caddyfile.Token, err error) error {
		d := caddyfile.NewDispenser([]caddyfile.Token{tok})
		d.Next()
		return d.WrapErr(err)
	}
	switch {
	case h.Resource == "":
		return errAt(directive, fmt.Errorf("resource: %w: the URL MCP clients connect to, such as https://mcp.example.com/mcp", errRequired))
	case len(h.AuthorizationServers) == 0:
		return errAt(directive, fmt.Errorf("authorization_servers: %w: at least one issuer URL", errRequired))
	case !h.SkipScopes && len(h.Scopes) == 0 && len(h.AnyOf) == 0:
		return errAt(directive, fmt.Errorf("scopes: %w", errNoPolicy))
	case h.SkipScopes && (len(h.Scopes) > 0 || len(h.AnyOf) > 0):
		return errAt(at["skip_scopes"], errors.New("skip_scopes: cannot be combined with scopes or any_of"))
	case h.AllowAnyAudience && len(h.Audiences) > 0:
		return errAt(at["allow_any_audience"], errors.New("allow_any_audience: cannot be combined with audiences"))
	case h.AllowAnyAudience && len(h.AllowMissingAudienceFor) > 0:
		return errAt(at["allow_missing_audience_for"], errors.New("allow_missing_audience_for: cannot be combined with allow_any_audience"))
	}
	if err := policy.CheckImplies(h.ScopeImplies); err != nil {
		return errAt(at["scope_implies"], err)
	}
	return nil
}

// errRequestPlaceholder says why {name} cannot work in a value read when the config loads.
func errRequestPlaceholder(name string) error {
	return fmt.Errorf("{%s} has no value when the config loads (request placeholders never do); write the value itself or use {env.NAME}", name)
}

// expandedAtLoad reports whether Provision replaces placeholders in the subdirective's values.
func expandedAtLoad(name string) bool {
	switch name {
	case "resource", "resource_name", "resource_documentation", "jwks_file",
		"authorization_servers", "issuers", "jwks_url", "audiences":
		return true
	}
	return false
}

// placeholders returns the names of the {placeholders} in v, as Caddy's replacer finds them
// (a backslash before the brace escapes it).
func placeholders(v string) []string {
	var names []string
	for i := 0; i < len(v); i++ {
		if v[i] != '{' || (i > 0 && v[i-1] == '\\') {
			continue
		}
		end := strings.IndexByte(v[i:], '}')
		if end < 0 {
			break
		}
		if end > 1 {
			names = append(names, v[i+1:i+end])
		}
		i += end
	}
	return names
}

// loadTimePlaceholder reports whether Caddy's global replacer, the one Provision uses, knows
// the placeholder: environment variables, files, system and time values.
func loadTimePlaceholder(name string) bool {
	for _, p := range []string{"env.", "file.", "system.", "time."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// parseRule reads one rule block: `tool|prompt|resource_uri|method <pattern...> { ... }`.
func parseRule(d *caddyfile.Dispenser, h *Handler) error {
	kind := d.Val()
	patterns := d.RemainingArgs()
	if len(patterns) == 0 {
		return d.Errf("%s: needs at least one pattern", kind)
	}
	if slices.Contains(patterns, "") {
		return d.Errf("%s: empty pattern", kind)
	}
	r := new(Rule)
	switch kind {
	case "tool":
		r.Tools = patterns
	case "prompt":
		r.Prompts = patterns
	case "resource_uri":
		r.ResourceURIs = patterns
	case "method":
		r.Methods = patterns
	}
	for d.NextBlock(1) {
		var dst *[]string
		switch d.Val() {
		case "scopes":
			dst = &r.Scopes
		case "any_of":
			dst = &r.AnyOf
		case "clients":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if slices.Contains(args, "") {
				return d.Errf("%s: clients: %v", kind, errEmptyClient)
			}
			r.Clients = append(r.Clients, args...)
			continue
		case "require_claim":
			if err := parseClaimCondition(d, &r.RequireClaims); err != nil {
				return err
			}
			continue
		case "exchange":
			if err := parseRuleExchange(d, kind, r); err != nil {
				return err
			}
			continue
		default:
			return d.Errf("%s: unrecognized subdirective %q (scopes, any_of, clients, require_claim or exchange)", kind, d.Val())
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		for _, s := range args {
			if err := checkScope(s); err != nil {
				return d.Errf("%s: %q: %v", kind, s, err)
			}
			if s == offlineAccess {
				return d.Errf("%s: %v", kind, errOfflineAccess)
			}
		}
		*dst = append(*dst, args...)
	}
	if len(r.Scopes)+len(r.AnyOf)+len(r.Clients)+len(r.RequireClaims) == 0 && r.Exchange == nil {
		return d.Errf("%s %s: %v", kind, strings.Join(patterns, " "), errRuleNoScope)
	}
	h.Rules = append(h.Rules, r)
	return nil
}

// parseClaimCondition reads `require_claim <claim> <value...>`.
func parseClaimCondition(d *caddyfile.Dispenser, dst *[]ClaimCondition) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("require_claim: needs a claim name and at least one value")
	}
	cc := ClaimCondition{Claim: args[0], Values: args[1:]}
	if err := checkClaimConditions("require_claim", []ClaimCondition{cc}); err != nil {
		return d.WrapErr(err)
	}
	*dst = append(*dst, cc)
	return nil
}

// parseScopeImplies reads `scope_implies <scope> <implied...>`; the same scope may be given
// again to add to its list.
func parseScopeImplies(d *caddyfile.Dispenser, h *Handler) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("scope_implies: needs a scope and at least one implied scope")
	}
	for _, s := range args {
		if err := checkScope(s); err != nil {
			return d.Errf("scope_implies: %q: %v", s, err)
		}
	}
	if h.ScopeImplies == nil {
		h.ScopeImplies = make(map[string][]string)
	}
	for _, im := range args[1:] {
		if !slices.Contains(h.ScopeImplies[args[0]], im) {
			h.ScopeImplies[args[0]] = append(h.ScopeImplies[args[0]], im)
		}
	}
	return nil
}

// checkSessionKeyArg checks a bind_sessions key as written: placeholders known at load are
// expanded and checked by Provision; anything else must already be long enough.
func checkSessionKeyArg(key string) error {
	phs := placeholders(key)
	for _, ph := range phs {
		if !loadTimePlaceholder(ph) {
			return fmt.Errorf("bind_sessions: %w", errRequestPlaceholder(ph))
		}
	}
	if len(phs) > 0 {
		return nil
	}
	return checkSessionKey(key)
}

// clientLines are the fields of a group that calls the authorization server as an OAuth
// client (introspection, token_exchange).
type clientLines struct{ endpoint, clientID, clientSecret, authMethod, privateKey *string }

// clientLine reads one of the lines every such group has, with its one value val, into c;
// handled is false for any other line.
func clientLine(d *caddyfile.Dispenser, group, name, val string, c clientLines) (handled bool, err error) {
	switch name {
	case "endpoint":
		if len(placeholders(val)) == 0 {
			if cerr := jwks.CheckHTTPURL(val); cerr != nil {
				return true, d.Errf("%s endpoint %q: %v", group, val, cerr)
			}
		}
		*c.endpoint = val
	case "client_id":
		*c.clientID = val
	case "client_secret":
		*c.clientSecret = val
	case "auth_method":
		switch val {
		case verify.AuthClientSecretBasic, verify.AuthClientSecretPost, verify.AuthPrivateKeyJWT:
		default:
			return true, d.Errf("%s auth_method %q: not client_secret_basic, client_secret_post or private_key_jwt", group, val)
		}
		*c.authMethod = val
	case "private_key":
		*c.privateKey = val
	default:
		return false, nil
	}
	return true, nil
}

// positiveDuration reads val, the value of a group's line name, into dst.
func positiveDuration(d *caddyfile.Dispenser, group, name, val string, dst *caddy.Duration) error {
	dur, err := caddy.ParseDuration(val)
	if err != nil || dur <= 0 {
		return d.Errf("%s %s: %q is not a positive duration", group, name, val)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// oneValue reads the one value of a group's line name.
func oneValue(d *caddyfile.Dispenser, group, name string) (string, error) {
	if !d.NextArg() {
		return "", d.Errf("%s %s: needs a value", group, name)
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s %s: takes one value, got more", group, name)
	}
	return val, nil
}
