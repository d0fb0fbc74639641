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

// scopeList reads the scope tokens of a claim value. Only a scope token grants anything:
//
//   - A string is split on the space character U+0020 alone (RFC 6749 §3.3: scope =
//     scope-token *( SP scope-token )). Other whitespace (tab, new line, U+00A0, U+3000,
//     U+2028…) is not a separator: an item holding it is not a scope token and grants
//     nothing, so "mcp:read\u00a0mcp:admin" grants neither scope. Empty items (two spaces
//     in a row) are skipped.
//   - An array element is ONE scope token, never split: an element with a space (or any
//     character outside the scope-token grammar, non-ASCII included) grants nothing.
//     Elements that are not strings are skipped.
func scopeList(v any) []string {
	switch v := v.(type) {
	case string:
		out := make([]string, 0, strings.Count(v, " ")+1)
		for s := range strings.SplitSeq(v, " ") {
			if validScopeToken(s) {
				out = append(out, s)
			}
		}
		return out
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && validScopeToken(s) {
				out = append(out, s)
			}
		}
		return out
	case []string:
		out := make([]string, 0, len(v))
		for _, s := range v {
			if validScopeToken(s) {
				out = append(out, s)
			}
		}
		return out
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
