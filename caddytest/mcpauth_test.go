package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// The usual site of these tests protects a reverse_proxy with mcp_auth. There is no global
// `order` option: the directive places itself (before basic_auth), in the same site block as
// reverse_proxy. The site answers every Host, so challenges can be shown to ignore it.
// /whoami shows the placeholders mcp_auth sets.
const whoamiBody = "{http.auth.user.id}|{http.auth.user.client_id}|{http.auth.user.scope}|{http.auth.mcp.claim.tenant}"

// setup is the fixture with a recording upstream, under the names the older tests use.
type setup struct {
	*fixture
	rsaKey *jwttest.Key // the fixture's RSA key
	up     *upstream
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	up := newUpstream(t)
	f := newFixture(t, up)
	return &setup{fixture: f, rsaKey: f.key, up: up}
}

// config is the usual site with a scope list and strip_token, as a Caddyfile or, written by
// hand as a user would, in JSON.
func (s *setup) config(format string, scopes []string, strip bool) (cfg, contentType string) {
	if format == "caddyfile" {
		auth := `resource_name "Example MCP"` + "\nscopes " + strings.Join(scopes, " ")
		if strip {
			auth += "\nstrip_token"
		}
		return s.caddyfile(auth,
			"reverse_proxy "+s.up.dial()+" {\nheader_up X-User {http.auth.user.id}\n}",
			"handle /whoami {\nrespond \""+whoamiBody+"\"\n}"), "text/caddyfile"
	}
	proxy := s.proxy()
	proxy["headers"] = map[string]any{"request": map[string]any{"set": map[string]any{"X-User": []string{"{http.auth.user.id}"}}}}
	return jsonRoutes(
		map[string]any{"handle": []any{s.mcpAuth(map[string]any{
			"resource_name": "Example MCP",
			"leeway":        "1m",
			"scopes":        scopes,
			"strip_token":   strip,
		})}},
		map[string]any{
			"match":    []any{map[string]any{"path": []string{"/whoami"}}},
			"handle":   []any{map[string]any{"handler": "static_response", "body": whoamiBody}},
			"terminal": true,
		},
		map[string]any{"handle": []any{proxy}},
	), "application/json"
}

