package mcpauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/prometheus/client_golang/prometheus"
)

// provisionWithRegistry provisions h in a Caddy context of its own and returns that config's
// metrics registry: what Caddy's admin /metrics serves for it.
func provisionWithRegistry(t *testing.T, h *Handler) *prometheus.Registry {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return ctx.GetMetricsRegistry()
}

// decisionSeries gathers caddy_mcp_auth_decisions_total of resource from reg, by
// (outcome, reason).
func decisionSeries(t *testing.T, reg prometheus.Gatherer, resource string) map[[2]string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[[2]string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "caddy_mcp_auth_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["resource"] == resource {
				out[[2]string{l["outcome"], l["reason"]}] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// The outcomes a refusal may count under: the error codes the module answers with, and the
// three names of answers without one. A new code must be added here and to the docs.
var refusalOutcomes = map[string]bool{
	outcomeMissingToken: true, outcomeSessionNotFound: true, outcomeUnavailable: true, outcomeNotOffered: true,
	codeInvalidRequest: true, codeInvalidToken: true, codeInsufficientScope: true,
	codeAccessDenied: true, codeInvalidDPoPProof: true, codeUseDPoPNonce: true,
}

var reasonSyntax = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// TestEveryDenialCountsUnderItsOwnReason walks every denial of the module's table (so a
// denial added later is walked too), answers a request with it through the handler's own
// deny path, and checks in the gathered registry that exactly one series grew, by one, and
// that no two denials share that series' reason: no refusal is counted under another's name.
func TestEveryDenialCountsUnderItsOwnReason(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	const res = "https://reasons.example.com/mcp"
	h := &Handler{Resource: res, AuthorizationServers: []string{cacheIss},
		JWKSURLs: []string{newJWKSServer(t, k).URL}, Scopes: []string{"mcp:read"}}
	reg := provisionWithRegistry(t, h)

	owner := map[string]denial{} // reason -> the denial that counted under it
	for d := denial(0); d < numDenials; d++ {
		before := decisionSeries(t, reg, res)
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		w := httptest.NewRecorder()
		if err := h.deny(w, r, d, nil); err != nil {
			t.Fatalf("deny %d: %v", d, err)
		}
		if w.Code != denials[d].status {
			t.Errorf("denial %q answered %d, want %d", denials[d].label, w.Code, denials[d].status)
		}
		after := decisionSeries(t, reg, res)
		var grown [][2]string
		for s, v := range after {
			if v != before[s] {
				grown = append(grown, s)
				if v-before[s] != 1 {
					t.Errorf("denial %q: series %v grew by %v, want 1", denials[d].label, s, v-before[s])
				}
			}
		}
		if len(grown) != 1 {
			t.Errorf("denial %q: %d series grew (%v), want exactly one", denials[d].label, len(grown), grown)
			continue
		}
		outcome, reason := grown[0][0], grown[0][1]
		if !reasonSyntax.MatchString(reason) {
			t.Errorf("denial %d: reason %q is not a lower-case identifier", d, reason)
		}
		if prev, ok := owner[reason]; ok {
			t.Errorf("denials %d and %d both count under reason %q", prev, d, reason)
		}
		owner[reason] = d
		if !refusalOutcomes[outcome] {
			t.Errorf("denial %q counts under outcome %q, not a known refusal outcome", reason, outcome)
		}
		if reason != denials[d].label {
			t.Errorf("denial %d counts under reason %q, but its logs and audit say %q", d, reason, denials[d].label)
		}
	}
	if len(owner) != int(numDenials) {
		t.Errorf("%d distinct reasons for %d denials", len(owner), numDenials)
	}
}

// TestRefusalsOnceConflatedCountApart pins the refusals the metrics used to count under one
// name (a bound-session 404 as missing_token; access_denied and DPoP refusals as
// invalid_token; 400, 413 and 415 as invalid_request; both 503s as unavailable): each pair
// differs in outcome or reason.
func TestRefusalsOnceConflatedCountApart(t *testing.T) {
	for _, c := range []struct {
		d       denial
		outcome string
		reason  string
	}{
		{denyMissing, "missing_token", "missing_token"},
		{denySession, "session_not_found", "session_not_found"},
		{denyClientNotAllowed, "access_denied", "client_not_allowed"},
		{denyClaimNotSatisfied, "access_denied", "claim_not_satisfied"},
		{denyDPoPProof, "invalid_dpop_proof", "invalid_dpop_proof"},
		{denyDPoPNonce, "use_dpop_nonce", "use_dpop_nonce"},
		{denyDPoPRequired, "invalid_token", "dpop_required"},
		{denyBadMessage, "invalid_request", "invalid_jsonrpc"},
		{denyBodyTooLarge, "invalid_request", "body_too_large"},
		{denyUnsupportedBody, "invalid_request", "unsupported_body"},
		{denyUnavailable, "unavailable", "keys_unavailable"},
		{denyIntrospectionUnavailable, "unavailable", "introspection_unavailable"},
		{denyStoreUnavailable, "unavailable", "store_unavailable"},
	} {
		if o, r := denialOutcome(c.d), denialReason(c.d); o != c.outcome || r != c.reason {
			t.Errorf("denial %d counts as outcome=%q reason=%q, want %q %q", c.d, o, r, c.outcome, c.reason)
		}
	}
}
