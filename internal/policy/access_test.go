package policy

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
		p := &Policy{prefix: tc.prefix, implies: implies}
		if got := p.effectiveScopes(tc.granted); !slices.Equal(got, tc.want) {
			t.Errorf("prefix %q, granted %q: effective %q, want %q", tc.prefix, tc.granted, got, tc.want)
		}
	}
}

func TestConditions(t *testing.T) {
	a, err := Compile(Config{
		Clients: []string{"app-*", "https://cimd.example.com/*", "https://*.tenants.example.com/*"},
		Claims: []Claim{
			{Claim: "realm_access.roles", Values: []string{"mcp"}},
			{Claim: "tier", Values: []string{"gold", "silver"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ok := `{"realm_access":{"roles":["x","mcp"]},"tier":"gold"}`
	for _, tc := range []struct {
		name, client, payload string
		want                  Outcome
	}{
		{"all met", "app-1", ok, Allow},
		{"CIMD URL", "https://cimd.example.com/c.json", ok, Allow},
		// A host wildcard is one whole label: it reaches neither into the path, the userinfo
		// nor another domain, any of which a client ID metadata document URL can choose.
		{"CIMD URL, host wildcard", "https://a.tenants.example.com/c.json", ok, Allow},
		{"host wildcard reaching into the path", "https://evil.net/a.tenants.example.com/c.json", ok, ClientNotAllowed},
		{"host wildcard over two labels", "https://evil.net.a.tenants.example.com/c.json", ok, ClientNotAllowed},
		{"host wildcard over userinfo", "https://a.tenants.example.com@evil.net/c.json", ok, ClientNotAllowed},
		{"host wildcard, empty label", "https://.tenants.example.com/c.json", ok, ClientNotAllowed},
		{"client not listed", "other", ok, ClientNotAllowed},
		{"client in another case", "APP-1", ok, ClientNotAllowed},
		{"no client", "", ok, ClientNotAllowed},
		{"role missing", "app-1", `{"realm_access":{"roles":["x"]},"tier":"gold"}`, ClaimNotSatisfied},
		{"roles not an array of strings", "app-1", `{"realm_access":{"roles":[1,true,null,["mcp"],{"mcp":1}]},"tier":"gold"}`, ClaimNotSatisfied},
		{"parent not an object", "app-1", `{"realm_access":["roles"],"tier":"gold"}`, ClaimNotSatisfied},
		{"dotted literal name", "app-1", `{"realm_access.roles":["mcp"],"tier":"gold"}`, ClaimNotSatisfied},
		{"value of another type", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":1}`, ClaimNotSatisfied},
		{"duplicate claim", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","tier":"gold"}`, ClaimNotSatisfied},
		{"duplicate parent", "app-1", `{"realm_access":{"roles":["mcp"]},"realm_access":{"roles":["mcp"]},"tier":"gold"}`, ClaimNotSatisfied},
		{"duplicate by escape", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","ti\u0065r":"gold"}`, ClaimNotSatisfied},
		{"lone surrogates collide", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","\ud800":1,"\ud801":2}`, ClaimNotSatisfied},
		{"duplicate elsewhere is harmless", "app-1", `{"realm_access":{"roles":["mcp"]},"tier":"gold","x":1,"x":2}`, Allow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var held matchSet
			a.evaluate(identity(tc.client, tc.payload), &held)
			if got := a.firstFailed(a.baseConds, &held); got != tc.want {
				t.Errorf("outcome %d, want %d", got, tc.want)
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
