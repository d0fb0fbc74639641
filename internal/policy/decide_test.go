package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// TestDecideVerdict: the whole answer of Decide (outcome, deciding rule, step-up scopes,
// error) for each kind of outcome, as the handler and its audit event read it.
func TestDecideVerdict(t *testing.T) {
	rs := testRuleSet()
	call := func(name string) []mcpjson.Message {
		return []mcpjson.Message{{Method: "tools/call", HasMethod: true, Name: name}}
	}
	for _, tc := range []struct {
		name    string
		granted string
		msgs    []mcpjson.Message
		outcome Outcome
		rule    int
		stepUp  []string
	}{
		{"no message, base met", "mcp:read", nil, Allow, BaseRule, nil},
		{"no message, base unmet", "mcp:tools", nil, InsufficientScope, BaseRule, []string{"mcp:read"}},
		{"no rule matched", "mcp:read", []mcpjson.Message{{Method: "ping", HasMethod: true}}, Allow, BaseRule, nil},
		{"allowed: the first matched rule decided", "mcp:read mcp:tools", call("read_file"), Allow, 4, nil},
		{"allowed under two rules: the first", "mcp:read mcp:tools mcp:admin", call("delete_user"), Allow, 0, nil},
		{"refused: the first rule unmet", "mcp:read mcp:tools", call("delete_user"), InsufficientScope, 0, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
		{"refused: a later rule unmet", "mcp:read mcp:admin", call("delete_user"), InsufficientScope, 4, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
		{"refused: the base before any rule", "mcp:tools mcp:admin", call("delete_user"), InsufficientScope, BaseRule, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rs.NewSubject(&verify.Identity{Scopes: strings.Fields(tc.granted)})
			v := rs.Decide(&s, tc.msgs)
			if v.Outcome != tc.outcome || v.Rule != tc.rule || !slices.Equal(v.StepUp, tc.stepUp) || v.Err != nil {
				t.Fatalf("verdict %+v, want outcome %d, rule %d, step-up %v", v, tc.outcome, tc.rule, tc.stepUp)
			}
			if v.Allowed() != (tc.outcome == Allow) {
				t.Fatalf("Allowed() = %v for outcome %d", v.Allowed(), v.Outcome)
			}
		})
	}

	t.Run("resource URI not in normal form", func(t *testing.T) {
		s := rs.NewSubject(&verify.Identity{Scopes: []string{"mcp:read", "files:private", "mcp:resources"}})
		v := rs.Decide(&s, []mcpjson.Message{{Method: "resources/read", HasMethod: true, Name: "file:///pub/../private/key"}})
		if v.Outcome != ResourceURINotNormal || !errors.Is(v.Err, ErrURINotNormal) {
			t.Fatalf("verdict %+v, want ResourceURINotNormal wrapping ErrURINotNormal", v)
		}
	})

	t.Run("conditions: base first, then the rule's, before scopes", func(t *testing.T) {
		p := mustCompile(Config{AllOf: []string{"mcp:read"}, Clients: []string{"app-*"}, Rules: []Rule{
			{Tools: []string{"deploy"}, Scopes: []string{"mcp:ops"}},
			{Tools: []string{"deploy"}, Claims: []Claim{{Claim: "tier", Values: []string{"gold"}}}},
		}})
		other := p.NewSubject(identity("other", `{}`))
		if o := other.BaseRefusal(); o != ClientNotAllowed {
			t.Fatalf("BaseRefusal %d, want ClientNotAllowed", o)
		}
		if v := p.Decide(&other, call("deploy")); v.Outcome != ClientNotAllowed || v.Rule != BaseRule {
			t.Fatalf("other client: %+v, want ClientNotAllowed by the base", v)
		}
		silver := p.NewSubject(identity("app-1", `{"tier":"silver"}`))
		if v := p.Decide(&silver, call("deploy")); v.Outcome != ClaimNotSatisfied || v.Rule != 1 || v.StepUp != nil {
			t.Fatalf("silver app: %+v, want ClaimNotSatisfied by rule 1 without step-up", v)
		}
		gold := p.NewSubject(identity("app-1", `{"tier":"gold"}`))
		if v := p.Decide(&gold, call("deploy")); v.Outcome != InsufficientScope || v.Rule != BaseRule {
			t.Fatalf("gold app without scopes: %+v, want InsufficientScope by the base", v)
		}
	})

	t.Run("step-up scopes in the advertised form", func(t *testing.T) {
		p := mustCompile(Config{AllOf: []string{"read"}, Prefix: "api://x/", Rules: []Rule{{Tools: []string{"w"}, Scopes: []string{"write"}}}})
		s := p.NewSubject(&verify.Identity{Scopes: []string{"api://x/read"}})
		v := p.Decide(&s, call("w"))
		if want := []string{"api://x/read", "api://x/write"}; v.Outcome != InsufficientScope || !slices.Equal(v.StepUp, want) {
			t.Fatalf("verdict %+v, want step-up %v", v, want)
		}
		if got := p.ChallengeScope(); !slices.Equal(got, []string{"api://x/read"}) {
			t.Fatalf("ChallengeScope %v", got)
		}
	})
}

// TestDecideNoAlloc: a request the policy lets through costs no allocation.
func TestDecideNoAlloc(t *testing.T) {
	rs := testRuleSet()
	s := rs.NewSubject(&verify.Identity{Scopes: []string{"mcp:read", "mcp:tools", "files:private", "mcp:resources"}})
	msgs := []mcpjson.Message{
		{Method: "tools/call", HasMethod: true, Name: "read_file"},
		{Method: "resources/read", HasMethod: true, Name: "file:///private/key"},
	}
	allocs := testing.AllocsPerRun(100, func() {
		if v := rs.Decide(&s, msgs); !v.Allowed() {
			t.Fatalf("refused: %+v", v)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Decide", allocs)
	}
}
