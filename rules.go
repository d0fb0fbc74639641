package mcpauth

import (
	"fmt"
	"slices"

	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
)

// Rule is a per-operation requirement. It applies to a JSON-RPC message that any of its
// lists names, and then adds its Scopes and AnyOf to the base policy: the base policy and
// every rule that applies must all hold.
type Rule struct {
	// Tools are patterns of tool names: the rule applies to a `tools/call` whose
	// `params.name` matches one of them.
	Tools []string `json:"tools,omitempty"`

	// Prompts are patterns of prompt names: the rule applies to a `prompts/get` whose
	// `params.name` matches one of them.
	Prompts []string `json:"prompts,omitempty"`

	// ResourceURIs are patterns of resource URIs: the rule applies to a `resources/read`,
	// `resources/subscribe` or `resources/unsubscribe` whose `params.uri` matches one of
	// them. While any rule has such patterns, a `params.uri` that is not in normal form (a
	// spelling a server could read as another URI) is refused with 400. A `file:` pattern
	// also matches the same path with escapes decoded, in another ASCII case, or with a
	// trailing slash.
	ResourceURIs []string `json:"resource_uris,omitempty"`

	// Methods are patterns of JSON-RPC methods: the rule applies to any request or
	// notification whose `method` matches one of them.
	Methods []string `json:"methods,omitempty"`

	// Scopes are required when the rule applies: the token must hold every one of them.
	Scopes []string `json:"scopes,omitempty"`

	// AnyOf are alternatives required when the rule applies: the token must hold at least
	// one of them. The first one is the preferred one, named in challenges.
	AnyOf []string `json:"any_of,omitempty"`

	// Clients, when set, are the only clients (client_id, else azp; exact or glob) allowed
	// the operations the rule names; another client gets 403 access_denied.
	Clients []string `json:"clients,omitempty"`

	// RequireClaims are claim conditions that must all hold when the rule applies; a
	// failing one is answered 403 access_denied.
	RequireClaims []ClaimCondition `json:"require_claims,omitempty"`
}

// policyRule is the rule as internal/policy compiles it.
func (r *Rule) policyRule() policy.Rule {
	claims := make([]policy.Claim, len(r.RequireClaims))
	for i, c := range r.RequireClaims {
		claims[i] = policy.Claim(c)
	}
	return policy.Rule{Tools: r.Tools, Prompts: r.Prompts, ResourceURIs: r.ResourceURIs, Methods: r.Methods,
		Scopes: r.Scopes, AnyOf: r.AnyOf, Clients: r.Clients, Claims: claims}
}

type namedList struct {
	name string
	list []string
}

// validateRules checks the rules of the configuration.
func validateRules(rules []*Rule) error {
	for i, r := range rules {
		if r == nil {
			return fmt.Errorf("rules[%d]: empty rule", i)
		}
		if len(r.Tools)+len(r.Prompts)+len(r.ResourceURIs)+len(r.Methods) == 0 {
			return fmt.Errorf("rules[%d]: %w", i, errRuleNoTarget)
		}
		for _, f := range []namedList{{"tools", r.Tools}, {"prompts", r.Prompts}, {"resource_uris", r.ResourceURIs}, {"methods", r.Methods}} {
			if slices.Contains(f.list, "") {
				return fmt.Errorf("rules[%d].%s: %w", i, f.name, errRuleEmptyMatch)
			}
		}
		for _, p := range r.ResourceURIs {
			if err := policy.CheckURIPattern(p); err != nil {
				return fmt.Errorf("rules[%d].resource_uris: %q: write patterns in the normal form of the URIs they name: %w", i, p, err)
			}
		}
		if len(r.Scopes)+len(r.AnyOf)+len(r.Clients)+len(r.RequireClaims) == 0 {
			return fmt.Errorf("rules[%d]: %w", i, errRuleNoScope)
		}
		if err := validateRuleAccess(i, r); err != nil {
			return err
		}
		for _, f := range []namedList{{"scopes", r.Scopes}, {"any_of", r.AnyOf}} {
			for _, s := range f.list {
				if err := checkScope(s); err != nil {
					return fmt.Errorf("rules[%d].%s: %q: %w", i, f.name, s, err)
				}
			}
		}
	}
	return nil
}
