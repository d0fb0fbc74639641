package mcpauth

import (
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/tokencache"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// The verified-token cache (internal/tokencache) holds callers: an identity from a verifier
// with what this handler derives from it once. An entry is served only while the identity
// says it is still valid (before exp plus leeway, and while what vouched for it stands).
const defaultTokenCacheSize = 10000

// caller is a verified identity as the request path needs it. It is immutable once built, so
// cached callers are shared by concurrent requests.
type caller struct {
	id     *verify.Identity
	scope  string // the granted scopes, space-separated, for {http.auth.user.scope}
	userID string // sub, else client_id
	baseOK bool   // the handler's base scope policy is met
	leeway time.Duration
	// effective are the granted scopes as the policy reads them (scope_prefix, scope_implies).
	effective []string
	// condOK holds the client and claim conditions of the access policy that the caller
	// meets; baseDeny is the denial of the first base condition it fails, or denyNone.
	condOK   matchSet
	baseDeny denial
	// tokenHash identifies a token without jti in audit events; set only when audit is on.
	tokenHash string
	// sessionAnchor binds the sessions of a token without sub and client (bind_sessions).
	sessionAnchor string
	// provider answers the placeholders; built once so a request only registers it.
	provider caddy.ReplacerFunc
}

func newCaller(id *verify.Identity, p policy, a *accessPolicy, leeway time.Duration) *caller {
	c := &caller{id: id, leeway: leeway, effective: id.Scopes, baseDeny: denyNone}
	c.scope = strings.Join(id.Scopes, " ")
	if a != nil {
		c.effective = a.effectiveScopes(id.Scopes)
		a.evaluate(id, &c.condOK)
		c.baseDeny = a.firstFailed(a.base, &c.condOK)
	}
	c.baseOK = p.satisfiedBy(c.effective)
	c.userID = id.Subject
	if c.userID == "" {
		c.userID = id.ClientID
	}
	c.provider = c.placeholder
	return c
}

// granted is the caller's scopes as the policy reads them: with the implied ones, and in
// both forms when scope_prefix is set.
func (c *caller) granted() []string { return c.effective }

// StillValid is asked by the cache before it serves the caller.
func (c *caller) StillValid(now time.Time) bool { return c.id.StillValid(now, c.leeway) }

// placeholder resolves {http.auth.user.*} and {http.auth.mcp.claim.*}.
func (c *caller) placeholder(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.")
	if !ok {
		return nil, false
	}
	switch rest {
	case "user.id":
		return c.userID, true
	case "user.client_id":
		return c.id.ClientID, true
	case "user.scope":
		return c.scope, true
	case "user.iss":
		return c.id.Issuer, true
	}
	if name, ok := strings.CutPrefix(rest, "mcp.claim."); ok {
		v, _ := c.id.ClaimOnce(name)
		return claimString(v), true
	}
	return nil, false
}

type tokenCache = tokencache.Cache[*caller]
