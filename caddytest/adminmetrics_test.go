package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsOnAdminEndpoint: the module's counters are served by Caddy's admin endpoint
// /metrics with nothing turned on (docs/operations.md gives this URL).
func TestMetricsOnAdminEndpoint(t *testing.T) {
	s := newSetup(t)
	cfg, _ := s.config("caddyfile", []string{"mcp:read"}, false)
	tc := startCaddy(t, cfg, "caddyfile")
	if code, _, _ := request(t, tc, http.MethodPost, "/mcp", "", bearer(s.rsaKey.Token(t, claims(resource, "mcp:read"), nil))); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `caddy_mcp_auth_decisions_total{outcome="allowed",reason="",resource="` + resource + `"}`
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Errorf("GET /metrics: status %d, no line %s", resp.StatusCode, want)
	}
}
