package mcpauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
		val, err := oneValue(d, "token_exchange", name)
		if err != nil {
			return err
		}
		handled, err := clientLine(d, "token_exchange", name, val, clientLines{&x.Endpoint, &x.ClientID,
			&x.ClientSecret, &x.AuthMethod, &x.PrivateKey})
		if err != nil {
			return err
		}
		if handled {
			continue
		}
		duration := func(dst *caddy.Duration) error { return positiveDuration(d, "token_exchange", name, val, dst) }
		switch name {
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
