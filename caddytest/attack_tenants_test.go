package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on a multi-tenant issuer ({tenantid}, Entra ID's form) with introspection: an
// answer's iss and tid are judged as a JWT's are, so that no spelling of an issuer, no tenant
// outside `tenants` and no answer that leaves the tenant unsaid gets through, opaque or
// jwt_too; and sessions bound to introspected callers of two tenants stay apart.

const (
	tenantTemplate = "https://login.example.com/{tenantid}/v2.0"
	tenantAIss     = "https://login.example.com/tenant-a/v2.0"
	tenantBIss     = "https://login.example.com/tenant-b/v2.0"
	tenantCIss     = "https://login.example.com/tenant-c/v2.0"
)

// member is one JSON object member, its value marshalled; rawMember keeps the value as written.
func member(name string, v any) string {
	b, _ := json.Marshal(v)
	return rawMember(name, string(b))
}

func rawMember(name, value string) string { return `"` + name + `":` + value }

// answerWith is an active answer about a token for this resource, with more members as
// written (duplicates included, in order).
func answerWith(members ...string) string {
	base := []string{
		member("active", true), member("aud", resource), member("sub", "tenant-user"),
		member("client_id", "tenant-client"), member("scope", "mcp:read"), member("token_type", "Bearer"),
		member("exp", time.Now().Add(time.Hour).Unix()),
	}
	return "{" + strings.Join(append(base, members...), ",") + "}"
}

// answerRaw makes the authorization server answer token with raw, as written.
func (as *introspectionAS) answerRaw(token, raw string) {
	as.mu.Lock()
	as.raw[token] = raw
	as.mu.Unlock()
}

// initializeBody opens an MCP session (the upstream is the Go SDK's server).
var initializeBody = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":` +
	`{"protocolVersion":"` + protocolHeader + `","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func TestAttackTenantsIntrospection(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	t.Setenv("MCPAUTH_TEST_SESSION_KEY", testSessionKey)
	up := newSessionUpstream(t)
	f := newFixture(t, server{up.Server})
	as := newIntrospectionAS(t, f.key)
	// The multi-tenant issuer with two tenants, introspected (jwt_too: JWTs as well), sessions
	// bound; the caller's issuer is shown to the client.
	config := func(jwtToo string) string {
		return f.siteCaddyfile(introspected(resource, as.URL, "issuers "+tenantTemplate+"\ntenants tenant-a tenant-b\n"+
			"jwks_url "+f.jwksURL()+"\nbind_sessions {env.MCPAUTH_TEST_SESSION_KEY}", jwtToo),
			`header >X-MCP-Iss "{http.auth.user.iss}"`, f.proxyDirective())
	}
	call := func(tok, body string) (int, http.Header, []byte) {
		t.Helper()
		return f.do(t, attackReq{auth: []string{bearer(tok)}, body: body})
	}

	type tenantCase struct {
		name    string
		members []string // iss and tid members of the answer, as written
		wantIss string   // "" wants 401
	}
	check := func(t *testing.T, tok string, c tenantCase) {
		t.Helper()
		before := up.count()
		code, hdr, body := call(tok, initializeBody)
		if c.wantIss == "" {
			if code != http.StatusUnauthorized {
				t.Errorf("status %d (iss %q), want 401; body %.200q", code, hdr.Get("X-MCP-Iss"), body)
			}
			if !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("challenge %q, want invalid_token", hdr.Get("WWW-Authenticate"))
			}
			if up.count() != before {
				t.Error("a refused token reached the MCP server")
			}
			return
		}
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200; body %.200q", code, body)
		}
		// The caller is attributed to the tenant's own issuer, never to the template.
		if got := hdr.Get("X-MCP-Iss"); got != c.wantIss {
			t.Errorf("{http.auth.user.iss} = %q, want %q", got, c.wantIss)
		}
	}

	t.Run("opaque", func(t *testing.T) {
		f.start(t, config(""), "caddyfile")
		cases := []tenantCase{
			{"tenant's own iss and tid", []string{member("iss", tenantAIss), member("tid", "tenant-a")}, tenantAIss},
			{"other listed tenant", []string{member("iss", tenantBIss), member("tid", "tenant-b")}, tenantBIss},
			{"no iss, listed tid", []string{member("tid", "tenant-a")}, ""},
			{"no iss, no tid", nil, ""},
			{"empty iss, listed tid", []string{member("iss", ""), member("tid", "tenant-a")}, ""},
			{"template as written", []string{member("iss", tenantTemplate), member("tid", "tenant-a")}, ""},
			{"template as written, no tid", []string{member("iss", tenantTemplate)}, ""},
			{"tenant iss, no tid", []string{member("iss", tenantAIss)}, ""},
			{"tenant not listed", []string{member("iss", tenantCIss), member("tid", "tenant-c")}, ""},
			{"listed tid, iss names another tenant", []string{member("iss", tenantCIss), member("tid", "tenant-a")}, ""},
			{"listed tid, iss names another listed tenant", []string{member("iss", tenantBIss), member("tid", "tenant-a")}, ""},
			{"host in capitals", []string{member("iss", "https://LOGIN.example.com/tenant-a/v2.0"), member("tid", "tenant-a")}, ""},
			{"tenant in capitals", []string{member("iss", "https://login.example.com/TENANT-A/v2.0"), member("tid", "TENANT-A")}, ""},
			{"trailing slash", []string{member("iss", tenantAIss+"/"), member("tid", "tenant-a")}, ""},
			{"http scheme", []string{member("iss", "http://login.example.com/tenant-a/v2.0"), member("tid", "tenant-a")}, ""},
			{"tid reshaping the path", []string{member("iss", "https://login.example.com/tenant-a/x/v2.0"), member("tid", "tenant-a/x")}, ""},
			{"tid with a dot segment", []string{member("iss", "https://login.example.com/../v2.0"), member("tid", "..")}, ""},
			{"tid percent-encoded", []string{member("iss", "https://login.example.com/tenant%2Da/v2.0"), member("tid", "tenant%2Da")}, ""},
			{"tid with a Cyrillic letter", []string{member("iss", "https://login.example.com/tenant-\u0430/v2.0"), member("tid", "tenant-\u0430")}, ""},
			{"tid of 65 characters", []string{member("iss", "https://login.example.com/"+strings.Repeat("a", 65)+"/v2.0"), member("tid", strings.Repeat("a", 65))}, ""},
			{"tid with a space", []string{member("iss", "https://login.example.com/tenant-a /v2.0"), member("tid", "tenant-a ")}, ""},
			{"tid as an array", []string{member("iss", tenantAIss), member("tid", []string{"tenant-a"})}, ""},
			{"tid as a number", []string{member("iss", "https://login.example.com/1/v2.0"), member("tid", 1)}, ""},
			{"tid null", []string{member("iss", tenantAIss), rawMember("tid", "null")}, ""},
			{"tid twice, listed one last", []string{member("iss", tenantAIss), member("tid", "tenant-c"), member("tid", "tenant-a")}, ""},
			{"tid twice, listed one first", []string{member("iss", tenantAIss), member("tid", "tenant-a"), member("tid", "tenant-c")}, ""},
			{"iss twice", []string{member("iss", tenantCIss), member("iss", tenantAIss), member("tid", "tenant-a")}, ""},
			{"iss escaped", []string{rawMember("iss", `"https:\/\/login.example.com\/tenant-a\/v2.0"`), member("tid", "tenant-a")}, tenantAIss},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tok := "tenant-opaque-" + itoa(i)
				as.answerRaw(tok, answerWith(c.members...))
				check(t, tok, c)
			})
		}

		// Two introspected callers with the same sub and client_id in two tenants are two
		// callers: a session opened by one is not the other's.
		t.Run("sessions_of_two_tenants", func(t *testing.T) {
			same := []string{member("sub", "same-user"), member("client_id", "same-client")}
			ans := func(iss, tid string) string {
				return "{" + strings.Join(append([]string{
					member("active", true), member("aud", resource), member("scope", "mcp:read"),
					member("exp", time.Now().Add(time.Hour).Unix()), member("iss", iss), member("tid", tid),
				}, same...), ",") + "}"
			}
			as.answerRaw("sess-tenant-a-1", ans(tenantAIss, "tenant-a"))
			as.answerRaw("sess-tenant-a-2", ans(tenantAIss, "tenant-a"))
			as.answerRaw("sess-tenant-b", ans(tenantBIss, "tenant-b"))
			code, hdr, body := call("sess-tenant-a-1", initializeBody)
			sid := hdr.Get("Mcp-Session-Id")
			if code != http.StatusOK || !taggedID.MatchString(sid) {
				t.Fatalf("initialize as tenant-a: %d %q %.200q", code, sid, body)
			}
			f.session = sid
			t.Cleanup(func() { f.session = "" })
			if code, _, body := call("sess-tenant-a-1", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); code != http.StatusAccepted {
				t.Fatalf("initialized: %d %q", code, body)
			}
			before := up.count()
			if code, _, _ := call("sess-tenant-b", callReadFile); code != http.StatusNotFound {
				t.Errorf("tenant-b caller in tenant-a's session: status %d, want 404", code)
			}
			if up.count() != before {
				t.Errorf("the MCP server received %+v", up.since(before))
			}
			// Control: another token of the same tenant-a caller keeps the session.
			if code, _, body := call("sess-tenant-a-2", callReadFile); code != http.StatusOK {
				t.Errorf("same tenant-a caller, another token: %d %.200q", code, body)
			}
		})
	})

	// jwt_too: the JWT verified locally (its iss and tid matched the template), and the answer
	// about it must name the same issuer, with a usable tid.
	t.Run("jwt_too", func(t *testing.T) {
		f.start(t, config("jwt_too"), "caddyfile")
		jwtOf := func(iss, tid string, n int) string {
			return f.token(t, "mcp:read", map[string]any{"iss": iss, "tid": tid, "jti": "jwt-too-" + itoa(n)})
		}
		cases := []struct {
			tenantCase
			tokIss, tokTid string
		}{
			{tenantCase{"answer names the token's tenant", []string{member("iss", tenantAIss), member("tid", "tenant-a")}, tenantAIss}, tenantAIss, "tenant-a"},
			{tenantCase{"other listed tenant, answer agrees", []string{member("iss", tenantBIss), member("tid", "tenant-b")}, tenantBIss}, tenantBIss, "tenant-b"},
			{tenantCase{"answer without iss", []string{member("tid", "tenant-a")}, ""}, tenantAIss, "tenant-a"},
			{tenantCase{"answer names the template", []string{member("iss", tenantTemplate), member("tid", "tenant-a")}, ""}, tenantAIss, "tenant-a"},
			{tenantCase{"answer names another listed tenant", []string{member("iss", tenantBIss), member("tid", "tenant-b")}, ""}, tenantAIss, "tenant-a"},
			{tenantCase{"answer without tid", []string{member("iss", tenantAIss)}, ""}, tenantAIss, "tenant-a"},
			{tenantCase{"answer with tid twice", []string{member("iss", tenantAIss), member("tid", "tenant-a"), member("tid", "tenant-a")}, ""}, tenantAIss, "tenant-a"},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tok := jwtOf(c.tokIss, c.tokTid, i)
				as.answerRaw(tok, answerWith(c.members...))
				before := as.calls.Load()
				check(t, tok, c.tenantCase)
				if n := as.calls.Load() - before; n != 1 {
					t.Errorf("the JWT was introspected %d times, want 1", n)
				}
			})
		}
		// A JWT of a tenant outside `tenants` is refused locally: never introspected.
		t.Run("token of an unlisted tenant", func(t *testing.T) {
			tok := f.token(t, "mcp:read", map[string]any{"iss": tenantCIss, "tid": "tenant-c"})
			as.answerRaw(tok, answerWith(member("iss", tenantCIss), member("tid", "tenant-c")))
			before := as.calls.Load()
			check(t, tok, tenantCase{})
			if n := as.calls.Load() - before; n != 0 {
				t.Errorf("introspected %d times", n)
			}
		})
	})
}
