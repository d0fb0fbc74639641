package integration

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// caddyfileConfig protects a reverse_proxy with mcp_auth. There is no global `order` option:
// the directive places itself (before basic_auth), in the same site block as reverse_proxy.
// The site answers every Host, so challenges can be shown to ignore it.
const caddyfileConfig = globalOptions + `

:9080 {
	reverse_proxy @UPSTREAM@ {
		header_up X-User {http.auth.user.id}
	}
	handle /whoami {
		respond "{http.auth.user.id}|{http.auth.user.client_id}|{http.auth.user.scope}|{http.auth.mcp.claim.tenant}"
	}
	mcp_auth {
		resource              https://mcp.example.com/mcp
		authorization_servers https://auth.example.com
		resource_name         "Example MCP"
		jwks_url              @JWKS@
		scopes                @SCOPES@
		@STRIP@
	}
}
`

// jsonConfig is the same as caddyfileConfig, written by hand in JSON as a user would.
var jsonConfig = jsonEnvelope(`[
						{
							"handle": [{
								"handler": "mcp_auth",
								"resource": "https://mcp.example.com/mcp",
								"authorization_servers": ["https://auth.example.com"],
								"resource_name": "Example MCP",
								"jwks_urls": ["@JWKS@"],
								"leeway": "1m",
								"scopes": [@SCOPES_JSON@],
								"strip_token": @STRIP_JSON@
							}]
						},
						{
							"match": [{"path": ["/whoami"]}],
							"handle": [{
								"handler": "static_response",
								"body": "{http.auth.user.id}|{http.auth.user.client_id}|{http.auth.user.scope}|{http.auth.mcp.claim.tenant}"
							}],
							"terminal": true
						},
						{
							"handle": [{
								"handler": "reverse_proxy",
								"upstreams": [{"dial": "@UPSTREAM@"}],
								"headers": {"request": {"set": {"X-User": ["{http.auth.user.id}"]}}}
							}]
						}
					]`)

// setup is one running Caddy in front of an upstream, with the keys that sign its tokens.
type setup struct {
	rsaKey, ecKey *jwttest.Key
	jwks          *jwksServer
	up            *upstream
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	s := &setup{rsaKey: jwttest.New(t, "rsa-1", "RS256"), ecKey: jwttest.New(t, "ec-1", "ES256"), up: newUpstream(t)}
	s.jwks = newJWKSServer(t, s.rsaKey, s.ecKey)
	return s
}

// config renders the Caddyfile or JSON configuration with a scope list and strip_token.
func (s *setup) config(format string, scopes []string, strip bool) (cfg, contentType string) {
	vars := map[string]string{"JWKS": s.jwks.URL + "/jwks", "UPSTREAM": s.up.dial()}
	if format == "caddyfile" {
		vars["SCOPES"] = join(scopes, " ", "")
		vars["STRIP"] = ""
		if strip {
			vars["STRIP"] = "strip_token"
		}
		return render(caddyfileConfig, vars), "text/caddyfile"
	}
	vars["SCOPES_JSON"] = join(scopes, ", ", `"`)
	vars["STRIP_JSON"] = "false"
	if strip {
		vars["STRIP_JSON"] = "true"
	}
	return render(jsonConfig, vars), "application/json"
}

func join(list []string, sep, quote string) string {
	out := ""
	for i, s := range list {
		if i > 0 {
			out += sep
		}
		out += quote + s + quote
	}
	return out
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
