package mcpauth

import (
	"crypto/sha256"
	"net/http"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/exchange"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// The request path of token_exchange: which target a request's messages name, the
// exchanged token from the caller's slot or the exchange cache, and the headers it goes in.

// exchangeSlots keep, on a cached caller, the token exchanged per target, so that a request
// of a cached caller finds its exchanged token without hashing its incoming token. They are
// an index into the exchange cache, bounded with the caller cache; the exchange package's
// own cache (by SHA-256 of the incoming token and the target) stays the authority.
type exchangeSlots []atomic.Pointer[exchange.Token]

// newSlots makes the slots of a new caller; nil when token exchange is off.
func (x *TokenExchange) newSlots() exchangeSlots {
	if x == nil {
		return nil
	}
	return make(exchangeSlots, 1+len(x.rules))
}

// targetOf picks the target of a request's messages: a tools/call the first `tool` rule
// with an exchange target (in config order) that matches it, any other message the
// site's. Which rule matches a message is the policy's answer (the same patterns its scopes
// apply by); which upstream token follows is routing, decided here. ok is false when the
// messages of a batch need different targets.
func (x *TokenExchange) targetOf(msgs []mcpjson.Message) (target int, ok bool) {
	for i := range msgs {
		t := siteTarget
		if msgs[i].HasMethod && msgs[i].Method == mcpjson.MethodToolsCall {
			for _, r := range x.rules {
				if x.policy.RuleMatches(r.rule, &msgs[i]) {
					t = r.target
					break
				}
			}
		}
		if i > 0 && t != target {
			return 0, false
		}
		target = t
	}
	return target, true
}

// exchangeFor puts the token exchanged for target in r's upstream header, in place of the
// incoming one. td is the incoming token with its digest (computed here only if no one
// needed it before, and only when the caller holds no valid exchanged token), c its
// caller, rec the audit record (nil when audit is off).
func (x *TokenExchange) exchangeFor(r *http.Request, repl *caddy.Replacer, rec *auditRecord, c *caller, td *tokenDigest, target int) (denial, error) {
	if rec != nil {
		// Named on a refusal too.
		rec.exchangeTarget = x.label[target]
	}
	if r.Trailer != nil {
		// Trailer fields (RFC 9110 §6.5) come after the body, after this handler ran, and
		// reverse_proxy forwards them: a client could send the upstream its own token, or a
		// forged one in the upstream header, where nothing here replaces it. MCP requests
		// carry no trailers. net/http sets r.Trailer when a request announces trailers, and
		// fills it for a body read here already (the rules read it), announced or not.
		return denyExchangeTrailers, nil
	}
	var tok *exchange.Token
	if c.exchanged != nil {
		tok = c.exchanged[target].Load()
	}
	if tok != nil && tok.StillValid(x.now()) {
		// The caller's slot is a lookup in the exchange cache that needed no hashing.
		x.metrics.exchangeCache(true)
	} else {
		var err error
		tok, err = x.client.Exchange(r.Context(), td.raw, (*[sha256.Size]byte)(td.hash()), c.identity.Expiry, target)
		if err != nil {
			if exchange.KindOf(err) == exchange.Refused {
				if exp := c.identity.Expiry; !exp.IsZero() && !x.now().Before(exp) {
					// Past its exp, inside the leeway: the authorization server, which
					// allows none, refused an expired token. The client gets a new one
					// on 401 invalid_token; on 403 access_denied it would give up.
					return denyExpired, err
				}
				return denyExchangeRefused, err
			}
			return denyExchangeUnavailable, err
		}
		if c.exchanged != nil {
			c.exchanged[target].Store(tok)
		}
	}
	hdr := r.Header
	// The incoming token never reaches the upstream, nor its DPoP proof: the proof was for
	// this request to this server, and its ath is a hash of the incoming token. The target
	// header is replaced as a whole, so a value the client sent in it is gone too.
	// The new value goes in this request's own slice (the incoming Authorization's: one
	// value, bearerToken refused any other count), never one shared with other requests:
	// a later handler may edit it in place.
	vals := hdr["Authorization"]
	if len(vals) != 1 {
		vals = make([]string, 1)
	}
	delete(hdr, "Authorization")
	delete(hdr, "Dpop")
	if x.headerCGI != "" {
		x.dropSpellings(hdr)
	}
	vals[0] = tok.Value()
	hdr[x.header] = vals
	repl.Set(exchangedAudiencePlaceholder, x.audience[target])
	if rec != nil {
		rec.exchangedID = tok.JTI
	}
	return denyNone, nil
}

// clearAnonymous readies a request that passes without a token (a public operation), and so
// without an exchange: the upstream takes the token header for one mcp_auth set, so a value
// the client put there (or in a spelling a CGI-style server reads as it, or in a trailer)
// must not reach it; nor a DPoP proof, which nothing checked.
func (x *TokenExchange) clearAnonymous(r *http.Request) denial {
	if r.Trailer != nil {
		return denyExchangeTrailers
	}
	delete(r.Header, x.header)
	delete(r.Header, "Dpop")
	if x.headerCGI != "" {
		x.dropSpellings(r.Header)
	}
	return denyNone
}

// dropSpellings removes the headers a CGI-style server (FastCGI, WSGI, Rack, PHP) would read
// as the upstream header: X_Upstream_Token, X.Upstream-Token, … become HTTP_X_UPSTREAM_TOKEN
// there, as X-Upstream-Token does, and the one written last would win. Caddy drops headers
// with '_' or '.' unless expected_underscore_headers or expected_dot_headers keeps them (it
// then drops their hyphenated spelling, which this handler sets afterwards).
func (x *TokenExchange) dropSpellings(hdr http.Header) {
	for name := range hdr {
		if len(name) == len(x.headerCGI) && name != x.header && cgiSame(name, x.headerCGI) {
			delete(hdr, name)
		}
	}
}

// cgiFold maps a lower-case header name's character to the one a CGI variable name keeps.
func cgiFold(c rune) rune {
	if c == '_' || c == '.' {
		return '-'
	}
	return c
}

// cgiSame compares name with folded (lower case, '-' for '_' and '.'), as cgiFold would.
func cgiSame(name, folded string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_' || c == '.':
			c = '-'
		}
		if c != folded[i] {
			return false
		}
	}
	return true
}
