package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
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

	readTok := s.rsaKey.sign(t, claims(resource, "mcp:read"))
	writeTok := s.ecKey.sign(t, claims(resource, "mcp:write"))

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

		_, _, body := request(t, tc, http.MethodGet, prmPath, "")
		var doc struct {
			ScopesSupported []string `json:"scopes_supported"`
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("reload %d: metadata %q: %v", i, body, err)
		}
		if want := []string{st.scope}; !reflect.DeepEqual(doc.ScopesSupported, want) {
			t.Errorf("reload %d: scopes_supported = %v, want %v", i, doc.ScopesSupported, want)
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
