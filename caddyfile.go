package mcpauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
//		scope_claim            <claim>
//
//		strip_token
//		token_cache_size       <n>
//	}
//
// Lists may be given on one line or repeated over several. Each single-valued subdirective
// and each flag may appear once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		name := d.Val()
		single := func(dst *string) error {
			if seen[name] {
				return d.Errf("%s: given more than once", name)
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			*dst = d.Val()
			if d.NextArg() {
				return d.Errf("%s: takes one value, got more", name)
			}
			return nil
		}
		list := func(dst *[]string) error {
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			*dst = append(*dst, args...)
			return nil
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
			err = single(&h.ScopeClaim)
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
	return nil
}
