package integration

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
)

// Who may call, through a real Caddy: clients, require_claim (base and in rules),
// scope_implies, scope_prefix, allow_missing_audience_for, a {tenantid} issuer with tenants
// (its host from {env.*}, which must still expand), from the Caddyfile and from JSON.

// whoConfig is the policy of these tests, from the Caddyfile or the same in JSON, which pins
// the field names.
func whoConfig(f *fixture, adapter, name string) string {
	if adapter == "caddyfile" {
		return f.caddyfile(`resource_name "` + name + `"
issuers https://auth.example.com https://{env.P8_TENANT_HOST}/{tenantid}/v2.0
tenants tenant-a
scopes mcp:read
scope_prefix api://app/
scope_implies mcp:admin mcp:write
scope_implies mcp:write mcp:read
clients client-1 https://app.example.com/* cognito-client
require_claim realm_access.roles mcp
allow_missing_audience_for cognito-client
tool delete_* {
	scopes mcp:admin
	require_claim groups admins
}
tool write_* {
	scopes mcp:write
}
tool deploy {
	clients https://app.example.com/deployer
}`)
	}
	claim := func(name string, values ...string) map[string]any {
		return map[string]any{"claim": name, "values": values}
	}
	return f.json(map[string]any{
		"resource_name":              name,
		"issuers":                    []string{"https://auth.example.com", "https://{env.P8_TENANT_HOST}/{tenantid}/v2.0"},
		"tenants":                    []string{"tenant-a"},
		"scopes":                     []string{"mcp:read"},
		"scope_prefix":               "api://app/",
		"scope_implies":              map[string][]string{"mcp:admin": {"mcp:write"}, "mcp:write": {"mcp:read"}},
		"clients":                    []string{"client-1", "https://app.example.com/*", "cognito-client"},
		"require_claims":             []any{claim("realm_access.roles", "mcp")},
		"allow_missing_audience_for": []string{"cognito-client"},
		"rules": []any{
			map[string]any{"tools": []string{"delete_*"}, "scopes": []string{"mcp:admin"}, "require_claims": []any{claim("groups", "admins")}},
			map[string]any{"tools": []string{"write_*"}, "scopes": []string{"mcp:write"}},
			map[string]any{"tools": []string{"deploy"}, "clients": []string{"https://app.example.com/deployer"}},
		},
	})
}

const (
	descClient = "The client is not allowed to access this resource."
	descClaim  = "The access token does not carry the claims this request requires."
	descIss    = "The access token issuer is not accepted."
	whoPrefix  = "api://app/"
)

// whoClaims are the fixture's claims that pass the base policy: client-1, realm role mcp,
// scope mcp:read (and no tenant claim, no nbf), with set applied: a nil value deletes.
func (f *fixture) whoClaims(set map[string]any) jwt.MapClaims {
	all := map[string]any{"realm_access": map[string]any{"roles": []any{"mcp"}}, "tenant": nil, "nbf": nil}
	maps.Copy(all, set)
	return f.claims("mcp:read", all)
}

func toolCall(name string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
}

// postRPC sends a JSON-RPC body with a bearer token.
func postRPC(t *testing.T, tc *caddytest.Tester, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, baseURL+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	tc.Client.CloseIdleConnections()
	resp, err := tc.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, b.String()
}

type whoCase struct {
	name   string
	token  func(t *testing.T) string
	body   string // default: a call of read_file
	status int
	// code and desc of a denial; scope of its challenge ("" for none)
	code, desc, scope string
}

func TestWhoMayCallCaddyfile(t *testing.T) { runWhoMayCall(t, "caddyfile") }
func TestWhoMayCallJSON(t *testing.T)      { runWhoMayCall(t, "json") }

