package mcpauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// writeJWKSFile writes a JWK set of keys to a file in a test directory and returns its path.
func writeJWKSFile(t testing.TB, keys ...*jwttest.Key) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, jwksJSON(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMetadataLocation(t *testing.T) {
	const wk = "/.well-known/oauth-protected-resource"
	tests := []struct {
		resource string
		path     string
		abs      string
	}{
		{"https://h", wk, "https://h" + wk},
		{"https://h/", wk, "https://h" + wk},
		{"https://h/mcp", wk + "/mcp", "https://h" + wk + "/mcp"},
		{"https://h/a/b/mcp", wk + "/a/b/mcp", "https://h" + wk + "/a/b/mcp"},
		{"https://h/mcp/", wk + "/mcp", "https://h" + wk + "/mcp"},
		{"https://h:8443/mcp", wk + "/mcp", "https://h:8443" + wk + "/mcp"},
		{"http://127.0.0.1:9080/mcp", wk + "/mcp", "http://127.0.0.1:9080" + wk + "/mcp"},
		{"https://h/mcp?tenant=a", wk + "/mcp", "https://h" + wk + "/mcp?tenant=a"},
		{"https://h?tenant=a", wk, "https://h" + wk + "?tenant=a"},
		{"https://h/my%20mcp", wk + "/my mcp", "https://h" + wk + "/my%20mcp"},
		{"https://[::1]:8443/mcp", wk + "/mcp", "https://[::1]:8443" + wk + "/mcp"},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			path, abs, err := metadataLocation(tt.resource)
			if err != nil {
				t.Fatal(err)
			}
			if path != tt.path || abs != tt.abs {
				t.Errorf("got path %q url %q, want %q %q", path, abs, tt.path, tt.abs)
			}
		})
	}
	for _, bad := range []string{"mcp.example.com/mcp", "/mcp", "ftp://h/mcp", "https:///mcp", "://x"} {
		if _, _, err := metadataLocation(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestIsMetadataPath(t *testing.T) {
	const wk = "/.well-known/oauth-protected-resource"
	tests := []struct {
		resource string
		path     string
		want     bool
	}{
		{"https://h/mcp", wk + "/mcp", true},
		{"https://h/mcp", wk + "/mcp/", true},
		{"https://h/mcp", wk + "/mcp//", false},
		{"https://h/mcp", wk, false},
		{"https://h/mcp", wk + "/", false},
		{"https://h/mcp", wk + "/mcpx", false},
		{"https://h/mcp", wk + "/mcp/x", false},
		{"https://h/mcp", "/mcp", false},
		{"https://h/mcp", "/mcp" + wk, false},
		{"https://h", wk, true},
		{"https://h", wk + "/", true},
		{"https://h/", wk, true},
		{"https://h", wk + "/mcp", false},
		{"https://h", "/", false},
		{"https://h/a/b/mcp", wk + "/a/b/mcp", true},
		{"https://h/a/b/mcp", wk + "/a/b/mcp/", true},
		{"https://h/a/b/mcp", wk + "/a/b", false},
		{"https://h/mcp?x=1", wk + "/mcp", true},
	}
	for _, tt := range tests {
		t.Run(tt.resource+" "+tt.path, func(t *testing.T) {
			m, err := newMetadataDoc(&Handler{Resource: tt.resource})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.isMetadataPath(tt.path); got != tt.want {
				t.Errorf("isMetadataPath = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetadataServe(t *testing.T) {
	m, err := newMetadataDoc(&Handler{
		Resource:             "https://mcp.example.com/mcp",
		AuthorizationServers: []string{"https://auth.example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	const path = "/.well-known/oauth-protected-resource/mcp"
	tests := []struct {
		method     string
		wantStatus int
		wantBody   bool
		wantHeader map[string]string
	}{
		{http.MethodGet, 200, true, map[string]string{
			"Content-Type":                "application/json",
			"Access-Control-Allow-Origin": "*",
			"Cache-Control":               "public, max-age=3600",
		}},
		{http.MethodHead, 200, false, map[string]string{
			"Content-Type":                "application/json",
			"Access-Control-Allow-Origin": "*",
			"Cache-Control":               "public, max-age=3600",
			"Content-Length":              strconv.Itoa(len(m.body)),
		}},
		{http.MethodOptions, 204, false, map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
			"Access-Control-Allow-Headers": "MCP-Protocol-Version, Content-Type",
			"Access-Control-Max-Age":       "86400",
		}},
		{http.MethodPost, 405, false, map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{http.MethodPut, 405, false, map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{http.MethodDelete, 405, false, map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			m.serve(rec, httptest.NewRequest(tt.method, path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tt.wantBody {
				if rec.Body.String() != string(m.body) {
					t.Errorf("body %q", rec.Body.String())
				}
				if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(m.body)) {
					t.Errorf("Content-Length %q", got)
				}
			} else if rec.Body.Len() != 0 {
				t.Errorf("%s has a body %q", tt.method, rec.Body.String())
			}
			if tt.wantStatus == 200 {
				if maxAge := rec.Header().Get("Cache-Control"); !strings.Contains(maxAge, "max-age=") {
					t.Errorf("Cache-Control %q has no max-age", maxAge)
				}
			}
		})
	}
}

// TestMetadataDocument provisions handlers the way Caddy does and reads the document they serve.
func TestMetadataDocument(t *testing.T) {
	jwksFile := writeJWKSFile(t, jwttest.New(t, "k1", "EdDSA"))
	tests := []struct {
		name string
		h    Handler
		want map[string]any
	}{
		{
			name: "minimal, scopes_supported defaults to scopes then any_of",
			h: Handler{
				Resource:             "https://mcp.example.com/mcp",
				AuthorizationServers: []string{"https://auth.example.com"},
				Scopes:               []string{"mcp:read"},
				AnyOf:                []string{"mcp:write", "mcp:admin"},
			},
			want: map[string]any{
				"resource":                 "https://mcp.example.com/mcp",
				"authorization_servers":    []any{"https://auth.example.com"},
				"bearer_methods_supported": []any{"header"},
				"scopes_supported":         []any{"mcp:read", "mcp:write", "mcp:admin"},
			},
		},
		{
			name: "everything set, resource kept exactly as configured",
			h: Handler{
				Resource:              "https://mcp.example.com:8443/a/b/mcp/",
				AuthorizationServers:  []string{"https://auth.example.com", "https://login.example.org/tenant"},
				ResourceName:          "Example MCP",
				ResourceDocumentation: "https://docs.example.com/mcp",
				ScopesSupported:       []string{"mcp:read", "mcp:write", "mcp:admin"},
				Scopes:                []string{"mcp:read"},
			},
			want: map[string]any{
				"resource":                 "https://mcp.example.com:8443/a/b/mcp/",
				"authorization_servers":    []any{"https://auth.example.com", "https://login.example.org/tenant"},
				"bearer_methods_supported": []any{"header"},
				"scopes_supported":         []any{"mcp:read", "mcp:write", "mcp:admin"},
				"resource_name":            "Example MCP",
				"resource_documentation":   "https://docs.example.com/mcp",
			},
		},
		{
			name: "default scopes_supported lists a scope once",
			h: Handler{
				Resource:             "https://mcp.example.com/mcp",
				AuthorizationServers: []string{"https://auth.example.com"},
				Scopes:               []string{"mcp:read", "mcp:read"},
				AnyOf:                []string{"mcp:write", "mcp:read", "mcp:write"},
			},
			want: map[string]any{
				"resource":                 "https://mcp.example.com/mcp",
				"authorization_servers":    []any{"https://auth.example.com"},
				"bearer_methods_supported": []any{"header"},
				"scopes_supported":         []any{"mcp:read", "mcp:write"},
			},
		},
		{
			name: "skip_scopes: no scopes_supported, empty fields omitted",
			h: Handler{
				Resource:             "https://h",
				AuthorizationServers: []string{"https://auth.example.com"},
				SkipScopes:           true,
			},
			want: map[string]any{
				"resource":                 "https://h",
				"authorization_servers":    []any{"https://auth.example.com"},
				"bearer_methods_supported": []any{"header"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			h.JWKSFile = jwksFile
			provisionHandler(t, &h)
			path, _, err := metadataLocation(h.Resource)
			if err != nil {
				t.Fatal(err)
			}
			res := serveRequest(t, &h, httptest.NewRequest(http.MethodGet, path, nil))
			if res.status != http.StatusOK || res.nextRan {
				t.Fatalf("status %d, next ran %v", res.status, res.nextRan)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(res.body), &got); err != nil {
				t.Fatalf("document is not JSON: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("document\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}
