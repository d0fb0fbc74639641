package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
)

// Tokens an outside red team built to slip past verification, through a real Caddy in front
// of a real go-sdk MCP server: scope strings with separators other than U+0020 (RFC 6749
// §3.3), absurd dates that overflow into valid ones, JWTs of another kind (RFC 8725 §3.11)
// and key-bound tokens (RFC 9449 §7.2, RFC 8705 §3) presented as plain bearer tokens.

// claimsAuth: the base policy needs mcp:read; delete_* tools need mcp:admin too.
const claimsAuth = `resource_name "Claims test"
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
filter_tools_list`

const (
	descMalformed = "The access token is not a well-formed JWT."
	descType      = "The access token type is not at+jwt."
	descBound     = "The access token is bound to a key and cannot be used as a bearer token."
)

var deleteFile = []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`)

func TestClaimsThroughCaddy(t *testing.T) {
	key := jwttest.New(t, "claims-1", "RS256")
	up := newMCPUpstream(t, true)
	f := &fixture{key: key, jwks: newJWKSServer(t, key), up: up}
	f.start(t, f.caddyfile(claimsAuth), "caddyfile", "Claims test")

	// with is a token of the test issuer for the resource, its claims changed by set (a nil
	// value deletes) and its header by header.
	with := func(set map[string]any, header map[string]any) string {
		c := claims(resource, "mcp:read")
		for k, v := range set {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return key.Token(t, c, header)
	}

	t.Run("control: mcp:read mcp:admin runs delete_file", func(t *testing.T) {
		tok := with(map[string]any{"scope": "mcp:read mcp:admin"}, nil)
		c := newMCPClient(t)
		c.open(t, tok)
		before := up.snapshot()
		code, hdr, body := c.post(t, tok, deleteFile, false, nil)
		if code != http.StatusOK || toolText(t, hdr, body) != "delete_file /x" {
			t.Fatalf("status %d, body %q; want delete_file to run", code, body)
		}
		if after := up.snapshot(); after.ran["delete_file"] != before.ran["delete_file"]+1 {
			t.Errorf("delete_file ran %d → %d times, want once more", before.ran["delete_file"], after.ran["delete_file"])
		}
	})

	// Only U+0020 separates scopes: "mcp:read\u00a0mcp:admin" is one item, not a scope
	// token, and grants nothing. The token also holds a plain mcp:read, so the session opens
	// and only the per-tool rule decides.
	t.Run("scope separators other than U+0020 grant nothing", func(t *testing.T) {
		forbidden := challenge("insufficient_scope", descScope, "mcp:read mcp:admin")
		for _, sep := range []string{"\u00a0", "\t", "\n", "\r", "\v", "\f", "\u3000", "\u2028", "\u2029", "\u0085", "\u1680", "\u200b"} {
			joined := "mcp:read" + sep + "mcp:admin"
			for _, tc := range []struct {
				name string
				set  map[string]any
			}{
				{"scope", map[string]any{"scope": "mcp:read " + joined}},
				{"scp string", map[string]any{"scope": nil, "scp": "mcp:read " + joined}},
				{"scp array", map[string]any{"scope": nil, "scp": []any{"mcp:read", joined}}},
			} {
				t.Run(fmt.Sprintf("%U in %s", []rune(sep)[0], tc.name), func(t *testing.T) {
					tok := with(tc.set, nil)
					c := newMCPClient(t)
					c.open(t, tok)
					before := up.snapshot()
					code, hdr, body := c.post(t, tok, deleteFile, false, nil)
					if code != http.StatusForbidden {
						t.Fatalf("status %d, body %q; want 403", code, body)
					}
					checkChallenge(t, hdr, forbidden)
					checkErrorBody(t, string(body), "insufficient_scope", descScope)
					up.checkUntouched(t, before, "a tools/call with a smuggled mcp:admin")

					// The SDK client neither sees nor runs the tool.
					cs := c.connect(t, tok)
					if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"read_file"}) {
						t.Errorf("tools/list = %v, want [read_file]", got)
					}
					if _, err := mcptest.CallText(t, cs, "delete_file"); err == nil {
						t.Error("delete_file called")
					}
					if after := up.snapshot(); after.ran["delete_file"] != before.ran["delete_file"] {
						t.Errorf("delete_file ran %d → %d times", before.ran["delete_file"], after.ran["delete_file"])
					}
				})
			}
		}
		t.Run("an array element is one scope token", func(t *testing.T) {
			tok := with(map[string]any{"scope": nil, "scp": []any{"mcp:read", "mcp:read mcp:admin"}}, nil)
			c := newMCPClient(t)
			c.open(t, tok)
			before := up.snapshot()
			if code, _, body := c.post(t, tok, deleteFile, false, nil); code != http.StatusForbidden {
				t.Fatalf("status %d, body %q; want 403", code, body)
			}
			up.checkUntouched(t, before, "a tools/call with mcp:admin inside an array element")
		})
	})

	// refused sends tok twice (the second answer may come from the token cache) and expects
	// a 401 invalid_token with desc that never reaches the MCP server.
	refused := func(t *testing.T, tok, desc string) {
		t.Helper()
		c := newMCPClient(t)
		before := up.snapshot()
		for range 2 {
			code, hdr, body := c.post(t, tok, deleteFile, false, nil)
			if code != http.StatusUnauthorized {
				t.Fatalf("status %d, body %q; want 401", code, body)
			}
			checkChallenge(t, hdr, challenge("invalid_token", desc, "mcp:read"))
			checkErrorBody(t, string(body), "invalid_token", desc)
		}
		up.checkUntouched(t, before, "a refused token")
	}
	admin := map[string]any{"scope": "mcp:read mcp:admin"}
	plus := func(k string, v any) map[string]any {
		m := map[string]any{k: v}
		for k, v := range admin {
			m[k] = v
		}
		return m
	}

	// golang-jwt converts seconds to int64 unchecked: nbf or iat of 1e20 became a date in the
	// past and the token passed.
	t.Run("absurd dates", func(t *testing.T) {
		for _, tc := range []struct {
			claim string
			v     any
		}{
			{"nbf", 1e20}, {"iat", 1e20}, {"nbf", -1}, {"iat", -1}, {"nbf", 1e300}, {"iat", 1e300},
			{"nbf", 253402300800}, {"exp", 253402300800}, {"exp", 1e20}, {"exp", 1e300}, {"exp", -1},
			{"exp", "4102444800"}, {"nbf", "0"}, {"iat", strconv.FormatInt(time.Now().Unix(), 10)},
		} {
			t.Run(fmt.Sprintf("%s %v", tc.claim, tc.v), func(t *testing.T) {
				refused(t, with(plus(tc.claim, tc.v), nil), descMalformed)
			})
		}
	})

	t.Run("JWTs of another kind, validly signed", func(t *testing.T) {
		for _, typ := range []string{
			"dpop+jwt", "DPoP+JWT", "application/dpop+jwt", "oauth-id-jag+jwt", "application/oauth-id-jag+jwt",
			"logout+jwt", "secevent+jwt", "token-introspection+jwt",
		} {
			t.Run(typ, func(t *testing.T) {
				refused(t, with(admin, map[string]any{"typ": typ}), descType)
			})
		}
	})

	t.Run("key-bound tokens as Bearer", func(t *testing.T) {
		for _, cnf := range []map[string]any{
			{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
			{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
		} {
			t.Run(fmt.Sprint(cnf), func(t *testing.T) {
				refused(t, with(plus("cnf", cnf), nil), descBound)
			})
		}
	})
}
