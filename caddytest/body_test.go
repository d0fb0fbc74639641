package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// Request bodies the MCP server could read otherwise than mcp_auth judged them, through a
// real Caddy (HTTP/1.1 and cleartext HTTP/2) in front of a real go-sdk MCP server: a CORS
// preflight that carries a body, a body on a method other than POST, a method override, and
// a charset or content coding that a server framework decodes (Express's express.json()
// decodes any utf-* charset and inflates gzip).

const (
	descNoBody   = "Only POST requests may carry a body."
	descOverride = "Method override headers are not accepted."
	descMedia    = "The request body must be UTF-8 application/json without content coding."
)

// bodyConfig is the policy configuration (delete_* needs mcp:admin) on a server that also
// speaks cleartext HTTP/2, whose requests may come without Content-Length (length -1).
func bodyConfig(f *fixture, name string) string {
	return strings.Replace(policyConfig(f, "caddyfile", name), "grace_period 1ns",
		"grace_period 1ns\n\tservers {\n\t\tprotocols h1 h2c\n\t}", 1)
}

// deleteCall calls the tool that needs mcp:admin, which no token of these tests holds.
const deleteCall = `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`

// answer is what Caddy answered.
type answer struct {
	status int
	header http.Header
	body   string
	proto  int
}

// send sends one request to /mcp. A body of unknown length (chunked over HTTP/1.1, without
// Content-Length over HTTP/2) is sent when chunked is set; nil body sends none. An answer
// that opened an SSE stream is not read further.
func send(t *testing.T, client *http.Client, method string, body []byte, chunked bool, hdr map[string]string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, baseURL+"/mcp", rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s /mcp: %v", method, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, proto: resp.ProtoMajor}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		a.body = string(b)
	}
	return a
}

// checkRefused asserts a 400 invalid_request with desc, or a 415 (no challenge).
func checkRefused(t *testing.T, what string, a answer, status int, desc string) {
	t.Helper()
	if a.status != status {
		t.Errorf("%s: status %d, want %d (body %q)", what, a.status, status, a.body)
		return
	}
	if status == http.StatusUnsupportedMediaType {
		if v := a.header.Values("WWW-Authenticate"); len(v) != 0 {
			t.Errorf("%s: 415 carries a challenge %q", what, v)
		}
	} else {
		checkChallenge(t, a.header, challenge("invalid_request", desc, "mcp:read"))
	}
	checkErrorBody(t, a.body, "invalid_request", desc)
}

