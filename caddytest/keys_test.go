package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestDiscovery runs with an authorization server whose issuer has a path: the JWKS comes
// from its RFC 8414 metadata, found with the well-known segment inserted before the path.
func TestDiscovery(t *testing.T) {
	f := newFixture(t, nil)
	key, jwks := f.ecKey, f.jwks
	var as *httptest.Server
	as = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server/tenant" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer":   as.URL + "/tenant",
			"jwks_uri": jwks.URL + "/keys",
		})
	}))
	t.Cleanup(as.Close)
	iss := as.URL + "/tenant"

	// No jwks_url: the JWKS is found through the issuer's metadata.
	tc := f.start(t, f.siteCaddyfile("resource https://mcp.example.com/mcp\nauthorization_servers "+iss+"\nscopes mcp:read",
		`respond "{http.auth.user.id} from {http.auth.user.iss}"`), "caddyfile")

	c := claims(resource, "mcp:read")
	c["iss"] = iss
	code, _, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(key.Token(t, c, nil)))
	if want := "user-1 from " + iss; code != http.StatusOK || body != want {
		t.Errorf("status %d body %q, want 200 %q", code, body, want)
	}

	// A token of another issuer is refused even when signed by the same key.
	c["iss"] = issuer
	code, hdr, _ := request(t, tc, http.MethodPost, "/mcp", "", bearer(key.Token(t, c, nil)))
	if code != http.StatusUnauthorized {
		t.Errorf("token of another issuer: status %d, want 401", code)
	}
	checkChallenge(t, hdr, challenge("invalid_token", "The access token issuer is not accepted.", "mcp:read"))
	if jwks.fetches.Load() == 0 {
		t.Errorf("the discovered JWKS was never fetched")
	}
}

// TestAuthorizationServerDown starts Caddy while the JWKS cannot be fetched: the config
// loads, requests with a token get 503 with Retry-After (not 401: the token is not at
// fault), and once the server is back the keys are loaded in the background.
func TestAuthorizationServerDown(t *testing.T) {
	s := newSetup(t)
	s.jwks.down.Store(true)
	cfg, _ := s.config("json", []string{"mcp:read"}, true)
	tc := startCaddy(t, cfg, "json")
	tok := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)

	code, hdr, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(tok))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("keys never loaded: status %d, want 503", code)
	}
	if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra <= 0 {
		t.Errorf("Retry-After = %q, want a number of seconds", hdr.Get("Retry-After"))
	}
	checkErrorBody(t, body, "temporarily_unavailable", "The signing keys of the authorization server are not available yet.")
	if s.up.hits.Load() != 0 {
		t.Errorf("upstream reached while no keys were loaded")
	}

	// Without a token the answer is still the 401 challenge: nothing needs the keys.
	if code, hdr, _ := request(t, tc, http.MethodPost, "/mcp", ""); code != http.StatusUnauthorized {
		t.Errorf("no token while keys are down: status %d, want 401", code)
	} else {
		checkChallenge(t, hdr, challenge("", "", "mcp:read"))
	}

	// A request triggers an on-demand fetch when the back-off allows, the background retry
	// comes anyway; once the JWKS server has answered, the next request passes.
	s.jwks.down.Store(false)
	request(t, tc, http.MethodPost, "/mcp", "", bearer(tok))
	s.jwks.waitKeysServed(t)
	code, _, _ = request(t, tc, http.MethodPost, "/mcp", "", bearer(tok))
	if code != http.StatusOK {
		t.Errorf("the keys were not loaded after the server came back: status %d", code)
	}
}

// TestEnvPlaceholders checks that {env.*} placeholders in the config are expanded when the
// handler is provisioned: the metadata document, the challenge and the audience check all use
// the expanded resource, and the keys come from the expanded JWKS URL.
func TestEnvPlaceholders(t *testing.T) {
	s := newSetup(t)
	t.Setenv("MCP_ITEST_RESOURCE", resource)
	t.Setenv("MCP_ITEST_JWKS", s.jwks.URL+"/jwks")
	// The resource and the JWKS URL come from environment placeholders.
	tc := s.start(t, s.json(map[string]any{
		"resource":  "{env.MCP_ITEST_RESOURCE}",
		"jwks_urls": []string{"{env.MCP_ITEST_JWKS}"},
		"scopes":    []string{"mcp:read"},
	}, map[string]any{"handler": "static_response", "body": "ok"}), "json")

	code, _, body := request(t, tc, http.MethodGet, prmPath, "")
	var doc struct {
		Resource string `json:"resource"`
	}
	if err := json.Unmarshal([]byte(body), &doc); code != http.StatusOK || err != nil || doc.Resource != resource {
		t.Errorf("metadata: status %d resource %q (%v), want 200 %q", code, doc.Resource, err, resource)
	}
	code, hdr, _ := request(t, tc, http.MethodPost, "/mcp", "")
	if code != http.StatusUnauthorized {
		t.Errorf("no token: status %d, want 401", code)
	}
	checkChallenge(t, hdr, challenge("", "", "mcp:read"))
	if code, _, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(s.rsaKey.Token(t, claims(resource, "mcp:read"), nil))); code != http.StatusOK || body != "ok" {
		t.Errorf("valid token: status %d body %q, want 200 ok", code, body)
	}
}
