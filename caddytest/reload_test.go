package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestReload changes the policy through the admin API's POST /load several times in a row,
// switching between Caddyfile and JSON, and checks after every reload that the new policy
// applies, that requests still pass, and that the key set is shared across configs instead of
// being fetched again.
func TestReload(t *testing.T) {
	s := newSetup(t)
	cfg, _ := s.config("caddyfile", []string{"mcp:read"}, true)
	tc := startCaddy(t, cfg, "caddyfile")

	readTok := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)
	writeTok := s.ecKey.Token(t, claims(resource, "mcp:write"), nil)

	// Warm the key set with one request, then count fetches from here on.
	if code, _, _ := request(t, tc, http.MethodPost, "/mcp", "", bearer(readTok)); code != http.StatusOK {
		t.Fatalf("before any reload: status %d, want 200", code)
	}
	fetches := s.jwks.fetches.Load()

	steps := []struct {
		format string
		scope  string // the one scope required
		strip  bool
		force  bool // reload an unchanged config
	}{
		{"caddyfile", "mcp:write", false, false},
		{"json", "mcp:read", true, false},
		{"json", "mcp:write", true, false},
		{"caddyfile", "mcp:read", false, false},
		{"caddyfile", "mcp:read", false, true},
	}
	for i, st := range steps {
		cfg, ct := s.config(st.format, []string{st.scope}, st.strip)
		mustLoad(t, cfg, ct, st.force)

		okTok, deniedTok := readTok, writeTok
		if st.scope == "mcp:write" {
			okTok, deniedTok = writeTok, readTok
		}

		// /load answers once the new config runs and the old server has stopped accepting
		// (caddyhttp.App.stop waits for its servers to start shutting down), and request
		// opens a fresh connection: the metadata document shows the new policy at once.
		var doc struct {
			ScopesSupported []string `json:"scopes_supported"`
		}
		_, _, body := request(t, tc, http.MethodGet, prmPath, "")
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("reload %d: metadata %q: %v", i, body, err)
		}
		if !reflect.DeepEqual(doc.ScopesSupported, []string{st.scope}) {
			t.Fatalf("reload %d: scopes_supported = %v, want [%s]", i, doc.ScopesSupported, st.scope)
		}

		hits := s.up.hits.Load()
		code, _, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(okTok))
		if code != http.StatusOK || body != upstreamBody {
			t.Errorf("reload %d: token with %s: status %d body %q, want 200 from upstream", i, st.scope, code, body)
		}
		if s.up.hits.Load() != hits+1 {
			t.Errorf("reload %d: upstream not reached", i)
		}
		_, sawAuth := s.up.lastHeader()["Authorization"]
		if sawAuth == st.strip {
			t.Errorf("reload %d: strip_token=%v but upstream saw Authorization=%v", i, st.strip, sawAuth)
		}

		code, hdr, _ := request(t, tc, http.MethodPost, "/mcp", "", bearer(deniedTok))
		if code != http.StatusForbidden {
			t.Errorf("reload %d: token without %s: status %d, want 403", i, st.scope, code)
		}
		checkChallenge(t, hdr, challenge("insufficient_scope", descScope, st.scope))
	}

	if n := s.jwks.fetches.Load() - fetches; n != 0 {
		t.Errorf("the JWKS was fetched %d more times across %d reloads; the key set should survive reloads", n, len(steps))
	}
}

// TestKeySetLifecycle checks from the outside that a key set lives exactly as long as some
// config uses it: a load that fails after mcp_auth was provisioned gives its reference back,
// and once no config uses the set it is dropped, so the next config that needs it fetches it
// anew. A leaked reference would keep the old set, and no new fetch would happen.
func TestKeySetLifecycle(t *testing.T) {
	s := newSetup(t)
	cfg, ct := s.config("caddyfile", []string{"mcp:read"}, true)
	tc := startCaddy(t, cfg, "caddyfile")
	tok := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)
	// plain is a config without mcp_auth; halfFailing provisions a valid mcp_auth and then a
	// refused one (no scope policy), so the load fails after the first handler acquired the
	// key set.
	plain := jsonRoutes(map[string]any{"handle": []any{map[string]any{"handler": "static_response", "body": "plain"}}})
	halfFailing := jsonRoutes(map[string]any{"handle": []any{
		s.mcpAuth(map[string]any{"scopes": []string{"mcp:read"}}),
		s.mcpAuth(nil),
		map[string]any{"handler": "static_response", "body": "should never be served"},
	}})

	wantOK := func(step string) {
		t.Helper()
		if code, _, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(tok)); code != http.StatusOK || body != upstreamBody {
			t.Fatalf("%s: status %d body %q, want 200 from upstream", step, code, body)
		}
	}
	wantOK("first config")
	fetches := s.jwks.fetches.Load()

	code, body := loadConfig(t, halfFailing, "application/json", false)
	if code == http.StatusOK || !strings.Contains(body, "no scope policy") {
		t.Fatalf("half-failing config: status %d body %s; want it refused for its second handler", code, body)
	}
	wantOK("after the refused load")
	if n := s.jwks.fetches.Load(); n != fetches {
		t.Errorf("a refused load fetched the JWKS %d times; the running set should be reused", n-fetches)
	}

	mustLoad(t, plain, "application/json", false)
	waitServed(t, tc, "/mcp", "plain")

	mustLoad(t, cfg, ct, false)
	waitServed(t, tc, prmPath, resource)
	wantOK("config with mcp_auth again")
	if n := s.jwks.fetches.Load(); n == fetches {
		t.Errorf("the key set was not fetched again after a config without mcp_auth: it outlived every config using it")
	}
}