func TestBodiesThroughCaddy(t *testing.T) {
	key := jwttest.New(t, "body-1", "RS256")
	jwks := newJWKSServer(t, key)
	token := func(scope string) string { return key.Token(t, claims(resource, scope), nil) }
	up := newMCPUpstream(t, true)
	const name = "Body MCP"
	f := &fixture{key: key, jwks: jwks, up: up}
	f.start(t, bodyConfig(f, name), "caddyfile", name)

	read := token("mcp:read")
	h1tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(h1tr.CloseIdleConnections)
	h1 := &http.Client{Transport: h1tr}
	h2tr := &http.Transport{Protocols: new(http.Protocols)}
	h2tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(h2tr.CloseIdleConnections)
	h2 := &http.Client{Transport: h2tr}
	clients := []struct {
		name   string
		client *http.Client
		proto  int
	}{{"HTTP/1.1", h1, 1}, {"HTTP/2", h2, 2}}

	// openSession opens an MCP session with mcp:read and returns the headers of a valid
	// request in it, with extra headers. Each subtest has its own: on a handler that lets
	// them through, the refused requests could end a session (DELETE).
	openSession := func(t *testing.T) func(extra ...string) map[string]string {
		c := newMCPClient(t)
		c.open(t, read)
		return func(extra ...string) map[string]string {
			m := map[string]string{
				"Authorization":        bearer(read),
				"Accept":               "application/json, text/event-stream",
				"Content-Type":         "application/json",
				"Mcp-Session-Id":       c.session,
				"Mcp-Protocol-Version": protocolHeader,
			}
			for i := 0; i+1 < len(extra); i += 2 {
				m[extra[i]] = extra[i+1]
			}
			return m
		}
	}
	preflightHeaders := map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}

	t.Run("preflight without a body reaches the server without a token", func(t *testing.T) {
		for _, cl := range clients {
			before := up.snapshot()
			a := send(t, cl.client, http.MethodOptions, nil, false, preflightHeaders)
			// Over HTTP/2, an empty body of unknown length: HEADERS without END_STREAM, as
			// HTTP/3 requests without Content-Length always look.
			b := send(t, cl.client, http.MethodOptions, []byte{}, true, preflightHeaders)
			if a.proto != cl.proto {
				t.Fatalf("%s: answered over HTTP/%d", cl.name, a.proto)
			}
			if n := up.snapshot().requests - before.requests; n != 2 || a.status == http.StatusUnauthorized || b.status == http.StatusUnauthorized {
				t.Errorf("%s: preflights answered %d and %d, %d reached the server; want both there", cl.name, a.status, b.status, n)
			}
		}
	})

	t.Run("preflight with a body is authenticated", func(t *testing.T) {
		for _, cl := range clients {
			for _, chunked := range []bool{false, true} {
				before := up.snapshot()
				a := send(t, cl.client, http.MethodOptions, []byte(deleteCall), chunked, preflightHeaders)
				if a.status != http.StatusUnauthorized {
					t.Errorf("%s chunked=%v: status %d, want 401", cl.name, chunked, a.status)
				}
				checkChallenge(t, a.header, challenge("", "", "mcp:read"))
				up.checkUntouched(t, before, cl.name+" preflight with a body")
			}
		}
		// An empty chunked body is a body too (HTTP/1.1 says so in its headers).
		before := up.snapshot()
		status := rawRequest(t, "OPTIONS /mcp HTTP/1.1\r\nHost: localhost\r\nOrigin: https://app.example.com\r\n"+
			"Access-Control-Request-Method: POST\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n")
		if status != http.StatusUnauthorized {
			t.Errorf("preflight with an empty chunked body: status %d, want 401", status)
		}
		up.checkUntouched(t, before, "a preflight with an empty chunked body")
	})

	t.Run("other methods with a tools/call body are refused", func(t *testing.T) {
		session := openSession(t)
		for _, cl := range clients {
			for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodGet, http.MethodDelete, http.MethodOptions} {
				for _, chunked := range []bool{false, true} {
					before := up.snapshot()
					what := cl.name + " " + m
					if chunked {
						what += " chunked"
					}
					checkRefused(t, what, send(t, cl.client, m, []byte(deleteCall), chunked, session()), http.StatusBadRequest, descNoBody)
					checkRefused(t, what+" with X-HTTP-Method-Override: POST",
						send(t, cl.client, m, []byte(deleteCall), chunked, session("X-HTTP-Method-Override", "POST")),
						http.StatusBadRequest, descOverride)
					up.checkUntouched(t, before, what)
				}
			}
		}
		// The same without a token: 401 first, nothing read.
		before := up.snapshot()
		a := send(t, h1, http.MethodPut, []byte(deleteCall), false, map[string]string{"Content-Type": "application/json"})
		if a.status != http.StatusUnauthorized {
			t.Errorf("PUT without a token: status %d, want 401", a.status)
		}
		up.checkUntouched(t, before, "a PUT without a token")
	})

	t.Run("method overrides are refused on POST too", func(t *testing.T) {
		session := openSession(t)
		before := up.snapshot()
		readCall := []byte(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`)
		for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
			checkRefused(t, "POST with "+h, send(t, h1, http.MethodPost, readCall, false, session(h, "PUT")),
				http.StatusBadRequest, descOverride)
		}
		up.checkUntouched(t, before, "a POST with a method override")
	})

	t.Run("charsets other than UTF-8 and content codings get 415", func(t *testing.T) {
		session := openSession(t)
		// delete_file in UTF-7: "+AGQ-" is 'd', "+AF8-" is '_'. Read as UTF-8 the name is
		// "+AGQ-elete+AF8-file", which no rule covers.
		utf7 := []byte(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"+AGQ-elete+AF8-file","arguments":{"path":"/x"}}}`)
		utf16 := utf16LE(deleteCall)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write([]byte(deleteCall))
		_ = zw.Close()
		cases := []struct {
			name string
			body []byte
			hdr  []string
		}{
			{"charset=utf-7", utf7, []string{"Content-Type", "application/json; charset=utf-7"}},
			{"quoted UTF-7", utf7, []string{"Content-Type", `application/json;charset="UTF-7"`}},
			{"upper case, space before ;", utf7, []string{"Content-Type", "Application/JSON ; charset=UTF-7"}},
			{"utf-8 then utf-7", utf7, []string{"Content-Type", "application/json; charset=utf-8; charset=utf-7"}},
			{"charset=utf-16le", utf16, []string{"Content-Type", "application/json; charset=utf-16le"}},
			{`charset="UTF-16"`, append([]byte{0xff, 0xfe}, utf16...), []string{"Content-Type", `application/json; charset="UTF-16"`}},
			{"charset=latin1", []byte(deleteCall), []string{"Content-Type", "application/json; charset=latin1"}},
			{"Content-Encoding gzip", gz.Bytes(), []string{"Content-Encoding", "gzip"}},
			{"Content-Encoding identity", []byte(deleteCall), []string{"Content-Encoding", "identity"}},
		}
		for _, cl := range clients {
			for _, tcase := range cases {
				for _, chunked := range []bool{false, true} {
					before := up.snapshot()
					what := cl.name + " " + tcase.name
					checkRefused(t, what, send(t, cl.client, http.MethodPost, tcase.body, chunked, session(tcase.hdr...)),
						http.StatusUnsupportedMediaType, descMedia)
					up.checkUntouched(t, before, what)
				}
			}
		}
	})

	t.Run("plain POST still works", func(t *testing.T) {
		session := openSession(t)
		for _, cl := range clients {
			for _, ct := range []string{"application/json", "application/json; charset=utf-8", `Application/JSON;charset="UTF-8"`} {
				for _, chunked := range []bool{false, true} {
					before := up.snapshot()
					body := []byte(`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/ok"}}}`)
					a := send(t, cl.client, http.MethodPost, body, chunked, session("Content-Type", ct))
					got, _ := up.postsSince(before)
					if a.status != http.StatusOK || len(got) != 1 || !bytes.Equal(got[0], body) {
						t.Fatalf("%s %q chunked=%v: status %d, upstream got %q", cl.name, ct, chunked, a.status, got)
					}
					if text := toolText(t, a.header, []byte(a.body)); text != "read_file /ok" {
						t.Errorf("%s: answer %q", cl.name, text)
					}
				}
			}
			// GET without a body still opens the SSE stream at the server; over
			// HTTP/2 also with an empty body of unknown length.
			before := up.snapshot()
			a := send(t, cl.client, http.MethodGet, []byte{}, true, session("Accept", "text/event-stream"))
			if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/event-stream") {
				t.Errorf("%s GET: status %d, Content-Type %q; want the SSE stream", cl.name, a.status, a.header.Get("Content-Type"))
			}
			up.mu.Lock()
			methods := slices.Clone(up.methods[before.requests:])
			up.mu.Unlock()
			if !slices.Equal(methods, []string{http.MethodGet}) {
				t.Errorf("%s: server received %v, want [GET]", cl.name, methods)
			}
		}
	})
}

// rawRequest writes req on a new connection to Caddy and returns the answer's status.
func rawRequest(t *testing.T, req string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(baseURL, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// utf16LE encodes s as UTF-16LE without byte-order mark.
func utf16LE(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}
