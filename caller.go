package mcpauth

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
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
	identity *verify.Identity
	// subject is what the policy judged of the token once: its effective scopes and the
	// conditions it meets.
	subject policy.Subject
	scope   string // the granted scopes, space-separated, for {http.auth.user.scope}
	userID  string // sub, else client_id
	leeway  time.Duration
	// tokenHash identifies a token without jti in audit events; set only when audit is on.
	tokenHash string
	// sessionAnchor binds the sessions of a token without sub and client (bind_sessions).
	sessionAnchor string
	// provider answers the placeholders; built once so a request only registers it.
	provider caddy.ReplacerFunc
}

func newCaller(id *verify.Identity, p *policy.Policy, leeway time.Duration) *caller {
	c := &caller{identity: id, subject: p.NewSubject(id), leeway: leeway}
	c.scope = strings.Join(id.Scopes, " ")
	c.userID = id.Subject
	if c.userID == "" {
		c.userID = id.ClientID
	}
	c.provider = c.placeholder
	return c
}

// StillValid is asked by the cache before it serves the caller.
func (c *caller) StillValid(now time.Time) bool { return c.identity.StillValid(now, c.leeway) }

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
		return c.identity.ClientID, true
	case "user.scope":
		return c.scope, true
	case "user.iss":
		return c.identity.Issuer, true
	}
	if name, ok := strings.CutPrefix(rest, "mcp.claim."); ok {
		v, _ := c.identity.ClaimOnce(name)
		return claimString(v), true
	}
	return nil, false
}

// claimString formats a claim for a placeholder: strings as is, numbers and booleans
// formatted, arrays space-joined.
func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			parts = append(parts, claimString(e))
		}
		return strings.Join(parts, " ")
	case map[string]any:
		b, _ := json.Marshal(v)
		return string(b)
	}
	return ""
}

type tokenCache = tokencache.Cache[*caller]
