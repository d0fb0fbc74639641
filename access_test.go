package mcpauth

import (
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

func TestScopeClosure(t *testing.T) {
	got, err := scopeClosure(map[string][]string{
		"admin": {"write"},
		"write": {"read", "list"},
		"ops":   {"read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for scope, want := range map[string][]string{"admin": {"write", "read", "list"}, "write": {"read", "list"}, "ops": {"read"}} {
		if !slices.Equal(got[scope], want) {
			t.Errorf("closure[%s] = %q, want %q", scope, got[scope], want)
		}
	}
	for _, tc := range []struct {
		implies map[string][]string
		want    string
	}{
		{map[string][]string{"a": {"a"}}, "cycle a -> a"},
		{map[string][]string{"a": {"b"}, "b": {"a"}}, "cycle a -> b -> a"},
		{map[string][]string{"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}, "cycle a -> b -> c -> a"},
	} {
		if _, err := scopeClosure(tc.implies); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.implies, err, tc.want)
		}
	}
}

func TestEffectiveScopes(t *testing.T) {
	implies, _ := scopeClosure(map[string][]string{"admin": {"write"}, "write": {"read"}})
	for _, tc := range []struct {
		prefix  string
		granted []string
		want    []string
	}{
		{"", []string{"admin"}, []string{"admin", "write", "read"}},
		{"", []string{"read"}, []string{"read"}},
		{"api://x/", []string{"read"}, []string{"read", "api://x/read"}},
		{"api://x/", []string{"api://x/write"}, []string{"api://x/write", "write", "read", "api://x/read"}},
		// Another application's scope of the same name never counts as this one's.
		{"api://x/", []string{"api://other/read"}, []string{"api://other/read", "api://x/api://other/read"}},
		// The bare prefix is not a scope of its own.
		{"api://x/", []string{"api://x/"}, []string{"api://x/", "api://x/api://x/"}},
	} {
		a := &accessPolicy{prefix: tc.prefix, implies: implies}
		if got := a.effectiveScopes(tc.granted); !slices.Equal(got, tc.want) {
			t.Errorf("prefix %q, granted %q: effective %q, want %q", tc.prefix, tc.granted, got, tc.want)
		}
	}
}

// identity builds a verified identity from a raw JSON payload, as the JWT verifier does.
func identity(clientID, payload string) *verify.Identity {
	return verify.Identity{ClientID: clientID}.WithClaims([]byte(payload))
}

func TestConditions(t *testing.T) {
	h := &Handler{
		Clients: []string{"app-*", "https://cimd.example.com/*", "https://*.tenants.example.com/*"},
		RequireClaims: []ClaimCondition{
			{Claim: "realm_access.roles", Values: []string{"mcp"}},
			{Claim: "tier", Values: []string{"gold", "silver"}},
		},
	}
	a, err := newAccessPolicy(h)
	if err != nil {
		t.Fatal(err)
	}
	ok := `{"realm_access":{"roles":["x","mcp"]},"tier":"gold"}`
	for _, tc := range []struct {
		name, client, payload string
		want                  denial
	}{
		{"all met", "app-1", ok, denyNone},
		{"CIMD URL", "https://cimd.example.com/c.json", ok, denyNone},
		// A host wildcard is one whole label: it reaches neither into the path, the userinfo
		// nor another domain, any of which a client ID metadata document URL can choose.
		{"CIMD URL, host wildcard", "https://a.tenants.example.com/c.json", ok, denyNone},
		{"host wildcard reaching into the path", "https://evil.net/a.tenants.example.com/c.json", ok, denyClientNotAllowed},
		{"host wildcard over two labels", "https://evil.net.a.tenants.example.com/c.json", ok, denyClientNotAllowed},
		{"host wildcard over userinfo", "https://a.tenants.example.com@evil.net/c.json", ok, denyClientNotAllowed},
		{"host wildcard, empty label", "https://.tenants.example.com/c.json", ok, denyClientNotAllowed},
		{"client not listed", "other", ok, denyClientNotAllowed},
		{"client in another case", "APP-1", ok, denyClientNotAllowed},
		{"no client", "", ok, denyClientNotAllowed},
		{"role missing", "app-1", `{"realm_access":{"roles":["x"]},"tier":"gold"}`, denyClaimNotSatisfied},
		{"roles not an array of strings", "app-1", `{"realm_access":{"roles":[1,true,null,["mcp"],{"mcp":1}]},"tier":"gold"}`, denyClaimNotSatisfied},
		{"parent not an object", "app-1", `{"realm_access":["roles"],"tier":"gold"}`, denyClaimNotSatisfied},
		{"dotted literal name", "app-1", `{"realm_access.roles":["mcp"],"tier":"gold"}`, denyClaimNotSatisfied},
		{"value of another type", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":1}`, denyClaimNotSatisfied},
		{"duplicate claim", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","tier":"gold"}`, denyClaimNotSatisfied},
		{"duplicate parent", "app-1", `{"realm_access":{"roles":["mcp"]},"realm_access":{"roles":["mcp"]},"tier":"gold"}`, denyClaimNotSatisfied},
		{"duplicate by escape", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","ti\u0065r":"gold"}`, denyClaimNotSatisfied},
		{"lone surrogates collide", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","\ud800":1,"\ud801":2}`, denyClaimNotSatisfied},
		{"duplicate elsewhere is harmless", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","x":1,"x":2}`, denyNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var held matchSet
			a.evaluate(identity(tc.client, tc.payload), &held)
			if got := a.firstFailed(a.base, &held); got != tc.want {
				t.Errorf("denial %v, want %v", denialLabel(got), denialLabel(tc.want))
			}
		})
	}
}

func TestClaimPathRefused(t *testing.T) {
	for _, p := range []string{"", ".", "a.", ".a", "a..b"} {
		if _, err := verify.NewClaimPath(p); err == nil {
			t.Errorf("claim path %q accepted", p)
		}
	}
}

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

// denialLabel names d, or "none" for denyNone.
func denialLabel(d denial) string {
	if d == denyNone {
		return "none"
	}
	return denials[d].label
}
