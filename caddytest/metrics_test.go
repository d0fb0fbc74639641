package integration

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const metricsResource = "https://metrics.example.com/mcp"

// metricsConfig is a site, metrics.localhost, for metricsResource with the fixture's keys,
// whose delete_* tools need mcp:admin and whose sessions are bound.
func metricsConfig(f *fixture) string {
	return caddyfileOf("", siteAt("http://metrics.localhost:9080", mcpAuthDirective("resource "+metricsResource+
		"\nauthorization_servers "+issuer+"\njwks_url "+f.jwksURL()+"\nscopes mcp:read\ntool delete_* {\nscopes mcp:admin\n}"+
		"\nbind_sessions {env.MCPAUTH_TRACE_SESSION_KEY}"), f.proxyDirective()))
}

// scrape reads Caddy's admin /metrics, as Prometheus would.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// sample is the value of the series of family name whose labels include want (a histogram's
// count), or 0.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	var sum float64
series:
	for _, m := range mf.GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		for k, v := range want {
			if l[k] != v {
				continue series
			}
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestMetricsThroughCaddy scrapes Caddy's admin /metrics around requests refused for
// different reasons: each counts under its own outcome and reason, the key set's fetch under
// the remote-call histogram, cache hits under their cache.
func TestMetricsThroughCaddy(t *testing.T) {
	t.Setenv("MCPAUTH_TRACE_SESSION_KEY", traceSessionKey)
	f := newFixture(t, server{newTracedUpstream(t)})
	tc := f.start(t, metricsConfig(f), "caddyfile")
	const host = "metrics.localhost"
	read := f.token(t, "mcp:read", map[string]any{"aud": metricsResource})

	// The first request joins the key set's first fetch, if it is still in flight.
	_, code, hdr := tracedPost(t, tc, host, read, "", rpc("initialize", `{}`))
	if code != http.StatusOK {
		t.Fatalf("initialize: status %d", code)
	}
	session := hdr.Get("Mcp-Session-Id")
	before := scrape(t)

	expired := f.token(t, "mcp:read", map[string]any{"aud": metricsResource, "exp": time.Now().Add(-time.Hour).Unix(),
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix()})
	other := f.token(t, "mcp:read", map[string]any{"aud": metricsResource, "sub": "user-2"})

	send := func(token, session, contentType, body string, want int) {
		t.Helper()
		r := attackReq{body: body, header: []string{"Content-Type: " + contentType}}
		if token != "" {
			r.auth = []string{bearer(token)}
		}
		if session != "" {
			r.header = append(r.header, "Mcp-Session-Id: "+session)
		}
		if code, _, _ := f.doAt(t, host, r); code != want {
			t.Fatalf("%s: status %d, want %d", body, code, want)
		}
	}
	call := rpc("tools/call", `{"name":"get_weather"}`)
	send(read, session, "application/json", call, http.StatusOK)
	send(read, session, "application/json", call, http.StatusOK)
	send("", "", "application/json", call, http.StatusUnauthorized)
	send(expired, "", "application/json", call, http.StatusUnauthorized)
	send(read, session, "text/plain", call, http.StatusUnsupportedMediaType)
	send(read, session, "application/json", rpc("tools/call", `{"name":"delete_file"}`), http.StatusForbidden)
	send(other, session, "application/json", call, http.StatusNotFound)
	after := scrape(t)

	grew := func(name string, labels map[string]string) float64 {
		return sample(after, name, labels) - sample(before, name, labels)
	}
	for _, c := range []struct {
		outcome, reason string
		want            float64
	}{
		{"allowed", "", 2},
		{"missing_token", "missing_token", 1},
		{"invalid_token", "expired", 1},
		{"invalid_request", "unsupported_body", 1},
		{"insufficient_scope", "insufficient_scope", 1},
		{"session_not_found", "session_not_found", 1},
	} {
		labels := map[string]string{"resource": metricsResource, "outcome": c.outcome, "reason": c.reason}
		if got := grew("caddy_mcp_auth_decisions_total", labels); got != c.want {
			t.Errorf("decisions_total{outcome=%q, reason=%q} grew by %v, want %v", c.outcome, c.reason, got, c.want)
		}
	}
	// Every decision counted once: nothing under another name.
	if got := grew("caddy_mcp_auth_decisions_total", map[string]string{"resource": metricsResource}); got != 7 {
		t.Errorf("decisions_total of the resource grew by %v, want 7", got)
	}
	if got := sample(after, "caddy_mcp_auth_remote_call_duration_seconds", map[string]string{"kind": "jwks", "outcome": "ok"}); got < 1 {
		t.Errorf("no successful JWKS call in the remote-call histogram (%v)", got)
	}
	if got := sample(after, "caddy_mcp_auth_key_sets", map[string]string{"state": "loaded"}); got < 1 {
		t.Errorf("key_sets{state=loaded} = %v, want at least 1", got)
	}
	if got := grew("caddy_mcp_auth_cache_lookups_total", map[string]string{"resource": metricsResource, "cache": "token", "result": "hit"}); got < 4 {
		t.Errorf("token cache hits grew by %v, want at least 4", got)
	}
}
