package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Attacks on bind_sessions: every way to present a session ID that is not the caller's, or
// to present one the module does not see as the MCP server would. Each must be answered 404
// without the MCP server hearing of it. (Mcp_Session_Id, which CGI-style servers read as the
// same header, is dropped by Caddy itself unless allowed by expected_underscore_headers; the
// module refuses it too: TestSessionHeaderSpellings.)
func TestAttackBoundSessions(t *testing.T) {
	f, up := newSessionFixture(t)
	f.start(t, f.sessionsCaddyfile(nil, nil), "caddyfile")
	alice := f.token(t, "mcp:read", caller("alice", "client-a", "alice-1"))
	bob := f.token(t, "mcp:read", caller("bob", "client-b", "bob-1"))
	open := func(tok string) string {
		code, hdr, body := rawCall(t, http.MethodPost, tok, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
			`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
		sid := hdr.Get("Mcp-Session-Id")
		if code != http.StatusOK || !taggedID.MatchString(sid) {
			t.Fatalf("initialize: %d %q %q", code, sid, body)
		}
		if code, _, body := rawCall(t, http.MethodPost, tok, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
			t.Fatalf("initialized: %d %q", code, body)
		}
		return sid
	}
	aliceSID, bobSID := open(alice), open(bob)
	serverID := aliceSID[:strings.LastIndexByte(aliceSID, '.')]
	tag := aliceSID[len(serverID)+1:]
	std := strings.NewReplacer("-", "+", "_", "/").Replace(tag)

	// send writes the request byte for byte, so that header names keep their spelling.
	send := func(t *testing.T, tok string, headers ...string) int {
		t.Helper()
		code, _, _ := f.do(t, attackReq{auth: []string{bearer(tok)}, body: callReadFile,
			header: append([]string{"Mcp-Protocol-Version: " + protocolHeader}, headers...)})
		return code
	}
	cases := []struct {
		name    string
		tok     string
		headers []string
	}{
		{"two headers, both alice's", alice, []string{"Mcp-Session-Id: " + aliceSID, "Mcp-Session-Id: " + aliceSID}},
		{"bob's then alice's", bob, []string{"Mcp-Session-Id: " + bobSID, "Mcp-Session-Id: " + aliceSID}},
		{"comma-joined", bob, []string{"Mcp-Session-Id: " + bobSID + ", " + aliceSID}},
		{"lower-case name", bob, []string{"mcp-session-id: " + aliceSID}},
		{"padded tag", alice, []string{"Mcp-Session-Id: " + aliceSID + "="}},
		{"empty", alice, []string{"Mcp-Session-Id: "}},
		{"bare server ID", bob, []string{"Mcp-Session-Id: " + serverID}},
		{"bob's tag on alice's ID", bob, []string{"Mcp-Session-Id: " + serverID + bobSID[strings.LastIndexByte(bobSID, '.'):]}},
	}
	if std != tag {
		cases = append(cases, struct {
			name    string
			tok     string
			headers []string
		}{"standard base64 alphabet", alice, []string{"Mcp-Session-Id: " + serverID + "." + std}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := up.count()
			if code := send(t, c.tok, c.headers...); code != http.StatusNotFound {
				t.Errorf("status %d, want 404", code)
			}
			if n := up.count(); n != before {
				t.Errorf("the MCP server received %+v", up.since(before))
			}
		})
	}
	// Controls: the same requests with the caller's own ID pass.
	if code := send(t, alice, "Mcp-Session-Id: "+aliceSID); code != http.StatusOK {
		t.Errorf("alice in her own session: %d", code)
	}
	if code := send(t, bob, "mcp-session-id: "+bobSID); code != http.StatusOK {
		t.Errorf("bob in his own session, lower-case header name: %d", code)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// More attacks on bind_sessions: callers whose token names no user and no client, and an
// Mcp-Session-Id smuggled in a request trailer or sent on a preflight.

// TestAttackSessionsOfTokensWithoutCaller: two tokens of the same issuer with neither sub
// nor client_id (nor azp) are two callers the module cannot tell apart by identity. One must
// not be able to use the other's session: the binding then falls back to the token itself.
func TestAttackSessionsOfTokensWithoutCaller(t *testing.T) {
	f, up := newSessionFixture(t)
	f.start(t, f.sessionsCaddyfile(nil, nil), "caddyfile")
	anon := func(jti string) string {
		return f.token(t, "mcp:read", map[string]any{"sub": nil, "client_id": nil, "azp": nil, "jti": jti})
	}
	first, second := anon("anon-1"), anon("anon-2")
	code, hdr, body := rawCall(t, http.MethodPost, first, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
		`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sid := hdr.Get("Mcp-Session-Id")
	if code != http.StatusOK || !taggedID.MatchString(sid) {
		t.Fatalf("initialize: %d %q %q", code, sid, body)
	}
	if code, _, body := rawCall(t, http.MethodPost, first, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
		t.Fatalf("initialized by its owner: %d %q", code, body)
	}
	before := up.count()
	if code, _, _ := rawCall(t, http.MethodPost, second, sid, callReadFile, nil); code != http.StatusNotFound {
		t.Errorf("another token without sub or client_id in the session: %d, want 404", code)
	}
	if n := up.count(); n != before {
		t.Errorf("the MCP server received %+v", up.since(before))
	}
	if code, _, body := rawCall(t, http.MethodPost, first, sid, callReadFile, nil); code != http.StatusOK {
		t.Errorf("the session's own token: %d %q", code, body)
	}
}

// TestAttackSessionIDInTrailer: Caddy forwards request trailers, and once a client announces
// one trailer, net/http takes any trailer field it sends. An Mcp-Session-Id sent as a trailer
// is never checked against the caller; with bind_sessions, a request announcing trailers must
// not reach the MCP server.
func TestAttackSessionIDInTrailer(t *testing.T) {
	t.Setenv("MCPAUTH_TEST_SESSION_KEY", testSessionKey)
	var mu sync.Mutex
	var trailers []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		trailers = append(trailers, r.Trailer.Clone())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	// bind_sessions alone, so the body streams through unread.
	f := newFixture(t, server{up})
	f.start(t, f.caddyfile("scopes mcp:read\nbind_sessions {env.MCPAUTH_TEST_SESSION_KEY}"), "caddyfile")
	bob := f.token(t, "mcp:read", caller("bob", "client-b", "bob-1"))

	for _, declared := range []string{"Mcp-Session-Id", "X-Checksum", "mcp-session-id, X-Checksum", ""} {
		t.Run("announced "+declared, func(t *testing.T) {
			mu.Lock()
			trailers = nil
			mu.Unlock()
			req := "POST /mcp HTTP/1.1\r\nHost: localhost:9080\r\nAuthorization: Bearer " + bob + "\r\n" +
				"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
				"Transfer-Encoding: chunked\r\nConnection: close\r\n"
			if declared != "" {
				req += "Trailer: " + declared + "\r\n"
			}
			req += "\r\n" +
				hex(len(callReadFile)) + "\r\n" + callReadFile + "\r\n0\r\n" +
				"Mcp-Session-Id: alices-server-session\r\n\r\n"
			status, _, _ := sendBytes(t, req, http.MethodPost) // wire sends no trailer
			mu.Lock()
			defer mu.Unlock()
			for _, tr := range trailers {
				if v := tr.Get("Mcp-Session-Id"); v != "" {
					t.Errorf("the MCP server received Mcp-Session-Id %q in a trailer (status %d)", v, status)
				}
			}
			if declared != "" && status != http.StatusNotFound {
				t.Errorf("status %d, want 404", status)
			}
		})
	}
	// Control: the same request without trailers passes.
	if code, _, body := rawCall(t, http.MethodPost, bob, "", callReadFile, nil); code != http.StatusOK {
		t.Errorf("control without trailers: %d %q", code, body)
	}
}

func hex(n int) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	i := len(b)
	for {
		i--
		b[i] = digits[n%16]
		n /= 16
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestAttackSessionIDOnPreflight: a CORS preflight passes without a token, so it is never
// checked against a caller. A browser's preflight carries no Mcp-Session-Id (the header is
// only named in Access-Control-Request-Headers); one that does must not hand the MCP server
// a session ID nobody proved to own.
func TestAttackSessionIDOnPreflight(t *testing.T) {
	f, up := newSessionFixture(t)
	f.start(t, f.sessionsCaddyfile(nil, nil), "caddyfile")
	for _, sid := range []string{"alices-server-session", "alices-server-session.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		before := up.count()
		code, _, _ := rawCall(t, http.MethodOptions, "", sid, "", map[string]string{
			"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization, mcp-session-id",
		})
		for _, seen := range up.since(before) {
			if seen.session != "" {
				t.Errorf("preflight (status %d): the MCP server received Mcp-Session-Id %q", code, seen.session)
			}
		}
	}
}
