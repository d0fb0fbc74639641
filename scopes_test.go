package mcpauth

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestPolicySatisfiedBy(t *testing.T) {
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
			p := newPolicy(tt.allOf, tt.anyOf, "")
			if got := p.satisfiedBy(strings.Fields(tt.granted)); got != tt.want {
				t.Errorf("satisfiedBy(%q) = %v, want %v", tt.granted, got, tt.want)
			}
		})
	}
}

func TestGrantedScopes(t *testing.T) {
	tests := []struct {
		name   string
		claim  string
		claims jwt.MapClaims
		want   []string
	}{
		{"scope string", "", jwt.MapClaims{"scope": "a b  c"}, []string{"a", "b", "c"}},
		{"scope empty string", "", jwt.MapClaims{"scope": ""}, []string{}},
		{"scp string", "", jwt.MapClaims{"scp": "a b"}, []string{"a", "b"}},
		{"scp array", "", jwt.MapClaims{"scp": []any{"a", "b"}}, []string{"a", "b"}},
		{"scp array skips non-strings", "", jwt.MapClaims{"scp": []any{"a", 1, true, nil, "b"}}, []string{"a", "b"}},
		{"scope preferred over scp", "", jwt.MapClaims{"scope": "a", "scp": []any{"b"}}, []string{"a"}},
		{"scope of the wrong type is not replaced by scp", "", jwt.MapClaims{"scope": 5, "scp": "b"}, nil},
		{"neither", "", jwt.MapClaims{"sub": "x"}, nil},
		{"scope array", "", jwt.MapClaims{"scope": []any{"a", "b"}}, []string{"a", "b"}},
		{"scope number", "", jwt.MapClaims{"scope": 1.0}, nil},
		{"custom claim string", "permissions", jwt.MapClaims{"permissions": "x y", "scope": "a"}, []string{"x", "y"}},
		{"custom claim array", "permissions", jwt.MapClaims{"permissions": []any{"x", "y"}, "scope": "a"}, []string{"x", "y"}},
		{"custom claim missing ignores scope and scp", "permissions", jwt.MapClaims{"scope": "a", "scp": "b"}, nil},
		{"custom claim named scp", "scp", jwt.MapClaims{"scope": "a", "scp": "b"}, []string{"b"}},

		// RFC 6749 §3.3: U+0020 is the only separator, and only scope tokens grant anything.
		{"leading, trailing and double spaces", "", jwt.MapClaims{"scope": "  a   b "}, []string{"a", "b"}},
		{"only spaces", "", jwt.MapClaims{"scope": "   "}, []string{}},
		{"tab is no separator", "", jwt.MapClaims{"scope": "a\tb c"}, []string{"c"}},
		{"new line is no separator", "", jwt.MapClaims{"scope": "a\nb c"}, []string{"c"}},
		{"CR LF is no separator", "", jwt.MapClaims{"scope": "a\r\nb"}, []string{}},
		{"no-break space is no separator", "", jwt.MapClaims{"scope": "a\u00a0b c"}, []string{"c"}},
		{"ideographic space is no separator", "", jwt.MapClaims{"scope": "a\u3000b"}, []string{}},
		{"line separator is no separator", "", jwt.MapClaims{"scope": "a\u2028b"}, []string{}},
		{"NEL is no separator", "", jwt.MapClaims{"scope": "a\u0085b"}, []string{}},
		{"trailing tab spoils the item", "", jwt.MapClaims{"scope": "a b\t"}, []string{"a"}},
		{"non-ASCII item grants nothing", "", jwt.MapClaims{"scope": "caf\u00e9 a"}, []string{"a"}},
		{"quote and backslash items grant nothing", "", jwt.MapClaims{"scope": `a"b c\d e`}, []string{"e"}},
		{"NUL grants nothing", "", jwt.MapClaims{"scope": "a\x00b"}, []string{}},
		{"scp string split on spaces only", "", jwt.MapClaims{"scp": "a\tb c"}, []string{"c"}},
		{"array element is one scope token", "", jwt.MapClaims{"scp": []any{"a b", "c"}}, []string{"c"}},
		{"array element with a tab", "", jwt.MapClaims{"scp": []any{"a\tb", "c"}}, []string{"c"}},
		{"array element with outer spaces", "", jwt.MapClaims{"scp": []any{" a", "b ", ""}}, []string{}},
		{"custom claim string split on spaces only", "permissions", jwt.MapClaims{"permissions": "x\u00a0y z"}, []string{"z"}},
		{"custom claim array element is one token", "permissions", jwt.MapClaims{"permissions": []any{"x y", "z"}}, []string{"z"}},
		{"[]string filtered too", "", jwt.MapClaims{"scp": []string{"a", "b c", "d\te", "f"}}, []string{"a", "f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newPolicy(nil, nil, tt.claim).grantedScopes(tt.claims)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("grantedScopes = %q, want %q", got, tt.want)
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
			got := newPolicy(tt.allOf, tt.anyOf, "").challengeScope()
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
	p := newPolicy(allOf, []string{"x"}, "")
	_ = p.challengeScope()
	if got := p.challengeScope(); !reflect.DeepEqual(got, []string{"a", "x"}) {
		t.Errorf("second challengeScope = %q", got)
	}
	if len(p.allOf) != 1 {
		t.Errorf("challengeScope changed the policy: %q", p.allOf)
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

// TestScopeListOnlyScopeTokens: whatever the claim holds, every granted scope is a scope
// token, and a string grants exactly its space-separated scope tokens.
func TestScopeListOnlyScopeTokens(t *testing.T) {
	inputs := []string{
		"", " ", "a b", "a\tb", "a\u00a0b", "mcp:read\u2028mcp:admin", "\u3000", "a  b\v c\f d",
		"x\u200by", "\xff\xfe a", "a\x00 b", "a,b c",
	}
	for _, in := range inputs {
		for _, v := range []any{in, []any{in}, []string{in}} {
			for _, s := range scopeList(v) {
				if !validScopeToken(s) {
					t.Errorf("scopeList(%#v) grants %q, not a scope token", v, s)
				}
			}
		}
		var want []string
		for _, s := range strings.Split(in, " ") {
			if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '"' || r == '\\' }) {
				want = append(want, s)
			}
		}
		if got := scopeList(in); !slices.Equal(got, want) {
			t.Errorf("scopeList(%q) = %q, want %q", in, got, want)
		}
	}
}
