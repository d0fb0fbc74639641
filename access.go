package mcpauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// Who may call, beyond scopes: the calling client (clients), claims of the token
// (require_claim), a scope hierarchy (scope_implies, MCP 2026-07-28 "servers MUST account for
// scope hierarchies") and the form scopes are advertised in (scope_prefix).
//
// A client or claim condition that fails is a failure no new scope can fix: it is answered
// 403 access_denied, without error="insufficient_scope", so that a client is not sent round
// a re-authorization loop that cannot succeed (MCP authorization, "Scope Challenge Handling").

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

// condition is one client or claim condition, compiled.
type condition struct {
	clients []pattern // a clients condition when not nil
	claim   verify.ClaimPath
	values  []string
}

// denial is what failing the condition is answered with.
func (c *condition) denial() denial {
	if c.clients != nil {
		return denyClientNotAllowed
	}
	return denyClaimNotSatisfied
}

// heldBy judges the condition on a verified identity. A claim that the token's JSON holds
// more than once fails: readers disagree on which duplicate counts (RFC 8259 §4), and the one
// encoding/json keeps (the last) may not be the one the issuer or the server reads.
func (c *condition) heldBy(id *verify.Identity) bool {
	if c.clients != nil {
		return id.ClientID != "" && matchAny(c.clients, id.ClientID)
	}
	v, ok, ambiguous := id.ClaimAt(c.claim)
	if !ok || ambiguous {
		return false
	}
	switch v := v.(type) {
	case string:
		return slices.Contains(c.values, v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && slices.Contains(c.values, s) {
				return true
			}
		}
	}
	return false
}

// accessPolicy is the compiled client and claim conditions (of the base policy and of the
// rules) and the scope mapping. Conditions are judged once per token, when its caller is
// built, into a bit set: a request only tests bits.
type accessPolicy struct {
	conds []condition
	base  []int // indices of the base policy's conditions
	// implies maps a scope to every scope it implies, transitively (closure of scope_implies).
	implies map[string][]string
	prefix  string
	// claims is set when a claim condition exists: only then are a token's claims decoded.
	claims bool
}

// newAccessPolicy compiles the handler's conditions and scope mapping. The rules' own
// conditions are added by addRule.
func newAccessPolicy(h *Handler) (*accessPolicy, error) {
	a := &accessPolicy{prefix: h.ScopePrefix}
	var err error
	if a.implies, err = scopeClosure(h.ScopeImplies); err != nil {
		return nil, err
	}
	a.base, err = a.add(h.Clients, h.RequireClaims)
	return a, err
}

// add compiles a clients list and claim conditions and returns their indices.
func (a *accessPolicy) add(clients []string, claims []ClaimCondition) ([]int, error) {
	var idx []int
	if len(clients) > 0 {
		idx = append(idx, len(a.conds))
		a.conds = append(a.conds, condition{clients: compileClientPatterns(clients)})
	}
	for _, cc := range claims {
		p, err := verify.NewClaimPath(cc.Claim)
		if err != nil {
			return nil, fmt.Errorf("require_claim %q: %w", cc.Claim, err)
		}
		idx = append(idx, len(a.conds))
		a.conds = append(a.conds, condition{claim: p, values: cc.Values})
		a.claims = true
	}
	return idx, nil
}

// evaluate sets in s the bit of every condition id holds.
func (a *accessPolicy) evaluate(id *verify.Identity, s *matchSet) {
	for i := range a.conds {
		if a.conds[i].heldBy(id) {
			s.add(i)
		}
	}
}

// firstFailed returns the denial of the first of the conditions idx that held (the bit set
// of the caller) does not contain, or denyNone.
func (a *accessPolicy) firstFailed(idx []int, held *matchSet) denial {
	for _, i := range idx {
		if !held.has(i) {
			return a.conds[i].denial()
		}
	}
	return denyNone
}

// effectiveScopes are the scopes granted counted as the policy reads them: each granted
// scope, its form with and without scope_prefix, and every scope these imply. It returns
// granted itself when there is nothing to add.
func (a *accessPolicy) effectiveScopes(granted []string) []string {
	if a.prefix == "" && len(a.implies) == 0 {
		return granted
	}
	out := make([]string, 0, 2*len(granted))
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, g := range granted {
		forms := [2]string{g, ""}
		if a.prefix != "" {
			if bare, ok := strings.CutPrefix(g, a.prefix); ok && bare != "" {
				forms[1] = bare
			} else {
				forms[1] = a.prefix + g
			}
		}
		for _, f := range forms {
			if f == "" {
				continue
			}
			add(f)
			for _, im := range a.implies[f] {
				add(im)
				if a.prefix != "" {
					add(a.prefix + im)
				}
			}
		}
	}
	return out
}

// advertised is scopes as clients must request them: with scope_prefix in front (Entra ID
// reads a bare scope as one of Microsoft Graph's).
func (a *accessPolicy) advertised(scopes []string) []string {
	if a == nil || a.prefix == "" {
		return scopes
	}
	out := make([]string, len(scopes))
	for i, s := range scopes {
		if !strings.HasPrefix(s, a.prefix) {
			s = a.prefix + s
		}
		out[i] = s
	}
	return out
}

// scopeClosure computes, for each scope of scope_implies, every scope it implies directly or
// through others. A cycle is refused, naming it: it would make the scopes equal, which is
// surely not what was meant.
func scopeClosure(implies map[string][]string) (map[string][]string, error) {
	if len(implies) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(implies))
	for k := range implies {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same cycle is named the same way every time
	out := make(map[string][]string, len(implies))
	const (
		visiting = 1
		done     = 2
	)
	state := make(map[string]int)
	var stack []string
	var visit func(s string) error
	visit = func(s string) error {
		switch state[s] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, s)
			return fmt.Errorf("scope_implies: cycle %s", strings.Join(append(slices.Clone(stack[i:]), s), " -> "))
		}
		state[s] = visiting
		stack = append(stack, s)
		var all []string
		for _, im := range implies[s] {
			if err := visit(im); err != nil {
				return err
			}
			for _, x := range append([]string{im}, out[im]...) {
				if !slices.Contains(all, x) {
					all = append(all, x)
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[s] = done
		if len(all) > 0 {
			out[s] = all
		}
		return nil
	}
	for _, k := range keys {
		if err := visit(k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Configuration errors of the access policy.
var (
	errOfflineAccess = errors.New("offline_access is refused: a resource never asks for a refresh token (MCP 2026-07-28); the client requests it from the authorization server itself")
	errEmptyClient   = errors.New("empty client pattern")
)

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
	if _, err := scopeClosure(h.ScopeImplies); err != nil {
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
		if err := checkClientPattern(p); err != nil {
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
