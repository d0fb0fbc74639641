package mcpauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// The Caddyfile syntax of token_exchange and of a rule's exchange line, as
// docs/token-exchange.md documents it.

// unmarshalCaddyfile reads the block of `token_exchange { ... }`.
func (x *TokenExchange) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("token_exchange: takes a block, not a value")
	}
	seen := map[string]bool{}
	for d.NextBlock(1) {
		name := d.Val()
		if seen[name] {
			return d.Errf("token_exchange %s: given more than once", name)
		}
		seen[name] = true
		switch name {
		case "audience", "resource", "scope":
			if err := parseExchangeTargetLine(d, "token_exchange", &x.ExchangeTarget); err != nil {
				return err
			}
			continue
		}
		if !d.NextArg() {
			return d.Errf("token_exchange %s: needs a value", name)
		}
		val := d.Val()
		if d.NextArg() {
			return d.Errf("token_exchange %s: takes one value, got more", name)
		}
		duration := func(dst *caddy.Duration) error {
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("token_exchange %s: %q is not a positive duration", name, val)
			}
			*dst = caddy.Duration(dur)
			return nil
		}
		var err error
		switch name {
		case "endpoint":
			x.Endpoint = val
			if len(placeholders(val)) == 0 {
				if cerr := jwks.CheckHTTPURL(val); cerr != nil {
					return d.Errf("token_exchange endpoint %q: %v", val, cerr)
				}
			}
		case "client_id":
			x.ClientID = val
		case "client_secret":
			x.ClientSecret = val
		case "auth_method":
			switch val {
			case verify.AuthClientSecretBasic, verify.AuthClientSecretPost, verify.AuthPrivateKeyJWT:
			default:
				return d.Errf("token_exchange auth_method %q: not client_secret_basic, client_secret_post or private_key_jwt", val)
			}
			x.AuthMethod = val
		case "private_key":
			x.PrivateKey = val
		case "header":
			if cerr := checkExchangeHeader(val); cerr != nil {
				return d.Errf("token_exchange header %q: %v", val, cerr)
			}
			x.Header = val
		case "cache_ttl":
			err = duration(&x.CacheTTL)
		case "timeout":
			err = duration(&x.Timeout)
		case "max_in_flight":
			n, cerr := strconv.Atoi(val)
			if cerr != nil || n < 1 {
				return d.Errf("token_exchange max_in_flight: %q is not a whole number >= 1", val)
			}
			x.MaxInFlight = n
		default:
			return d.Errf("unrecognized token_exchange subdirective %q", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseExchangeTargetLine reads one `audience`, `resource` or `scope` line.
func parseExchangeTargetLine(d *caddyfile.Dispenser, where string, t *ExchangeTarget) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s %s: needs a value", where, name)
	}
	switch name {
	case "audience":
		t.Audience = append(t.Audience, args...)
	case "resource":
		if len(args) > 1 || t.Resource != "" {
			return d.Errf("%s resource: takes one URI", where)
		}
		if len(placeholders(args[0])) == 0 {
			if err := checkResourceURL(args[0]); err != nil {
				return d.Errf("%s resource %q: %v", where, args[0], err)
			}
		}
		t.Resource = args[0]
	case "scope":
		for _, s := range args {
			if !validScopeToken(s) {
				return d.Errf("%s scope %q: %v", where, s, errBadScope)
			}
		}
		t.Scope = append(t.Scope, args...)
	}
	return nil
}

// parseRuleExchange reads the `exchange { audience … resource … scope … }` block of a rule.
func parseRuleExchange(d *caddyfile.Dispenser, kind string, r *Rule) error {
	if kind != "tool" {
		return d.Errf("%s: exchange: only in tool rules", kind)
	}
	if r.Exchange != nil {
		return d.Errf("tool: exchange: given more than once")
	}
	if d.NextArg() {
		return d.Errf("tool: exchange: takes a block, not a value")
	}
	r.Exchange = new(ExchangeTarget)
	seen := map[string]bool{}
	for d.NextBlock(2) {
		name := d.Val()
		if seen[name] {
			return d.Errf("tool exchange %s: given more than once", name)
		}
		seen[name] = true
		switch name {
		case "audience", "resource", "scope":
			if err := parseExchangeTargetLine(d, "tool exchange", r.Exchange); err != nil {
				return err
			}
		default:
			return d.Errf("tool exchange: unrecognized subdirective %q (audience, resource or scope)", name)
		}
	}
	if len(r.Exchange.Audience) == 0 && r.Exchange.Resource == "" {
		return d.Errf("tool exchange: needs audience or resource")
	}
	return nil
}
