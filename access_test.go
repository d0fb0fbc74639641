package mcpauth

import (
	"strings"
	"testing"
)

func TestValidateAccess(t *testing.T) {
	base := func() *Handler {
		return &Handler{Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://as.example.com"}, Scopes: []string{"mcp:read"}}
	}
	for _, tc := range []struct {
		name string
		set  func(h *Handler)
		want string
	}{
		{"offline_access in scopes", func(h *Handler) { h.Scopes = append(h.Scopes, "offline_access") }, "scopes: offline_access is refused"},
		{"offline_access in scopes_supported", func(h *Handler) { h.ScopesSupported = []string{"offline_access"} }, "scopes_supported: offline_access"},
		{"offline_access in a rule", func(h *Handler) { h.Rules = []*Rule{{Tools: []string{"x"}, AnyOf: []string{"offline_access"}}} }, "rules[0]: offline_access"},
		// offline_access is granted to any client that asks for a refresh token: implying
		// anything from it would hand that to every such client.
		{"offline_access implying a scope", func(h *Handler) { h.ScopeImplies = map[string][]string{"offline_access": {"mcp:read"}} }, "scope_implies offline_access: offline_access is refused"},
		{"offline_access implied", func(h *Handler) { h.ScopeImplies = map[string][]string{"mcp:admin": {"mcp:read", "offline_access"}} }, "scope_implies mcp:admin: offline_access is refused"},
		{"empty client", func(h *Handler) { h.Clients = []string{""} }, "clients: empty client pattern"},
		// https://app.example.com* matches https://app.example.com.evil.net/ and
		// https://app.example.community/: a wildcard in a host is only ever a leading label.
		{"wildcard ending a host", func(h *Handler) { h.Clients = []string{"https://app.example.com*"} }, "clients"},
		{"wildcard inside a host label", func(h *Handler) { h.Clients = []string{"https://app-*.example.com/*"} }, "clients"},
		{"wildcard host in allow_missing_audience_for", func(h *Handler) { h.AllowMissingAudienceFor = []string{"https://*.com/*"} }, "allow_missing_audience_for"},
		{"wildcard host in a rule", func(h *Handler) {
			h.Rules = []*Rule{{Tools: []string{"x"}, Clients: []string{"https://x.*.example.com/"}}}
		}, "rules[0].clients"},
		{"leading wildcard label is fine", func(h *Handler) { h.Clients = []string{"https://*.example.com/*", "https://*.*.example.com/c.json"} }, ""},
		{"claim without value", func(h *Handler) { h.RequireClaims = []ClaimCondition{{Claim: "a"}} }, "names no value"},
		{"cycle", func(h *Handler) { h.ScopeImplies = map[string][]string{"a": {"b"}, "b": {"a"}} }, "cycle a -> b -> a"},
		{"bad implied scope", func(h *Handler) { h.ScopeImplies = map[string][]string{"a": {"b c"}} }, "not a valid scope token"},
		// A comma is legal in a scope-token, but `a,b` is nearly always two scopes written
		// wrong: refused wherever a scope is configured, naming the field.
		{"comma in scopes", func(h *Handler) { h.Scopes = []string{"mcp:read,mcp:write"} }, `scopes: "mcp:read,mcp:write": contains a comma: scopes are separated by spaces`},
		{"comma in any_of", func(h *Handler) { h.AnyOf = []string{"a,b"} }, `any_of: "a,b": contains a comma`},
		{"comma in scopes_supported", func(h *Handler) { h.ScopesSupported = []string{"a,"} }, `scopes_supported: "a,": contains a comma`},
		{"comma in a rule's scopes", func(h *Handler) { h.Rules = []*Rule{{Tools: []string{"x"}, Scopes: []string{"a,b"}}} }, `rules[0].scopes: "a,b": contains a comma`},
		{"comma in a rule's any_of", func(h *Handler) { h.Rules = []*Rule{{Tools: []string{"x"}, AnyOf: []string{"a,b"}}} }, `rules[0].any_of: "a,b": contains a comma`},
		{"comma in an implying scope", func(h *Handler) { h.ScopeImplies = map[string][]string{"a,b": {"c"}} }, `scope_implies: "a,b": contains a comma`},
		{"comma in an implied scope", func(h *Handler) { h.ScopeImplies = map[string][]string{"a": {"b,c"}} }, `scope_implies a: "b,c": contains a comma`},
		{"missing aud with any aud", func(h *Handler) { h.AllowAnyAudience = true; h.AllowMissingAudienceFor = []string{"c"} }, "cannot be combined with allow_any_audience"},
		{"tenants without template", func(h *Handler) { h.Tenants = []string{"t"} }, "no issuer contains {tenantid}"},
		{"bad tenant", func(h *Handler) {
			h.Issuers = []string{"https://l.example.com/{tenantid}/v2.0"}
			h.Tenants = []string{"a/b"}
		}, "not a tenant id"},
		{"tenant in capitals", func(h *Handler) {
			h.Issuers = []string{"https://l.example.com/{tenantid}/v2.0"}
			h.Tenants = []string{"72F988BF-86F1-41AF-91AB-2D7CD011DB47"}
		}, "write the tenant id in lowercase"},
		{"template twice", func(h *Handler) { h.Issuers = []string{"https://l.example.com/{tenantid}/{tenantid}"} }, "may appear once"},
		{"bad prefix", func(h *Handler) { h.ScopePrefix = "api:// x/" }, "scope_prefix"},
		{"rule with clients only is fine", func(h *Handler) { h.Rules = []*Rule{{Tools: []string{"x"}, Clients: []string{"c"}}} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base()
			tc.set(h)
			err := h.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidScopeToken(t *testing.T) {
	valid := []string{
		"a", "mcp:read", "https://graph.microsoft.com/.default", "api://x/y.z", "!", "~",
		"#", "[", "]", "a=b&c", "{}", "offline_access", "'quoted'",
	}
	for _, s := range valid {
		if !validScopeToken(s) {
			t.Errorf("%q refused", s)
		}
	}
	invalid := []string{
		"", " ", "a b", "a\tb", "a\nb", `"a"`, `a\b`, "a\x7f", "a\x00", "é", "a\x80",
		"\x20", "\x22", "\x5c",
	}
	for _, s := range invalid {
		if validScopeToken(s) {
			t.Errorf("%q accepted", s)
		}
	}
	// Every single byte: %x21 / %x23-5B / %x5D-7E.
	for c := 0; c < 256; c++ {
		want := c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E)
		if got := validScopeToken(string([]byte{byte(c)})); got != want {
			t.Errorf("byte %#x: %v, want %v", c, got, want)
		}
	}
}
