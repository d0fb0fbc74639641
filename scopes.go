package mcpauth

import (
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// policy is the base scope requirement: every one of allOf, and one of anyOf when set. An
// empty policy (skip_scopes) is always met.
type policy struct {
	allOf []string
	anyOf []string
	claim string // "" means `scope`, then `scp`
}

func newPolicy(allOf, anyOf []string, claim string) policy {
	return policy{allOf: allOf, anyOf: anyOf, claim: claim}
}

// satisfiedBy reports whether the granted scopes meet the policy.
func (p policy) satisfiedBy(granted []string) bool {
	for _, s := range p.allOf {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	if len(p.anyOf) == 0 {
		return true
	}
	for _, s := range p.anyOf {
		if slices.Contains(granted, s) {
			return true
		}
	}
	return false
}

// challengeScope is what the `scope` challenge parameter names: every required scope and the
// first (preferred) alternative.
func (p policy) challengeScope() []string {
	out := slices.Clone(p.allOf)
	if len(p.anyOf) > 0 && !slices.Contains(out, p.anyOf[0]) {
		out = append(out, p.anyOf[0])
	}
	return out
}

// grantedScopes reads the scopes granted to the token: a space-separated string (RFC 9068
// `scope`) or an array of strings (`scp` of Entra ID and Okta).
func (p policy) grantedScopes(claims jwt.MapClaims) []string {
	if p.claim != "" {
		return scopeList(claims[p.claim])
	}
	if v, ok := claims["scope"]; ok {
		return scopeList(v)
	}
	return scopeList(claims["scp"])
}

func scopeList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, strings.Fields(s)...)
			}
		}
		return out
	case []string:
		return v
	}
	return nil
}

// validScopeToken checks RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}
