package mcpauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// The configuration of who may call, beyond scopes (clients, require_claim, scope_implies,
// scope_prefix), and its checks at load. internal/policy compiles and judges it.

// ClaimCondition requires a claim of the token to have one of Values: a string claim must
// equal one of them, an array claim must contain one of them as a string element. Anything
// else (a number, a boolean, an object, an array without such an element, no claim) fails.
type ClaimCondition struct {
	// Claim is the claim name, or a dotted path into nested objects such as
	// `realm_access.roles` (Keycloak). A claim whose own name contains a dot cannot be named.
	Claim string `json:"claim,omitempty"`
	// Values are the accepted values, compared exactly.
	Values []string `json:"values,omitempty"`
}

// offlineAccess is the scope that asks for a refresh token. MCP 2026-07-28: a resource never
// asks for it; a client decides that with its authorization server.
const offlineAccess = "offline_access"

// validateAccess checks the access-policy fields of the configuration.
func (h *Handler) validateAccess() error {
	for field, list := range map[string][]string{"scopes": h.Scopes, "any_of": h.AnyOf, "scopes_supported": h.ScopesSupported} {
		if slices.Contains(list, offlineAccess) {
			return fmt.Errorf("%s: %w", field, errOfflineAccess)
		}
	}
	if err := checkClientPatterns("clients", h.Clients); err != nil {
		return err
	}
	if err := checkClaimConditions("require_claim (JSON require_claims)", h.RequireClaims); err != nil {
		return err
	}
	for s, list := range h.ScopeImplies {
		if err := checkScope(s); err != nil {
			return fmt.Errorf("scope_implies: %q: %w", s, err)
		}
		if len(list) == 0 {
			return fmt.Errorf("scope_implies %s: names no implied scope", s)
		}
		// offline_access is what any client asks for to get a refresh token (OpenID Connect
		// Core §11): were it to imply a scope, every such client would hold that scope; and
		// as an implied scope it satisfies nothing, since no policy may require it.
		if s == offlineAccess || slices.Contains(list, offlineAccess) {
			return fmt.Errorf("scope_implies %s: %w", s, errOfflineAccess)
		}
		for _, im := range list {
			if err := checkScope(im); err != nil {
				return fmt.Errorf("scope_implies %s: %q: %w", s, im, err)
			}
		}
	}
	if err := policy.CheckImplies(h.ScopeImplies); err != nil {
		return err
	}
	if err := checkClientPatterns("allow_missing_audience_for", h.AllowMissingAudienceFor); err != nil {
		return err
	}
	if h.AllowAnyAudience && len(h.AllowMissingAudienceFor) > 0 {
		return fmt.Errorf("allow_missing_audience_for: cannot be combined with allow_any_audience")
	}
	if h.ScopePrefix != "" && !validScopeToken(h.ScopePrefix) {
		return fmt.Errorf("scope_prefix: %q: %w", h.ScopePrefix, errBadScope)
	}
	if len(h.Tenants) > 0 && !slices.ContainsFunc(h.Issuers, isTenantTemplate) {
		return fmt.Errorf("tenants: no issuer contains %s; tenants limit a multi-tenant issuer such as https://login.microsoftonline.com/%s/v2.0",
			verify.TenantPlaceholder, verify.TenantPlaceholder)
	}
	for _, t := range h.Tenants {
		if !validTenant(t) {
			return fmt.Errorf("tenants: %q is not a tenant id (letters, digits and '-')", t)
		}
		if strings.ToLower(t) != t {
			// Tokens carry the tenant id in lowercase (tid, and in iss); an entry with capitals
			// would never match, and every token of that tenant would be refused.
			return fmt.Errorf("tenants: %q: write the tenant id in lowercase, as tokens carry it (tid)", t)
		}
	}
	for _, iss := range h.Issuers {
		if strings.Count(iss, verify.TenantPlaceholder) > 1 {
			return fmt.Errorf("issuers %q: %s may appear once", iss, verify.TenantPlaceholder)
		}
	}
	return checkNoTenantTemplate(h.AuthorizationServers)
}

// checkNoTenantTemplate refuses {tenantid} in authorization_servers: clients are sent there,
// and no client can use a template.
func checkNoTenantTemplate(servers []string) error {
	for _, as := range servers {
		if strings.Contains(as, verify.TenantPlaceholder) {
			return fmt.Errorf("authorization_servers %q: %s belongs in issuers; list here the authorization server clients use, such as https://login.microsoftonline.com/organizations/v2.0",
				as, verify.TenantPlaceholder)
		}
	}
	return nil
}

// validateRuleAccess checks a rule's clients and claim conditions and refuses offline_access.
func validateRuleAccess(i int, r *Rule) error {
	if slices.Contains(r.Scopes, offlineAccess) || slices.Contains(r.AnyOf, offlineAccess) {
		return fmt.Errorf("rules[%d]: %w", i, errOfflineAccess)
	}
	if err := checkClientPatterns(fmt.Sprintf("rules[%d].clients", i), r.Clients); err != nil {
		return err
	}
	return checkClaimConditions(fmt.Sprintf("rules[%d].require_claims", i), r.RequireClaims)
}

func checkClientPatterns(field string, list []string) error {
	if slices.Contains(list, "") {
		return fmt.Errorf("%s: %w", field, errEmptyClient)
	}
	for _, p := range list {
		if err := policy.CheckClientPattern(p); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	return nil
}

func checkClaimConditions(field string, list []ClaimCondition) error {
	for _, cc := range list {
		if _, err := verify.NewClaimPath(cc.Claim); err != nil {
			return fmt.Errorf("%s %q: %w", field, cc.Claim, err)
		}
		if len(cc.Values) == 0 {
			return fmt.Errorf("%s %s: names no value", field, cc.Claim)
		}
		if slices.Contains(cc.Values, "") {
			return fmt.Errorf("%s %s: empty value", field, cc.Claim)
		}
	}
	return nil
}

func isTenantTemplate(iss string) bool { return strings.Contains(iss, verify.TenantPlaceholder) }

// validTenant accepts tenant ids as Entra writes them (GUIDs): letters, digits and '-'.
func validTenant(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-')
	})
}

// policyConfig is the configuration internal/policy compiles.
func (h *Handler) policyConfig() policy.Config {
	c := policy.Config{AllOf: h.Scopes, AnyOf: h.AnyOf, Clients: h.Clients, Implies: h.ScopeImplies,
		Prefix: h.ScopePrefix, Rules: make([]policy.Rule, len(h.Rules))}
	for _, cc := range h.RequireClaims {
		c.Claims = append(c.Claims, policy.Claim(cc))
	}
	for i, r := range h.Rules {
		c.Rules[i] = r.policyRule()
	}
	if h.Public != nil {
		c.Public = h.Public.policyPublic()
	}
	return c
}

// validScopeToken checks RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool { return verify.ValidScopeToken(s) }

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