// TestRequests runs the request path of the spec (section 3) through a real Caddy, once
// configured by Caddyfile and once by JSON.
func TestRequests(t *testing.T) {
	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t)
			cfg, _ := s.config(format, []string{"mcp:read"}, true)
			tc := startCaddy(t, cfg, format)
			wantChallengeScope := "mcp:read"

			t.Run("metadata document", func(t *testing.T) {
				for _, path := range []string{prmPath, prmPath + "/"} {
					code, hdr, body := request(t, tc, http.MethodGet, path, "")
					if code != http.StatusOK {
						t.Fatalf("GET %s: status %d, want 200", path, code)
					}
					if ct := hdr.Get("Content-Type"); ct != "application/json" {
						t.Errorf("Content-Type = %q", ct)
					}
					if v := hdr.Get("Access-Control-Allow-Origin"); v != "*" {
						t.Errorf("Access-Control-Allow-Origin = %q", v)
					}
					if v := hdr.Get("Cache-Control"); v != "public, max-age=3600" {
						t.Errorf("Cache-Control = %q", v)
					}
					var got map[string]any
					if err := json.Unmarshal([]byte(body), &got); err != nil {
						t.Fatalf("body %q: %v", body, err)
					}
					want := map[string]any{
						"resource":                 resource,
						"authorization_servers":    []any{issuer},
						"bearer_methods_supported": []any{"header"},
						"scopes_supported":         []any{"mcp:read"},
						"resource_name":            "Example MCP",
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("document = %v\n want %v", got, want)
					}
				}
				if n := s.up.hits.Load(); n != 0 {
					t.Errorf("upstream got %d requests for the metadata document; mcp_auth must answer it", n)
				}
			})

			t.Run("metadata document methods", func(t *testing.T) {
				code, hdr, body := request(t, tc, http.MethodHead, prmPath, "")
				if code != http.StatusOK || body != "" || hdr.Get("Content-Type") != "application/json" {
					t.Errorf("HEAD: status %d, Content-Type %q, body %q; want 200 application/json, no body",
						code, hdr.Get("Content-Type"), body)
				}
				code, hdr, _ = request(t, tc, http.MethodOptions, prmPath, "")
				if code != http.StatusNoContent || hdr.Get("Access-Control-Allow-Origin") != "*" ||
					!strings.Contains(hdr.Get("Access-Control-Allow-Methods"), "GET") {
					t.Errorf("OPTIONS: status %d, CORS headers %v; want 204 with CORS", code, hdr)
				}
				code, hdr, _ = request(t, tc, http.MethodPost, prmPath, "")
				if code != http.StatusMethodNotAllowed || !strings.Contains(hdr.Get("Allow"), "GET") {
					t.Errorf("POST: status %d, Allow %q; want 405 with Allow", code, hdr.Get("Allow"))
				}
				if n := s.up.hits.Load(); n != 0 {
					t.Errorf("upstream got %d requests for the metadata document", n)
				}
			})

			t.Run("CORS preflight passes without a token", func(t *testing.T) {
				req, err := http.NewRequest(http.MethodOptions, baseURL+"/mcp", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Origin", "https://app.example.com")
				req.Header.Set("Access-Control-Request-Method", "POST")
				resp, err := tc.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || s.up.hits.Load() != 1 {
					t.Errorf("preflight: status %d, upstream hits %d; want it handed to the upstream", resp.StatusCode, s.up.hits.Load())
				}
				s.up.hits.Store(0)
			})

			t.Run("no token: 401 challenge from resource, not Host", func(t *testing.T) {
				for _, host := range []string{"", "attacker.example.net", "mcp.example.com:9080"} {
					code, hdr, _ := request(t, tc, http.MethodPost, "/mcp", host)
					if code != http.StatusUnauthorized {
						t.Errorf("Host %q: status %d, want 401", host, code)
					}
					checkChallenge(t, hdr, challenge("", "", wantChallengeScope))
				}
				if n := s.up.hits.Load(); n != 0 {
					t.Errorf("upstream reached %d times without a token", n)
				}
			})

			t.Run("valid tokens reach the upstream", func(t *testing.T) {
				for _, key := range []*jwttest.Key{s.rsaKey, s.ecKey} {
					before := s.up.hits.Load()
					tok := key.Token(t, claims(resource, "mcp:read mcp:write"), nil)
					code, _, body := request(t, tc, http.MethodPost, "/mcp", "", bearer(tok))
					if code != http.StatusOK || body != upstreamBody {
						t.Fatalf("%s token: status %d body %q, want 200 %q", key.Alg, code, body, upstreamBody)
					}
					if s.up.hits.Load() != before+1 {
						t.Errorf("%s token: upstream not reached", key.Alg)
					}
					hdr := s.up.lastHeader()
					if v := hdr.Get("X-User"); v != "user-1" {
						t.Errorf("%s token: upstream X-User = %q, want user-1 ({http.auth.user.id})", key.Alg, v)
					}
					if _, ok := hdr["Authorization"]; ok {
						t.Errorf("%s token: strip_token is set but the upstream received Authorization", key.Alg)
					}
				}
			})

			t.Run("placeholders in respond", func(t *testing.T) {
				tok := s.ecKey.Token(t, claims(resource, "mcp:read"), nil)
				code, _, body := request(t, tc, http.MethodGet, "/whoami", "", bearer(tok))
				if want := "user-1|client-1|mcp:read|acme"; code != http.StatusOK || body != want {
					t.Errorf("status %d body %q, want 200 %q", code, body, want)
				}
			})

			t.Run("denials", func(t *testing.T) {
				other := jwttest.New(t, "rsa-1", "RS256") // same kid, key the JWKS does not hold
				cases := []struct {
					name   string
					auth   []string
					status int
					code   string
					desc   string
				}{
					{"insufficient scope", []string{bearer(s.rsaKey.Token(t, claims(resource, "mcp:write"), nil))},
						http.StatusForbidden, "insufficient_scope", descScope},
					{"wrong audience", []string{bearer(s.rsaKey.Token(t, claims("https://other.example.com/mcp", "mcp:read"), nil))},
						http.StatusUnauthorized, "invalid_token", descAudience},
					{"audience of the issuer, not this resource", []string{bearer(s.ecKey.Token(t, claims(issuer, "mcp:read"), nil))},
						http.StatusUnauthorized, "invalid_token", descAudience},
					{"bad signature", []string{bearer(other.Token(t, claims(resource, "mcp:read"), nil))},
						http.StatusUnauthorized, "invalid_token", "The access token signature is invalid."},
					{"two Authorization headers", []string{
						bearer(s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)),
						bearer(s.ecKey.Token(t, claims(resource, "mcp:read"), nil)),
					}, http.StatusBadRequest, "invalid_request", descMultiple},
				}
				before := s.up.hits.Load()
				for _, c := range cases {
					code, hdr, body := request(t, tc, http.MethodPost, "/mcp", "", c.auth...)
					if code != c.status {
						t.Errorf("%s: status %d, want %d", c.name, code, c.status)
					}
					checkChallenge(t, hdr, challenge(c.code, c.desc, wantChallengeScope))
					checkErrorBody(t, body, c.code, c.desc)
				}
				if n := s.up.hits.Load() - before; n != 0 {
					t.Errorf("upstream reached %d times by denied requests", n)
				}
			})
		})
	}
}
