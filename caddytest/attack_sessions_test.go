package integration

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on bind_sessions: every way to present a session ID that is not the caller's, or
// to present one the module does not see as the MCP server would. Each must be answered 404
// without the MCP server hearing of it. (Mcp_Session_Id, which CGI-style servers read as the
// same header, is dropped by Caddy itself unless allowed by expected_underscore_headers; the
// module refuses it too: TestSessionHeaderSpellings.)
func TestAttackBoundSessions(t *testing.T) {
	t.Setenv("MCPAUTH_TEST_SESSION_KEY", testSessionKey)
	s := newSetup(t)
	up := newSessionUpstream(t)
	startCaddy(t, render(sessionsCaddyfile, map[string]string{
		"DIR": t.TempDir(), "JWKS": s.jwks.URL + "/jwks", "UPSTREAM": strings.TrimPrefix(up.URL, "http://"),
	}), "caddyfile")
	alice := s.rsaKey.Token(t, userClaims("alice", "client-a", "mcp:read", time.Hour), nil)
	bob := s.rsaKey.Token(t, userClaims("bob", "client-b", "mcp:read", time.Hour), nil)
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
		conn, err := net.DialTimeout("tcp", "localhost:9080", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := "POST /mcp HTTP/1.1\r\nHost: localhost:9080\r\nAuthorization: Bearer " + tok + "\r\n" +
			"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
			"Mcp-Protocol-Version: " + protocolHeader + "\r\nConnection: close\r\n"
		for _, h := range headers {
			req += h + "\r\n"
		}
		req += "Content-Length: " + itoa(len(callReadFile)) + "\r\n\r\n" + callReadFile
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
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