func runWhoMayCall(t *testing.T, adapter string) {
	t.Setenv("P8_TENANT_HOST", "login.example.com")
	up := newUpstream(t)
	f := newFixture(t, up)
	key := f.key
	name := "Who " + adapter
	tc := f.start(t, whoConfig(f, adapter, name), adapter, name)

	// The metadata advertises the prefixed scopes (Entra reads a bare one as Graph's).
	_, _, prm := request(t, tc, http.MethodGet, prmPath, "")
	var doc struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal([]byte(prm), &doc); err != nil {
		t.Fatal(err)
	}
	if want := []string{whoPrefix + "mcp:read", whoPrefix + "mcp:admin", whoPrefix + "mcp:write"}; strings.Join(doc.Scopes, " ") != strings.Join(want, " ") {
		t.Errorf("scopes_supported = %q, want %q", doc.Scopes, want)
	}

	tok := func(set map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string { return key.Token(t, f.whoClaims(set), nil) }
	}
	raw := func(payload string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return forge(t, key.Alg, key.Signer, mustJSON(t, joseHeader(key.Alg, key.KID, nil)), payload)
		}
	}
	exp := time.Now().Add(time.Hour).Unix()
	payload := func(members string) string {
		return `{"iss":"` + issuer + `","aud":"` + resource + `","sub":"u","scope":"mcp:read","exp":` +
			jsonNum(exp) + `,` + members + `}`
	}
	const access, insufficient = "access_denied", "insufficient_scope"
	base := whoPrefix + "mcp:read"
	cases := []whoCase{
		{name: "allowed client, claim and scope", token: tok(nil), status: 200},
		{name: "client via azp when no client_id", token: tok(map[string]any{"client_id": nil, "azp": "client-1"}), status: 200},
		{name: "CIMD client URL under the glob", token: tok(map[string]any{"client_id": "https://app.example.com/client.json"}), status: 200},
		{name: "client not in the list", token: tok(map[string]any{"client_id": "client-2"}), status: 403, code: access, desc: descClient},
		{name: "client_id in another case", token: tok(map[string]any{"client_id": "CLIENT-1"}), status: 403, code: access, desc: descClient},
		{name: "client_id wins over an allowed azp", token: tok(map[string]any{"client_id": "evil", "azp": "client-1"}), status: 403, code: access, desc: descClient},
		{name: "glob does not reach another host", token: tok(map[string]any{"client_id": "https://app.example.com.evil.net/x"}), status: 403, code: access, desc: descClient},
		{name: "no client at all", token: tok(map[string]any{"client_id": nil}), status: 403, code: access, desc: descClient},
		{name: "client and scope both wrong: access_denied wins", token: tok(map[string]any{"client_id": "client-2", "scope": "other"}), status: 403, code: access, desc: descClient},
		{name: "claim missing", token: tok(map[string]any{"realm_access": nil}), status: 403, code: access, desc: descClaim},
		{name: "claim as a string", token: tok(map[string]any{"realm_access": map[string]any{"roles": "mcp"}}), status: 200},
		{name: "claim array of non-strings", token: tok(map[string]any{"realm_access": map[string]any{"roles": []any{1, true, map[string]any{"mcp": 1}, []any{"mcp"}}}}), status: 403, code: access, desc: descClaim},
		{name: "claim with another value", token: tok(map[string]any{"realm_access": map[string]any{"roles": []any{"MCP", "mcp "}}}), status: 403, code: access, desc: descClaim},
		{name: "dotted name as a literal top-level claim", token: tok(map[string]any{"realm_access": nil, "realm_access.roles": []any{"mcp"}}), status: 403, code: access, desc: descClaim},
		{name: "__proto__ holds nothing", token: tok(map[string]any{"realm_access": nil, "__proto__": map[string]any{"roles": []any{"mcp"}}}), status: 403, code: access, desc: descClaim},
		{name: "claim given twice (last-wins readers would pass): refused",
			token: raw(payload(`"client_id":"client-1","realm_access":{"roles":["mcp"]},"realm_access":{"roles":[]}`)), status: 403, code: access, desc: descClaim},
		{name: "claim given twice, the allowed one last: refused",
			token: raw(payload(`"client_id":"client-1","realm_access":{"roles":["x"]},"realm_access":{"roles":["mcp"]}`)), status: 403, code: access, desc: descClaim},
		{name: "nested member given twice: refused",
			token: raw(payload(`"client_id":"client-1","realm_access":{"roles":["x"],"roles":["mcp"]}`)), status: 403, code: access, desc: descClaim},
		{name: "claim and scope both fail: access_denied wins", token: tok(map[string]any{"realm_access": nil, "scope": ""}), status: 403, code: access, desc: descClaim},
		{name: "no scope: step-up names the prefixed scope", token: tok(map[string]any{"scope": "other"}), status: 403, code: insufficient, desc: descScope, scope: base},
		{name: "prefixed scope granted", token: tok(map[string]any{"scope": whoPrefix + "mcp:read"}), status: 200},
		{name: "parent scope implies the base one", token: tok(map[string]any{"scope": "mcp:admin"}), status: 200},
		{name: "implied scope passes a rule", token: tok(map[string]any{"scope": "mcp:admin"}), body: toolCall("write_file"), status: 200},
		{name: "rule scope missing: asks for the rule's scope, not its parent", token: tok(nil), body: toolCall("write_file"),
			status: 403, code: insufficient, desc: descScope, scope: base + " " + whoPrefix + "mcp:write"},
		{name: "rule with claim: met", token: tok(map[string]any{"scope": "mcp:admin", "groups": []any{"admins"}}), body: toolCall("delete_x"), status: 200},
		{name: "rule with claim: claim missing, scope held", token: tok(map[string]any{"scope": "mcp:admin"}), body: toolCall("delete_x"), status: 403, code: access, desc: descClaim},
		{name: "rule with claim: both missing, access_denied wins", token: tok(nil), body: toolCall("delete_x"), status: 403, code: access, desc: descClaim},
		{name: "rule with claim: claim held, scope missing", token: tok(map[string]any{"groups": "admins"}), body: toolCall("delete_x"),
			status: 403, code: insufficient, desc: descScope, scope: base + " " + whoPrefix + "mcp:admin"},
		{name: "rule with clients: other client", token: tok(nil), body: toolCall("deploy"), status: 403, code: access, desc: descClient},
		{name: "rule with clients: the client", token: tok(map[string]any{"client_id": "https://app.example.com/deployer"}), body: toolCall("deploy"), status: 200},
		{name: "no aud, listed client", token: tok(map[string]any{"aud": nil, "client_id": "cognito-client"}), status: 200},
		{name: "no aud, client not listed for it", token: tok(map[string]any{"aud": nil}), status: 401, code: "invalid_token", desc: descAudience, scope: base},
		{name: "wrong aud, listed client", token: tok(map[string]any{"aud": "https://other.example.com", "client_id": "cognito-client"}), status: 401, code: "invalid_token", desc: descAudience, scope: base},
		{name: "empty aud array, listed client", token: tok(map[string]any{"aud": []any{}, "client_id": "cognito-client"}), status: 401, code: "invalid_token", desc: descAudience, scope: base},
		{name: "tenant issuer, allowed tenant", token: tok(map[string]any{"iss": "https://login.example.com/tenant-a/v2.0", "tid": "tenant-a"}), status: 200},
		{name: "tenant issuer, other tenant", token: tok(map[string]any{"iss": "https://login.example.com/tenant-b/v2.0", "tid": "tenant-b"}), status: 401, code: "invalid_token", desc: descIss, scope: base},
		{name: "tenant issuer, tid differs from iss", token: tok(map[string]any{"iss": "https://login.example.com/tenant-b/v2.0", "tid": "tenant-a"}), status: 401, code: "invalid_token", desc: descIss, scope: base},
		{name: "tenant issuer, no tid", token: tok(map[string]any{"iss": "https://login.example.com/tenant-a/v2.0"}), status: 401, code: "invalid_token", desc: descIss, scope: base},
		{name: "tenant issuer, literal template", token: tok(map[string]any{"iss": "https://login.example.com/{tenantid}/v2.0", "tid": "tenant-a"}), status: 401, code: "invalid_token", desc: descIss, scope: base},
		{name: "tenant issuer, tid reshaping the URL", token: tok(map[string]any{"iss": "https://login.example.com/tenant-a/x/v2.0", "tid": "tenant-a/x"}), status: 401, code: "invalid_token", desc: descIss, scope: base},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if body == "" {
				body = toolCall("read_file")
			}
			before := up.hits.Load()
			code, hdr, got := postRPC(t, tc, c.token(t), body)
			if code != c.status {
				t.Fatalf("status %d, want %d (body %.200q)", code, c.status, got)
			}
			reached := up.hits.Load() - before
			if c.status == 200 {
				if reached != 1 {
					t.Errorf("upstream reached %d times, want 1", reached)
				}
				return
			}
			if reached != 0 {
				t.Errorf("a denied request reached the upstream")
			}
			checkChallenge(t, hdr, challenge(c.code, c.desc, c.scope))
			checkErrorBody(t, got, c.code, c.desc)
		})
	}
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestTenantIssuerDiscoveredFromAuthorizationServer: an issuer template's keys come from the
// metadata of the configured authorization server (Entra's .../organizations/v2.0 names
// the issuer .../{tenantid}/v2.0); the template itself is never fetched.
func TestTenantIssuerDiscoveredFromAuthorizationServer(t *testing.T) {
	f := newFixture(t, nil)
	key, js := f.key, f.jwks
	var literal bool
	var as *httptest.Server
	as = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "tenantid") || strings.Contains(r.URL.Path, "%7B") {
			literal = true
		}
		if r.URL.Path == "/organizations/v2.0/.well-known/openid-configuration" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": as.URL + "/{tenantid}/v2.0", "jwks_uri": js.URL})
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(as.Close)
	name := "Tenant discovery"
	tc := f.start(t, f.siteCaddyfile(`resource https://mcp.example.com/mcp
authorization_servers `+as.URL+`/organizations/v2.0
resource_name "`+name+`"
issuers `+as.URL+`/{tenantid}/v2.0
scopes mcp:read`), "caddyfile", name)
	c := f.whoClaims(map[string]any{"iss": as.URL + "/t-123/v2.0", "tid": "t-123"})
	// The key set loads in the background (a first request may meet it still loading); once
	// the JWKS was answered, a request finds the keys or joins the fetch that installs them.
	code, _, _ := postRPC(t, tc, key.Token(t, c, nil), toolCall("read_file"))
	if code != http.StatusOK {
		js.waitKeysServed(t)
		code, _, _ = postRPC(t, tc, key.Token(t, c, nil), toolCall("read_file"))
	}
	if code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if literal {
		t.Error("the issuer template was fetched literally")
	}
}

