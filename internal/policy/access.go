package policy

import (
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
// Conditions are judged once per token, when its Subject is built, into a bit set: a request
// only tests bits.

// condition is one client or claim condition, compiled.
type condition struct {
	clients []pattern // a clients condition when not nil
	claim   verify.ClaimPath
	values  []string
}

// refusal is what failing the condition is answered with.
func (c *condition) refusal() Outcome {
	if c.clients != nil {
		return ClientNotAllowed
	}
	return ClaimNotSatisfied
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

// addConditions compiles a clients list and claim conditions and returns their indices.
func (p *Policy) addConditions(clients []string, claims []Claim) ([]int, error) {
	var idx []int
	if len(clients) > 0 {
		idx = append(idx, len(p.conds))
		p.conds = append(p.conds, condition{clients: compileClientPatterns(clients)})
	}
	for _, cc := range claims {
		path, err := verify.NewClaimPath(cc.Claim)
		if err != nil {
			return nil, fmt.Errorf("require_claim %q: %w", cc.Claim, err)
		}
		idx = append(idx, len(p.conds))
		p.conds = append(p.conds, condition{claim: path, values: cc.Values})
	}
	return idx, nil
}

// evaluate sets in held the bit of every condition id holds.
func (p *Policy) evaluate(id *verify.Identity, held *matchSet) {
	for i := range p.conds {
		if p.conds[i].heldBy(id) {
			held.add(i)
		}
	}
}

// firstFailed returns the refusal of the first of the conditions idx that held (the bit set
// of the subject) does not contain, or Allow.
func (p *Policy) firstFailed(idx []int, held *matchSet) Outcome {
	for _, i := range idx {
		if !held.has(i) {
			return p.conds[i].refusal()
		}
	}
	return Allow
}

// effectiveScopes are the scopes granted counted as the policy reads them: each granted
// scope, its form with and without scope_prefix, and every scope these imply. It returns
// granted itself when there is nothing to add.
func (p *Policy) effectiveScopes(granted []string) []string {
	if p.prefix == "" && len(p.implies) == 0 {
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
		if p.prefix != "" {
			if bare, ok := strings.CutPrefix(g, p.prefix); ok && bare != "" {
				forms[1] = bare
			} else {
				forms[1] = p.prefix + g
			}
		}
		for _, f := range forms {
			if f == "" {
				continue
			}
			add(f)
			for _, im := range p.implies[f] {
				add(im)
				if p.prefix != "" {
					add(p.prefix + im)
				}
			}
		}
	}
	return out
}

// Advertised is scopes as clients must request them: with scope_prefix in front (Entra ID
// reads a bare scope as one of Microsoft Graph's). It is the form of scopes_supported and of
// every challenge's scope.
func (p *Policy) Advertised(scopes []string) []string {
	if p.prefix == "" {
		return scopes
	}
	out := make([]string, len(scopes))
	for i, s := range scopes {
		if !strings.HasPrefix(s, p.prefix) {
			s = p.prefix + s
		}
		out[i] = s
	}
	return out
}

// CheckImplies refuses a scope_implies map with a cycle, naming it.
func CheckImplies(implies map[string][]string) error {
	_, err := scopeClosure(implies)
	return err
}

// scopeClosure computes, for each scope of scope_implies, every scope it implies directly or
// through others. A cycle is refused, naming it.
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
			return fmt.Errorf("scope_implies: %w %s", ErrImpliesCycle, strings.Join(append(slices.Clone(stack[i:]), s), " -> "))
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
