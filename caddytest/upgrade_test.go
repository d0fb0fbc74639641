package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A tools/list answered with 101 Switching Protocols: after a 101, reverse_proxy hands the
// client connection to the upstream, and whatever it writes there reaches the client past the
// list filter. With rules or the filter on, a request that asks to switch protocols is refused
// (400) before it reaches the upstream; and should a 101 come back for a filtered request
// anyway (a handler after mcp_auth added the upgrade headers), the client gets 502 and never
// a byte of the tunnel.

// upgradeConfig: mcp_auth needs mcp:read, delete_* tools mcp:admin too, and filters
// tools/list; after it, in a route, the directives of after, then reverse_proxy to up.
func upgradeConfig(f *fixture, up, after string) string {
	return globalOptions + "\n:9080 {\nroute {\nmcp_auth {\n" +
		strings.Replace(usualHead, "@JWKS@", f.jwksURL(), 1) +
		"scopes mcp:read\ntool delete_* {\nscopes mcp:admin\n}\nfilter_tools_list\n}\n" +
		after + "\nreverse_proxy " + up + "\n}\n}\n"
}

// switchingUpstream answers every request with 101 and then, on the switched connection, the
// unfiltered tools/list result.
func switchingUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("upstream hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" +
			strings.ReplaceAll(craftedList, "@ID@", "1"))
		_ = brw.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// rawExchange sends req on its own connection and returns the first answer, with its whole
// body, and every byte that follows it until the server closes the connection, when
// toClose is set (the request asked for Connection: close).
func rawExchange(t *testing.T, req string, toClose bool) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A bound on a hang only, far above any answer's time: no result depends on it.
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	var raw strings.Builder
	br := bufio.NewReader(io.TeeReader(conn, &raw))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v\n%q", err, raw.String())
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if toClose {
		_, _ = io.ReadAll(br)
	}
	return resp, raw.String()
}

func listRequest(method, token string, extra ...string) string {
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	hdr := "Host: localhost:9080\r\nAuthorization: Bearer " + token + "\r\nContent-Type: application/json\r\n" +
		"Accept: application/json, text/event-stream\r\n"
	for _, e := range extra {
		hdr += e + "\r\n"
	}
	if !strings.Contains(strings.ToLower(hdr), "connection:") {
		hdr += "Connection: close\r\n"
	}
	return method + " /mcp HTTP/1.1\r\n" + hdr + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func TestUpgradeRefusedWithFilter(t *testing.T) {
	s := newSetup(t)
	up, hits := switchingUpstream(t)
	s.start(t, upgradeConfig(s.fixture, server{up}.dial(), ""), "caddyfile")
	token := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)

	const want = `error="invalid_request", error_description="Connection upgrades are not accepted."`
	for _, tc := range []struct {
		name string
		req  string
	}{
		{"websocket upgrade", listRequest("POST", token, "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")},
		{"h2c upgrade", listRequest("POST", token, "Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAAQAAP__")},
		{"Upgrade header alone", listRequest("POST", token, "Upgrade: websocket", "Connection: close")},
		{"Connection: upgrade alone", listRequest("POST", token, "Connection: keep-alive, UPGRADE")},
		{"GET stream with an upgrade", strings.Replace(listRequest("GET", token, "Upgrade: websocket", "Connection: Upgrade"), "Content-Length: 46\r\n\r\n"+`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "\r\n", 1)},
		{"CONNECT", listRequest("CONNECT", token)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := rawExchange(t, tc.req, false)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
				t.Errorf("status %d, WWW-Authenticate %q; want 400 with %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
			}
			if strings.Contains(got, "delete_file") {
				t.Errorf("the unfiltered list reached the client:\n%s", got)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the upstream was reached %d times, want 0", n)
	}

	// A request that asks for nothing is not refused: Caddy itself drops the 101 the
	// upstream answers without being asked.
	_, got := rawExchange(t, listRequest("POST", token), true)
	if strings.Contains(got, "delete_file") || strings.HasPrefix(got, "HTTP/1.1 101") {
		t.Errorf("an unrequested 101 reached the client:\n%s", got)
	}
}

// TestUpgradeAnswerToFilteredRequest: the upgrade headers are added after mcp_auth judged the
// request, so the upstream's 101 comes back through the list filter: 502, and the tunnel's
// bytes never reach the client.
func TestUpgradeAnswerToFilteredRequest(t *testing.T) {
	s := newSetup(t)
	up, hits := switchingUpstream(t)
	s.start(t, upgradeConfig(s.fixture, server{up}.dial(), "request_header Connection Upgrade\nrequest_header Upgrade websocket"), "caddyfile")
	token := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)

	resp, got := rawExchange(t, listRequest("POST", token), true)
	if hits.Load() != 1 {
		t.Fatalf("the upstream was reached %d times, want 1", hits.Load())
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if strings.Contains(got, "delete_file") || strings.Contains(got, "read_file") {
		t.Errorf("bytes of the tunnel reached the client:\n%s", got)
	}
}

// TestAttackPreflightUpgrade: a CORS preflight passes to the next handler without a token,
// and reverse_proxy carries an Upgrade on any method. An OPTIONS request with Origin and
// Access-Control-Request-Method that also asks to upgrade was let through unauthenticated,
// and the upstream's 101 gave the client a tunnel to the MCP server with no token at all
// (WebSocket, or h2c: then any request inside it). No browser's preflight asks to upgrade
// (or carries a method override, or credentials), so such a request is not a preflight: it
// is authenticated like any other, and without a valid token it gets 401.
func TestAttackPreflightUpgrade(t *testing.T) {
	f := newFixture(t, nil)
	for _, rules := range []string{"", "tool delete_* {\n\t\t\tscopes mcp:admin\n\t\t}\n\t\tfilter_tools_list"} {
		name := "no_rules"
		if rules != "" {
			name = "rules"
		}
		t.Run(name, func(t *testing.T) {
			up, hits := switchingUpstream(t)
			// mcp_auth without rules (or with them) in front of an upstream that switches
			// protocols when asked, as a server with a WebSocket transport, or Go's h2c
			// handler, does.
			f.start(t, f.caddyfile("scopes mcp:read\n"+rules, "reverse_proxy "+server{up}.dial()), "caddyfile")
			for _, c := range []struct{ name, extra string }{
				{"websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
				{"h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
				{"method override", "X-HTTP-Method-Override: GET\r\nConnection: close\r\n"},
				{"credentials", "Authorization: Bearer forged-token-never-verified\r\nConnection: close\r\n"},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := hits.Load()
					req := "OPTIONS /mcp HTTP/1.1\r\nHost: localhost:9080\r\nOrigin: https://evil.example\r\n" +
						"Access-Control-Request-Method: POST\r\n" + c.extra + "\r\n"
					resp, raw := rawExchange(t, req, false)
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("preflight with %s: %d, want 401\n%.300q", c.name, resp.StatusCode, raw)
					}
					if n := hits.Load() - before; n != 0 {
						t.Fatalf("the upstream got %d unauthenticated requests", n)
					}
				})
			}
			// Control: a real preflight still passes without a token.
			resp, raw := rawExchange(t, "OPTIONS /mcp HTTP/1.1\r\nHost: localhost:9080\r\nOrigin: https://app.example\r\n"+
				"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n", true)
			if resp.StatusCode == http.StatusUnauthorized || hits.Load() == 0 {
				t.Fatalf("a plain preflight: %d, upstream hits %d: want it passed on\n%.300q", resp.StatusCode, hits.Load(), raw)
			}
		})
	}
}
