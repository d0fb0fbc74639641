package mcpauth

import (
	"errors"
	"slices"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
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

// validScopeToken checks RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool { return verify.ValidScopeToken(s) }

// errScopeComma names the slip `scopes a,b`.
var errScopeComma = errors.New("contains a comma: scopes are separated by spaces, not commas")

// checkScope checks a configured scope. A comma is legal in a scope-token, but no
// authorization server we know of puts one in a scope name, while `scopes a,b` is a common
// slip for `scopes a b`: loaded as one scope, it would refuse every token with 403.
func checkScope(s string) error {
	switch {
	case !validScopeToken(s):
		return errBadScope
	case strings.IndexByte(s, ',') >= 0:
		return errScopeComma
	}
	return nil
}
