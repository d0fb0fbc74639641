package mcpauth

import (
	"strings"
	"testing"
)

// TestTokenExchangeConfigErrors: every bad token_exchange or exchange configuration is
// refused at load with an error naming the field.
func TestTokenExchangeConfigErrors(t *testing.T) {
	const head = "mcp_auth {\n resource https://mcp.example.com/mcp\n authorization_servers https://auth.example.com\n scopes mcp:read\n"
	te := func(body string) string { return head + "token_exchange {\n" + body + "\n}\n}" }
	const ok = "client_id gw\nclient_secret s\naudience https://api.example.com\n"
	cases := []struct {
		name, cfg, want string
	}{
		{"no client_id", te("client_secret s\naudience https://api.example.com"), "token_exchange client_id: required"},
		{"no secret", te("client_id gw\naudience https://api.example.com"), "token_exchange client_secret: required"},
		{"key without private_key_jwt", te(ok + "private_key /k.pem"), "token_exchange private_key: only for auth_method private_key_jwt"},
		{"private_key_jwt without key", te("client_id gw\nauth_method private_key_jwt\naudience https://api.example.com"), "token_exchange private_key: required"},
		{"bad auth_method", te(ok + "auth_method tls_client_auth"), `token_exchange auth_method "tls_client_auth"`},
		{"no target", te("client_id gw\nclient_secret s"), "token_exchange: required: audience or resource"},
		{"resource not a URL", te(ok + "resource api"), `token_exchange resource "api"`},
		{"resource with fragment", te(ok + "resource https://api.example.com/#x"), "must not have a fragment"},
		{"two resources", te(ok + "resource https://a.example.com https://b.example.com"), "token_exchange resource: takes one URI"},
		{"bad scope", te(ok + `scope "a\"b"`), `token_exchange scope`},
		{"header Host", te(ok + "header Host"), `token_exchange header "Host": a header HTTP or MCP gives another meaning`},
		{"header DPoP", te(ok + "header dpop"), `token_exchange header "dpop"`},
		{"header not a token", te(ok + `header "X Y"`), "not a header field name"},
		{"endpoint not a URL", te(ok + "endpoint ftp://x"), `token_exchange endpoint "ftp://x"`},
		{"max_in_flight 0", te(ok + "max_in_flight 0"), "token_exchange max_in_flight"},
		{"cache_ttl negative", te(ok + "cache_ttl -1s"), "token_exchange cache_ttl"},
		{"unknown", te(ok + "actor_token x"), `unrecognized token_exchange subdirective "actor_token"`},
		{"twice", te(ok + "audience https://b.example.com"), "token_exchange audience: given more than once"},
		{"exchange in a prompt rule", head + "prompt p {\n scopes a\n exchange {\n audience x\n }\n}\n}", "prompt: exchange: only in tool rules"},
		{"exchange without target", head + "tool t {\n exchange {\n scope a\n }\n}\n}", "tool exchange: needs audience or resource"},
		{"exchange unknown", head + "tool t {\n exchange {\n header X\n }\n}\n}", `tool exchange: unrecognized subdirective "header"`},
		{"exchange without token_exchange", head + "tool t {\n exchange {\n audience x\n }\n}\n}", "rules[0].exchange: needs the token_exchange group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseTestCaddyfile(tc.cfg)
			if err == nil {
				err = h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A valid one, with a rule holding exchange alone.
	h, err := parseTestCaddyfile(head + "token_exchange {\n" + ok + "}\ntool gh_* {\n exchange {\n audience https://gh.example.com\n }\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if h.Rules[0].Exchange == nil || h.Rules[0].Exchange.Audience[0] != "https://gh.example.com" {
		t.Fatalf("rule %+v", h.Rules[0])
	}
}
