package integration

import (
	"encoding/base64"
	"net/http"
	"testing"
)

// TestAttackJWSShapedOpaqueTokensCached: opaque tokens shaped like a JWS (three
// dot-separated parts, the first starting with 'e'), whose first part is not a JOSE header:
// they are opaque, so they are introspected, and then cached under their SHA-256 as every
// opaque token is: asked about once, not on every request. A token whose first part is a
// JSON object stays a JWS: verified locally, never introspected.
func TestAttackJWSShapedOpaqueTokensCached(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	f := newFixture(t, nil)
	as := newIntrospectionAS(t, f.ecKey)
	f.start(t, f.siteCaddyfile(introspected(resource, as.issuer, "", ""), `respond "{http.auth.user.id}"`), "caddyfile")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

	for _, c := range []struct{ name, token string }{
		{"first part not JSON", enc("xyz") + ".YWJj.ZGVm"},
		{"first part a lone brace", enc("{") + ".YWJj.ZGVm"},
		{"first part JSON cut short", enc(`{"alg":"ES256"`) + ".YWJj.ZGVm"},
		{"first part an unterminated string in braces", "eyJ9.YWJj.ZGVm"}, // {"}
		{"first part not base64url", "e.YWJj.ZGVm"},
		{"first part with padding bits set", "eB.YWJj.ZGVm"},
		{"empty second part", enc("xyz") + "..ZGVm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := c.token
			as.issue(tok, resource, "mcp:read", nil)
			before := as.calls.Load()
			for i := range 3 {
				if code, _, body := f.do(t, bearerReq(tok)); code != http.StatusOK || string(body) != "opaque-user" {
					t.Fatalf("request %d: %d %q", i, code, body)
				}
			}
			if n := as.calls.Load() - before; n != 1 {
				t.Errorf("introspected %d times for 3 requests, want 1 (cached)", n)
			}
			// A token one byte away is another token: asked about, and refused.
			near := tok[:len(tok)-1] + "X"
			if code, _, _ := f.do(t, bearerReq(near)); code != http.StatusUnauthorized {
				t.Errorf("near miss of a cached token: %d, want 401", code)
			}
			if n := as.calls.Load() - before; n != 2 {
				t.Errorf("near miss: %d calls in all, want 2", n)
			}
		})
	}

	// Kept: a token whose first part is a JSON object is a JWS, verified locally and refused
	// there even when the authorization server would call it active; never introspected, and
	// never served from the cache of an opaque token.
	t.Run("first part a JOSE header", func(t *testing.T) {
		tok := enc(`{"alg":"ES256","kid":"ec-1"}`) + "." + enc(`{"sub":"x"}`) + ".c2ln"
		as.issue(tok, resource, "mcp:read", nil)
		before := as.calls.Load()
		for i := range 2 {
			if code, _, _ := f.do(t, bearerReq(tok)); code != http.StatusUnauthorized {
				t.Errorf("request %d: %d, want 401", i, code)
			}
		}
		if n := as.calls.Load() - before; n != 0 {
			t.Errorf("introspected %d times", n)
		}
	})
}
