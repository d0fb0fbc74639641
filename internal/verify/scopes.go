package verify

import "strings"

// ParseScopes reads a scope claim: a string of scope-tokens separated by the space character
// (RFC 6749 §3.3, RFC 9068 `scope`), or an array of strings, each one scope-token (Entra ID
// and Okta `scp`). Only U+0020 separates: a value holding any other whitespace, a control
// character or anything outside the scope-token grammar grants nothing, so that a scope
// string such as "mcp:read\u00a0mcp:admin" cannot be read as two scopes by a lenient
// splitter. An array element is one scope-token; one with a space in it grants nothing.
func ParseScopes(v any) []string {
	switch v := v.(type) {
	case string:
		return splitScopes(v, nil)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && ValidScopeToken(s) {
				out = append(out, s)
			}
		}
		return out
	case []string:
		out := make([]string, 0, len(v))
		for _, s := range v {
			if ValidScopeToken(s) {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// GrantedScopes reads the scopes granted by a set of claims: from scopeClaim when it is
// set, else from `scope` and, only when there is no `scope`, from `scp`.
func GrantedScopes(claims map[string]any, scopeClaim string) []string {
	if scopeClaim != "" {
		return ParseScopes(claims[scopeClaim])
	}
	if v, ok := claims["scope"]; ok {
		return ParseScopes(v)
	}
	return ParseScopes(claims["scp"])
}

// splitScopes appends the valid scope-tokens of a space-separated string to out.
func splitScopes(s string, out []string) []string {
	if out == nil {
		out = make([]string, 0, strings.Count(s, " ")+1)
	}
	for s != "" {
		var tok string
		tok, s, _ = strings.Cut(s, " ")
		if ValidScopeToken(tok) {
			out = append(out, tok)
		}
	}
	return out
}

// ValidScopeToken checks RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func ValidScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}
