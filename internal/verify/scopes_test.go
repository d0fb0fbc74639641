package verify

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

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
			got := GrantedScopes(tt.claims, tt.claim)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("grantedScopes = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScopeListOnlyScopeTokens(t *testing.T) {
	inputs := []string{
		"", " ", "a b", "a\tb", "a\u00a0b", "mcp:read\u2028mcp:admin", "\u3000", "a  b\v c\f d",
		"x\u200by", "\xff\xfe a", "a\x00 b", "a,b c",
	}
	for _, in := range inputs {
		for _, v := range []any{in, []any{in}, []string{in}} {
			for _, s := range ParseScopes(v) {
				if !ValidScopeToken(s) {
					t.Errorf("ParseScopes(%#v) grants %q, not a scope token", v, s)
				}
			}
		}
		var want []string
		for _, s := range strings.Split(in, " ") {
			if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '"' || r == '\\' }) {
				want = append(want, s)
			}
		}
		if got := ParseScopes(in); !slices.Equal(got, want) {
			t.Errorf("ParseScopes(%q) = %q, want %q", in, got, want)
		}
	}
}