// TestPolicyRefusedConfigs: configurations the policy refuses at load, with the reason.
func TestPolicyRefusedConfigs(t *testing.T) {
	t.Setenv("P8_TENANT_HOST", "login.example.com")
	f := newFixture(t, nil)
	f.start(t, whoConfig(f, "caddyfile", "refused"), "caddyfile")
	for _, c := range []struct{ name, cfg, want string }{
		{"offline_access in a rule", `"rules":[{"tools":["x"],"scopes":["offline_access"]}]`, "offline_access is refused"},
		{"offline_access in any_of", `"any_of":["offline_access"]`, "offline_access is refused"},
		{"cycle", `"scope_implies":{"a":["b"],"b":["a"]}`, "scope_implies: cycle a -> b -> a"},
		{"tenants without template", `"tenants":["t1"]`, "tenants: no issuer contains {tenantid}"},
		{"empty claim segment", `"require_claims":[{"claim":"a..b","values":["x"]}]`, "empty member name"},
		{"template as authorization server", `"issuers":["https://auth.example.com"],"authorization_servers":["https://login.example.com/{tenantid}/v2.0"]`, "{tenantid} belongs in issuers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fields := map[string]any{"scopes": []string{"mcp:read"}}
			if err := json.Unmarshal([]byte("{"+c.cfg+"}"), &fields); err != nil {
				t.Fatal(err)
			}
			cfg := jsonRoutes(map[string]any{"handle": []any{f.mcpAuth(fields)}})
			code, body := loadConfig(t, cfg, "application/json", true)
			var answer struct{ Error string }
			_ = json.Unmarshal([]byte(body), &answer)
			if code == http.StatusOK || !strings.Contains(answer.Error, c.want) {
				t.Errorf("load: status %d, body %q; want a refusal containing %q", code, body, c.want)
			}
		})
	}
}
