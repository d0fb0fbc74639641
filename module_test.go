package mcpauth

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

const fullJSONConfig = `{
	"resource": "https://mcp.example.com/mcp",
	"authorization_servers": ["https://auth.example.com"],
	"resource_name": "Example MCP server",
	"resource_documentation": "https://docs.example.com/mcp",
	"scopes_supported": ["mcp:read", "mcp:write"],
	"issuers": ["https://auth.example.com"],
	"jwks_urls": ["https://auth.example.com/jwks"],
	"jwks_file": "/etc/caddy/jwks.json",
	"audiences": ["https://mcp.example.com/mcp", "api://mcp"],
	"allow_any_audience": true,
	"algorithms": ["RS256", "EdDSA"],
	"leeway": "45s",
	"require_at_jwt": true,
	"scopes": ["mcp:read"],
	"any_of": ["mcp:write", "mcp:admin"],
	"skip_scopes": true,
	"scope_claim": "scp",
	"strip_token": true,
	"jwks_refresh": "2h"
}`

func TestJSONConfigRoundTrip(t *testing.T) {
	var h Handler
	if err := json.Unmarshal([]byte(fullJSONConfig), &h); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Resource:              "https://mcp.example.com/mcp",
		AuthorizationServers:  []string{"https://auth.example.com"},
		ResourceName:          "Example MCP server",
		ResourceDocumentation: "https://docs.example.com/mcp",
		ScopesSupported:       []string{"mcp:read", "mcp:write"},
		Issuers:               []string{"https://auth.example.com"},
		JWKSURLs:              []string{"https://auth.example.com/jwks"},
		JWKSFile:              "/etc/caddy/jwks.json",
		Audiences:             []string{"https://mcp.example.com/mcp", "api://mcp"},
		AllowAnyAudience:      true,
		Algorithms:            []string{"RS256", "EdDSA"},
		Leeway:                durationPtr(45 * time.Second),
		RequireATJWT:          true,
		Scopes:                []string{"mcp:read"},
		AnyOf:                 []string{"mcp:write", "mcp:admin"},
		SkipScopes:            true,
		ScopeClaim:            ClaimNames{"scp"},
		StripToken:            true,
		JWKSRefresh:           caddy.Duration(2 * time.Hour),
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("unmarshalled\n %+v\nwant\n %+v", h, want)
	}

	out, err := json.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	var again Handler
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Errorf("after a round trip\n %+v\nwant\n %+v", again, want)
	}

	// The field names are exactly the documented JSON names, and every one of them is used.
	var in, got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(fullJSONConfig), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	specNames := []string{
		"resource", "authorization_servers", "resource_name", "resource_documentation",
		"scopes_supported", "issuers", "jwks_urls", "jwks_file", "audiences", "allow_any_audience",
		"algorithms", "leeway", "require_at_jwt", "scopes", "any_of", "skip_scopes", "scope_claim",
		"strip_token", "jwks_refresh",
	}
	if k := sortedKeys(got); !slices.Equal(k, sortedKeys(in)) || !slices.Equal(k, slices.Sorted(slices.Values(specNames))) {
		t.Errorf("marshalled names %q, want %q", k, specNames)
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// An empty handler marshals to an empty object: every field is omitempty, and no runtime
// state leaks into the config.
func TestJSONConfigEmpty(t *testing.T) {
	out, err := json.Marshal(Handler{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "{}" {
		t.Errorf("empty handler marshals to %s", out)
	}
	var h Handler
	if err := json.Unmarshal([]byte(`{"leeway": 30000000000, "jwks_refresh": "1h30m"}`), &h); err != nil {
		t.Fatal(err)
	}
	if h.Leeway == nil || time.Duration(*h.Leeway) != 30*time.Second || time.Duration(h.JWKSRefresh) != 90*time.Minute {
		t.Errorf("durations: leeway %v, jwks_refresh %v", h.Leeway, time.Duration(h.JWKSRefresh))
	}
}

func TestCaddyModule(t *testing.T) {
	info := Handler{}.CaddyModule()
	if info.ID != "http.handlers.mcp_auth" {
		t.Errorf("ID %q", info.ID)
	}
	if _, ok := info.New().(*Handler); !ok {
		t.Errorf("New returns %T", info.New())
	}
	mod, err := caddy.GetModule("http.handlers.mcp_auth")
	if err != nil || mod.ID != info.ID {
		t.Errorf("module not registered: %v", err)
	}
}

// TestCleanupAfterFailedProvision: Caddy calls Cleanup when Provision failed, and may call it
// more than once; neither may panic or release someone else's key set.
func TestCleanupAfterFailedProvision(t *testing.T) {
	tests := []struct {
		name string
		h    Handler
	}{
		{"invalid config", Handler{Resource: "not a url"}},
		{"missing jwks_file", Handler{
			Resource: testResource, AuthorizationServers: []string{testIssuer}, Scopes: []string{"a"},
			JWKSFile: "/nonexistent/jwks.json",
		}},
		{"jwks_file without keys", Handler{
			Resource: testResource, AuthorizationServers: []string{testIssuer}, Scopes: []string{"a"},
			JWKSFile: writeEmptyJWKSFile(t),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := h.Provision(ctx); err == nil {
				t.Fatal("provision succeeded")
			}
			for i := 0; i < 3; i++ {
				if err := h.Cleanup(); err != nil {
					t.Errorf("cleanup %d: %v", i, err)
				}
			}
		})
	}
	// Cleanup of a handler never provisioned.
	var h Handler
	if err := h.Cleanup(); err != nil {
		t.Errorf("cleanup of a zero handler: %v", err)
	}
}

func writeEmptyJWKSFile(t testing.TB) string {
	t.Helper()
	return writeJWKSFile(t)
}

// TestCleanupReleasesOnce: a second Cleanup must not drop the reference another handler holds
// on the same shared key set.
func TestCleanupReleasesOnce(t *testing.T) {
	key := jwttest.New(t, "ed", "EdDSA")
	jwks := newJWKSServer(t, key)
	a := newTestHandler(t, jwks, nil)
	b := newTestHandler(t, jwks, nil)
	if len(a.keySets.poolKeys) != 1 {
		t.Fatalf("pool keys %q", a.keySets.poolKeys)
	}
	poolKey := a.keySets.poolKeys[0]
	if refs, ok := keyPool.References(poolKey); !ok || refs != 2 {
		t.Fatalf("references %d (%v), want 2", refs, ok)
	}
	for i := 0; i < 3; i++ {
		if err := a.Cleanup(); err != nil {
			t.Fatalf("cleanup %d: %v", i, err)
		}
	}
	if refs, ok := keyPool.References(poolKey); !ok || refs != 1 {
		t.Fatalf("after a's cleanups: references %d (%v), want 1", refs, ok)
	}
	// b still verifies tokens with the shared set.
	res := serveRequest(t, b, bearerReq("POST", "/mcp", "Bearer "+key.Token(t, claimsWith(nil), nil)))
	if !res.nextRan {
		t.Errorf("b denied after a's cleanup: status %d", res.status)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := keyPool.References(poolKey); ok {
		t.Errorf("key set still pooled after the last cleanup")
	}
}

// Provision expands global placeholders in the URLs before deriving anything from them.
func TestProvisionExpandsPlaceholders(t *testing.T) {
	key := jwttest.New(t, "ed", "EdDSA")
	t.Setenv("MCP_AUTH_TEST_RESOURCE", testResource)
	t.Setenv("MCP_AUTH_TEST_ISSUER", testIssuer)
	h := &Handler{
		Resource:             "{env.MCP_AUTH_TEST_RESOURCE}",
		AuthorizationServers: []string{"{env.MCP_AUTH_TEST_ISSUER}"},
		JWKSFile:             writeJWKSFile(t, key),
		Scopes:               []string{"mcp:read"},
	}
	provisionHandler(t, h)
	if h.Resource != testResource || h.AuthorizationServers[0] != testIssuer {
		t.Fatalf("not expanded: %q %q", h.Resource, h.AuthorizationServers)
	}
	res := serveRequest(t, h, bearerReq("POST", "/mcp", "Bearer "+key.Token(t, claimsWith(nil), nil)))
	if !res.nextRan {
		t.Errorf("valid token denied: status %d", res.status)
	}
	res = serveRequest(t, h, bearerReq("POST", "/mcp"))
	if got, want := res.header.Get("WWW-Authenticate"), wantChallenge("", "", "mcp:read", testMetaURL); got != want {
		t.Errorf("challenge %q, want %q", got, want)
	}
}

// TestLeewayZeroMeansZero: an explicit `leeway 0` is honoured, not replaced by the default.
func TestLeewayZeroMeansZero(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	claims := testClaims(cacheIss, cacheRes, "mcp:read")
	claims["exp"] = time.Now().Add(-5 * time.Second).Unix()
	tok := k.Token(t, claims, nil)
	for _, tc := range []struct {
		leeway *caddy.Duration
		want   int
	}{{nil, 200}, {durationPtr(0), 401}} {
		h := &Handler{Resource: cacheRes, AuthorizationServers: []string{cacheIss},
			JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}, Leeway: tc.leeway}
		provisionHandler(t, h)
		waitKeysLoaded(t, h)
		if code, _ := serve(t, h, tok); code != tc.want {
			t.Errorf("leeway %v: token expired 5s ago got %d, want %d", tc.leeway, code, tc.want)
		}
	}
}
