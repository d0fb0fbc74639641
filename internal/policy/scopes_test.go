package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestRequirementMetBy(t *testing.T) {
	tests := []struct {
		name    string
		allOf   []string
		anyOf   []string
		granted string
		want    bool
	}{
		{"scopes: has it", []string{"mcp:read"}, nil, "mcp:read", true},
		{"scopes: has it among others", []string{"mcp:read"}, nil, "openid mcp:read profile", true},
		{"scopes: lacks it", []string{"mcp:read"}, nil, "mcp:write", false},
		{"scopes: nothing granted", []string{"mcp:read"}, nil, "", false},
		{"scopes: prefix is not a match", []string{"mcp:read"}, nil, "mcp:rea mcp:reader", false},
		{"scopes: case-sensitive", []string{"mcp:read"}, nil, "MCP:READ", false},
		{"scopes: all of two", []string{"a", "b"}, nil, "b a", true},
		{"scopes: one of two", []string{"a", "b"}, nil, "a", false},
		{"any_of: first", nil, []string{"a", "b"}, "a", true},
		{"any_of: second", nil, []string{"a", "b"}, "b", true},
		{"any_of: both", nil, []string{"a", "b"}, "a b", true},
		{"any_of: neither", nil, []string{"a", "b"}, "c", false},
		{"any_of: nothing granted", nil, []string{"a", "b"}, "", false},
		{"both: all and one", []string{"r"}, []string{"a", "b"}, "r b", true},
		{"both: all but no alternative", []string{"r"}, []string{"a", "b"}, "r", false},
		{"both: alternative but not all", []string{"r"}, []string{"a", "b"}, "a b", false},
		{"skip: nothing required, nothing granted", nil, nil, "", true},
		{"skip: nothing required, something granted", nil, nil, "x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := requirement{allOf: tt.allOf, anyOf: tt.anyOf}
			if got := p.metBy(strings.Fields(tt.granted)); got != tt.want {
				t.Errorf("satisfiedBy(%q) = %v, want %v", tt.granted, got, tt.want)
			}
		})
	}
}

func TestChallengeScope(t *testing.T) {
	tests := []struct {
		name  string
		allOf []string
		anyOf []string
		want  []string
	}{
		{"scopes only", []string{"a", "b"}, nil, []string{"a", "b"}},
		{"any_of only: first alternative", nil, []string{"x", "y"}, []string{"x"}},
		{"both", []string{"a"}, []string{"x", "y"}, []string{"a", "x"}},
		{"first alternative already required", []string{"a", "x"}, []string{"x", "y"}, []string{"a", "x"}},
		{"skip", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := requirement{allOf: tt.allOf, anyOf: tt.anyOf}.challengeScope()
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("challengeScope = %q, want %q", got, tt.want)
			}
		})
	}
	// The challenge must not alias the policy: appending to it must not change the policy.
	allOf := make([]string, 1, 4)
	allOf[0] = "a"
	p := requirement{allOf: allOf, anyOf: []string{"x"}}
	_ = p.challengeScope()
	if got := p.challengeScope(); !reflect.DeepEqual(got, []string{"a", "x"}) {
		t.Errorf("second challengeScope = %q", got)
	}
	if len(p.allOf) != 1 {
		t.Errorf("challengeScope changed the policy: %q", p.allOf)
	}
}
