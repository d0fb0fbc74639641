package mcpauth

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCountDecisionsAndSurviveReprovision(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	const res = "https://metrics.example.com/mcp"
	newH := func() *Handler {
		h := &Handler{Resource: res, AuthorizationServers: []string{cacheIss},
			JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}}
		provisionHandler(t, h)
		waitKeysLoaded(t, h)
		return h
	}
	type series struct{ outcome, reason string }
	count := func(s series) float64 {
		return testutil.ToFloat64(metrics.decisions.WithLabelValues(res, s.outcome, s.reason))
	}
	allowed := series{outcomeAllowed, ""}
	missing := series{outcomeMissingToken, "missing_token"}
	audience := series{codeInvalidToken, "audience_not_accepted"}
	scope := series{codeInsufficientScope, "insufficient_scope"}
	h := newH()
	before := map[series]float64{}
	for _, s := range []series{allowed, missing, audience, scope} {
		before[s] = count(s)
	}
	hitsBefore := compatTokenCacheCount(t, res, "hit")
	lookupHitsBefore := testutil.ToFloat64(metrics.lookups.WithLabelValues(res, cacheToken, "hit"))

	good := k.Token(t, testClaims(cacheIss, res, "mcp:read"), nil)
	serve(t, h, good)
	serve(t, h, good) // from the cache
	serve(t, h, "")
	serve(t, h, k.Token(t, testClaims(cacheIss, "https://other.example", "mcp:read"), nil))
	serve(t, h, k.Token(t, testClaims(cacheIss, res, "nope"), nil))

	// A second handler (as after a reload) registers into its own registry without error and
	// counts into the same series.
	h2 := newH()
	serve(t, h2, good)

	for s, want := range map[series]float64{allowed: 3, missing: 1, audience: 1, scope: 1} {
		if got := count(s) - before[s]; got != want {
			t.Errorf("decisions{outcome=%q, reason=%q} grew by %v, want %v", s.outcome, s.reason, got, want)
		}
	}
	if got := compatTokenCacheCount(t, res, "hit") - hitsBefore; got != 1 {
		t.Errorf("token_cache_total hits grew by %v, want 1", got)
	}
	if got := testutil.ToFloat64(metrics.lookups.WithLabelValues(res, cacheToken, "hit")) - lookupHitsBefore; got != 1 {
		t.Errorf("cache_lookups_total{cache=token} hits grew by %v, want 1", got)
	}

	// The series are exposed through a Caddy context's registry, without tokens in labels.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := initMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	if err := initMetrics(ctx); err != nil {
		t.Fatalf("registering twice into one registry: %v", err)
	}
	n, err := testutil.GatherAndCount(ctx.GetMetricsRegistry(), "caddy_mcp_auth_decisions_total")
	if err != nil || n == 0 {
		t.Fatalf("decisions not gathered: %d series, %v", n, err)
	}
	mfs, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), good[:20]) {
					t.Fatalf("a token reached a metric label: %s", mf.GetName())
				}
			}
		}
	}
}

// compatTokenCacheCount reads the deprecated token_cache_total row of resource and result
// as a scrape would.
func compatTokenCacheCount(t *testing.T, resource, result string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(metrics.cache); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "caddy_mcp_auth_token_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["resource"] == resource && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
