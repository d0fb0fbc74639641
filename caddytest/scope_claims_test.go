package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// scope_claim with several claims: one configuration accepts Entra ID's delegated tokens
// (scopes in `scp`, a space-separated string) and its app-only tokens (app roles in
// `roles`, an array), granting the union; each claim is read with the strict scope grammar
// and refused when it appears twice. From the Caddyfile and from JSON (an array, and the
// string of one claim as before).

// scopeClaimsConfig: the base policy needs mcp.read, delete_* tools mcp.admin too, the scopes
// come from the claims named (a Caddyfile list, or the JSON text of scope_claim), and the
// site answers the scopes granted.
func scopeClaimsConfig(f *fixture, adapter, claims string) string {
	answer := "{http.auth.user.scope}"
	if adapter == "caddyfile" {
		return f.caddyfile("scopes mcp.read\nscope_claim "+claims+"\ntool delete_* {\nscopes mcp.admin\n}", `respond "`+answer+`"`)
	}
	return f.json(map[string]any{
		"scopes":      []string{"mcp.read"},
		"scope_claim": json.RawMessage(claims),
		"rules":       []any{map[string]any{"tools": []string{"delete_*"}, "scopes": []string{"mcp.admin"}}},
	}, map[string]any{"handler": "static_response", "body": answer})
}

func TestScopeClaimsThroughCaddy(t *testing.T) {
	s := newSetup(t)
	token := func(set map[string]any) string {
		c := claims(resource, "")
		delete(c, "scope")
		for k, v := range set {
			c[k] = v
		}
		return s.rsaKey.Token(t, c, nil)
	}
	forged := func(members string) string {
		c := claims(resource, "")
		delete(c, "scope")
		p := mustJSON(t, c)
		return forge(t, "RS256", s.rsaKey.Signer, `{"alg":"RS256","kid":"rsa-1"}`, p[:len(p)-1]+","+members+"}")
	}
	delegated := token(map[string]any{"scp": "mcp.read"})
	appOnly := token(map[string]any{"roles": []string{"mcp.read"}})
	both := token(map[string]any{"scp": "mcp.read", "roles": []string{"mcp.admin"}})

	type call struct {
		name, token, tool string
		status            int
		scope             string // {http.auth.user.scope} on 200
	}
	union := []call{
		{"delegated token (scp)", delegated, "read_file", 200, "mcp.read"},
		{"app-only token (roles)", appOnly, "read_file", 200, "mcp.read"},
		{"scp and roles: the union", both, "delete_file", 200, "mcp.read mcp.admin"},
		{"scp alone does not reach an admin tool", delegated, "delete_file", 403, ""},
		{"the same scope in both, once", token(map[string]any{"scp": "mcp.read mcp.admin", "roles": []string{"mcp.admin", "mcp.read"}}), "delete_file", 200, "mcp.read mcp.admin"},
		{"scope claim not configured", token(map[string]any{"scope": "mcp.read mcp.admin"}), "read_file", 403, ""},
		{"role with a no-break space grants nothing", token(map[string]any{"roles": []string{"mcp.read\u00a0mcp.admin"}}), "read_file", 403, ""},
		{"scp with a tab grants nothing", token(map[string]any{"scp": "mcp.read\tmcp.admin"}), "read_file", 403, ""},
		{"roles twice", forged(`"roles":["none"],"roles":["mcp.read"]`), "read_file", 401, ""},
		{"scp twice", forged(`"scp":"none","scp":"mcp.read"`), "read_file", 401, ""},
		{"roles twice, name escaped", forged(`"roles":["none"],"r\u006fles":["mcp.read"]`), "read_file", 401, ""},
	}
	rolesOnly := []call{
		{"app-only token (roles)", appOnly, "read_file", 200, "mcp.read"},
		{"delegated token: scp not configured", delegated, "read_file", 403, ""},
		{"roles twice", forged(`"roles":["none"],"roles":["mcp.read"]`), "read_file", 401, ""},
	}
	for _, cfg := range []struct {
		name, adapter, claims string
		calls                 []call
	}{
		{"caddyfile", "caddyfile", "scp roles", union},
		{"json array", "json", `["scp", "roles"]`, union},
		{"json string", "json", `"roles"`, rolesOnly},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			tc := s.start(t, scopeClaimsConfig(s.fixture, cfg.adapter, cfg.claims), cfg.adapter)
			for _, c := range cfg.calls {
				code, hdr, body := postRPC(t, tc, c.token, toolCall(c.tool))
				if code != c.status {
					t.Errorf("%s: status %d, want %d (%s)", c.name, code, c.status, hdr.Get("WWW-Authenticate"))
					continue
				}
				switch code {
				case 200:
					if body != c.scope {
						t.Errorf("%s: granted %q, want %q", c.name, body, c.scope)
					}
				case 401:
					if !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
						t.Errorf("%s: %s, want invalid_token", c.name, hdr.Get("WWW-Authenticate"))
					}
				case 403:
					if !strings.Contains(hdr.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
						t.Errorf("%s: %s, want insufficient_scope", c.name, hdr.Get("WWW-Authenticate"))
					}
				}
			}
		})
	}
}

// TestScopeClaimsRefusedAtLoad: names that cannot hold scopes, or repeated, are refused
// when the config loads, naming the field.
func TestScopeClaimsRefusedAtLoad(t *testing.T) {
	s := newSetup(t)
	s.start(t, scopeClaimsConfig(s.fixture, "caddyfile", "scp"), "caddyfile")
	for _, c := range []struct{ adapter, claims, want string }{
		{"caddyfile", "scp roles scp", `scope_claim: \"scp\" is named twice`},
		{"caddyfile", "scp aud", `scope_claim: \"aud\" is a registered claim`},
		{"json", `["roles", "roles"]`, `scope_claim: \"roles\" is named twice`},
		{"json", `["scp", "iss"]`, `scope_claim: \"iss\" is a registered claim`},
		{"json", `["scp", ""]`, `scope_claim: \"\" is not a claim name`},
		{"json", `7`, "scope_claim: not a claim name or an array of claim names"},
	} {
		ct := "text/caddyfile"
		if c.adapter == "json" {
			ct = "application/json"
		}
		code, body := loadConfig(t, scopeClaimsConfig(s.fixture, c.adapter, c.claims), ct, true)
		if code == http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("scope_claim %s (%s): %d %s, want an error with %q", c.claims, c.adapter, code, body, c.want)
		}
	}
}
