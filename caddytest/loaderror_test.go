package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestRefusedConfigs loads refused configurations through the admin API, as `caddy reload`
// does, and checks that the load fails with an error naming the field, and that Caddy keeps
// serving the previous configuration.
func TestRefusedConfigs(t *testing.T) {
	s := newSetup(t)
	cfg, _ := s.config("caddyfile", []string{"mcp:read"}, true)
	s.start(t, cfg, "caddyfile")
	tok := s.token(t, "mcp:read", nil)

	cases := []struct {
		name   string
		format string
		usual  bool     // the usual resource, authorization server and keys come first
		body   string   // Caddyfile block lines, or JSON fields
		want   []string // texts the load error must contain
	}{
		{"no scope policy", "caddyfile", true, "",
			[]string{"mcp_auth", "scopes:", "no scope policy"}},
		{"skip_scopes with scopes", "caddyfile", true, "\t\tskip_scopes\n\t\tscopes mcp:read\n",
			[]string{"skip_scopes:", "cannot be combined"}},
		{"no resource", "caddyfile", false, "\t\tauthorization_servers https://auth.example.com\n\t\tscopes mcp:read\n",
			[]string{"resource:", "required"}},
		{"resource with fragment", "caddyfile", false, "\t\tresource https://mcp.example.com/mcp#x\n\t\tauthorization_servers https://auth.example.com\n\t\tscopes mcp:read\n",
			[]string{"resource", "fragment"}},
		{"relative resource", "caddyfile", false, "\t\tresource /mcp\n\t\tauthorization_servers https://auth.example.com\n\t\tscopes mcp:read\n",
			[]string{"resource", "not an absolute http or https URL"}},
		{"no authorization_servers", "caddyfile", false, "\t\tresource https://mcp.example.com/mcp\n\t\tscopes mcp:read\n",
			[]string{"authorization_servers:", "required"}},
		{"symmetric algorithm", "caddyfile", true, "\t\tscopes mcp:read\n\t\talgorithms RS256 HS256\n",
			[]string{"algorithms:", "HS256", "symmetric"}},
		{"alg none", "caddyfile", true, "\t\tscopes mcp:read\n\t\talgorithms none\n",
			[]string{"algorithms:", `"none" is refused`}},
		{"unknown algorithm", "caddyfile", true, "\t\tscopes mcp:read\n\t\talgorithms RS257\n",
			[]string{"algorithms:", "RS257", "unknown algorithm"}},
		{"leeway too large", "caddyfile", true, "\t\tscopes mcp:read\n\t\tleeway 10m\n",
			[]string{"leeway:", "outside"}},
		{"unknown subdirective", "caddyfile", true, "\t\tscopes mcp:read\n\t\trequired_scopes mcp:read\n",
			[]string{`unrecognized mcp_auth subdirective "required_scopes"`}},
		{"missing argument", "caddyfile", true, "\t\tscopes\n",
			[]string{"wrong argument count", "'scopes'"}},
		{"resource_uri pattern not in normal form", "caddyfile", true, "\t\tscopes mcp:read\n\t\tresource_uri file://localhost/srv/secret/* {\n\t\t\tscopes mcp:admin\n\t\t}\n",
			[]string{"resource_uris", `"file://localhost/srv/secret/*"`, "write patterns in the normal form", "a file: URI must be file:///"}},
		{"public: unknown subdirective", "caddyfile", true, "\t\tscopes mcp:read\n\t\tpublic {\n\t\t\ttools search\n\t\t}\n",
			[]string{"public:", `unrecognized subdirective "tools"`}},
		{"json: public with an empty pattern", "json", true, `"scopes": ["mcp:read"], "public": {"tools": ["search", ""]}`,
			[]string{"public.tools:", "empty pattern"}},
		{"json: public resource_uri not in normal form", "json", true, `"scopes": ["mcp:read"], "public": {"resource_uris": ["file:///pub/../secret/*"]}`,
			[]string{"public.resource_uris:", "normal form"}},
		{"public method naming tools/call", "caddyfile", true, "\t\tscopes mcp:read\n\t\ttool delete_* {\n\t\t\tscopes mcp:admin\n\t\t}\n\t\tpublic {\n\t\t\tmethod tools/call\n\t\t}\n",
			[]string{"public.methods:", `"tools/call" matches tools/call`, "tool * for every tool"}},
		{"json: public method glob over resources", "json", true, `"scopes": ["mcp:read"], "public": {"methods": ["resources/*"]}`,
			[]string{"public.methods:", `"resources/*" matches resources/read`}},
		{"json: public method *", "json", true, `"scopes": ["mcp:read"], "public": {"methods": ["logging/setLevel", "*"]}`,
			[]string{"public.methods:", `"*" matches tools/call`}},
		{"json: challenge_in_result with an empty pattern", "json", true, `"scopes": ["mcp:read"], "challenge_in_result": [""]`,
			[]string{"challenge_in_result:", "empty pattern"}},
		{"json: no scope policy", "json", true, "",
			[]string{"mcp_auth", "scopes:", "no scope policy"}},
		{"json: scope outside RFC 6749", "json", true, `"scopes": ["mcp read"]`,
			[]string{"scopes:", `"mcp read"`, "not a valid scope token"}},
		{"json: negative leeway", "json", true, `"scopes": ["mcp:read"], "leeway": "-1s"`,
			[]string{"leeway:", "outside"}},
		{"json: allow_any_audience with audiences", "json", true, `"scopes": ["mcp:read"], "allow_any_audience": true, "audiences": ["x"]`,
			[]string{"allow_any_audience:", "cannot be combined"}},
		// A comma is legal in a scope-token, so `scopes a,b` would load as one scope and every
		// token would get 403: refused, naming the field.
		{"scopes joined by a comma", "caddyfile", true, "\t\tscopes mcp:read,mcp:write\n",
			[]string{"scopes", `"mcp:read,mcp:write"`, "scopes are separated by spaces", "Caddyfile:"}},
		{"rule scopes joined by a comma", "caddyfile", true, "\t\tscopes mcp:read\n\t\ttool delete_* {\n\t\t\tscopes mcp:admin,mcp:write\n\t\t}\n",
			[]string{"tool", `"mcp:admin,mcp:write"`, "scopes are separated by spaces", "Caddyfile:"}},
		{"json: scope_implies joined by a comma", "json", true, `"scopes": ["mcp:read"], "scope_implies": {"mcp:admin": ["mcp:read,mcp:write"]}`,
			[]string{"scope_implies mcp:admin", `"mcp:read,mcp:write"`, "scopes are separated by spaces"}},
		{"json: scopes_supported joined by a comma", "json", true, `"scopes": ["mcp:read"], "scopes_supported": ["mcp:read,mcp:write"]`,
			[]string{"scopes_supported", "scopes are separated by spaces"}},
		// Found at provision time, when the Caddyfile is already JSON: no file:line, but the
		// subdirective and the site's resource.
		{"jwks_file missing", "caddyfile", false, "\t\tresource https://mcp.example.com/mcp\n\t\tauthorization_servers https://auth.example.com\n\t\tjwks_file /nonexistent/mcp-auth-jwks.json\n\t\tscopes mcp:read\n",
			[]string{"jwks_file", "/nonexistent/mcp-auth-jwks.json", "in the mcp_auth of resource https://mcp.example.com/mcp"}},
		{"jwks_file from an unset variable", "caddyfile", false, "\t\tresource https://mcp.example.com/mcp\n\t\tauthorization_servers https://auth.example.com\n\t\tjwks_file {env.MCPAUTH_TEST_UNSET_JWKS_FILE}\n\t\tscopes mcp:read\n",
			[]string{"jwks_file", "{env.MCPAUTH_TEST_UNSET_JWKS_FILE}", "empty value", "in the mcp_auth of resource https://mcp.example.com/mcp"}},
		// dpop (RFC 9449)
		{"dpop: HS256 proofs", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop {\n\t\t\talgorithms ES256 HS256\n\t\t}\n",
			[]string{"dpop algorithms:", "HS256", "symmetric"}},
		{"dpop: unknown subdirective", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop {\n\t\t\tnonces\n\t\t}\n",
			[]string{`dpop: unrecognized subdirective "nonces"`}},
		{"dpop: max_age too long", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop {\n\t\t\tmax_age 2h\n\t\t}\n",
			[]string{"dpop max_age:", "outside"}},
		{"dpop: short nonce key", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop {\n\t\t\tnonce secret\n\t\t}\n",
			[]string{"dpop nonce:", "shorter than 16 bytes"}},
		{"dpop: nonce key from an unset variable", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop {\n\t\t\tnonce {env.MCPAUTH_TEST_UNSET_NONCE_KEY}\n\t\t}\n",
			[]string{"dpop nonce_key", "{env.MCPAUTH_TEST_UNSET_NONCE_KEY}", "empty value"}},
		{"dpop: value on the dpop line", "caddyfile", true, "\t\tscopes mcp:read\n\t\tdpop on\n",
			[]string{"dpop: takes a block, not a value"}},
		{"json: dpop alg none", "json", true, `"scopes": ["mcp:read"], "dpop": {"algorithms": ["none"]}`,
			[]string{"dpop algorithms:", `"none" is refused`}},
		{"json: dpop negative replay_cache", "json", true, `"scopes": ["mcp:read"], "dpop": {"replay_cache": -1}`,
			[]string{"dpop replay_cache:", "negative"}},
		{"json: dpop nonce_key without nonce", "json", true, `"scopes": ["mcp:read"], "dpop": {"nonce_key": "0123456789abcdef0123"}`,
			[]string{"dpop nonce_key:", "without nonce"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A site whose mcp_auth block (or handler's fields) is the case's, before a
			// respond that must never be served.
			const never = "should never be served"
			var cfg, ct string
			switch {
			case c.format == "json":
				var fields map[string]any
				if err := json.Unmarshal([]byte("{"+c.body+"}"), &fields); err != nil {
					t.Fatal(err)
				}
				cfg, ct = s.json(fields, map[string]any{"handler": "static_response", "body": never}), "application/json"
			case c.usual:
				cfg, ct = s.caddyfile(c.body, `respond "`+never+`"`), "text/caddyfile"
			default:
				cfg, ct = s.siteCaddyfile(c.body, `respond "`+never+`"`), "text/caddyfile"
			}
			code, body := loadConfig(t, cfg, ct, false)
			if code == http.StatusOK {
				t.Fatalf("the config was accepted, want it refused")
			}
			var answer struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Error == "" {
				t.Fatalf("status %d, body %q: want a JSON error", code, body)
			}
			t.Logf("status %d: %s", code, answer.Error)
			for _, w := range c.want {
				if !strings.Contains(answer.Error, w) {
					t.Errorf("load error does not contain %q:\n%s", w, answer.Error)
				}
			}

			// The refused config never replaced the running one.
			code, _, got := s.do(t, attackReq{auth: []string{bearer(tok)}})
			if code != http.StatusOK || string(got) != upstreamBody {
				t.Errorf("after the refused load: status %d body %q, want the previous config's 200 %q", code, got, upstreamBody)
			}
		})
	}
}
