package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// bind_sessions, audit, the operation placeholders and close_streams_at_expiry through a real
// Caddy in front of a real MCP server (the official Go SDK's Streamable HTTP handler).

// sessionsAuth is the "shared MCP server" of docs/sessions.md: sessions bound to the caller,
// audit events, streams closed at token expiry.
const sessionsAuth = `scopes mcp:read
leeway 0s
tool delete_* {
	scopes mcp:admin
}
bind_sessions {env.MCPAUTH_TEST_SESSION_KEY}
audit
close_streams_at_expiry`

// sessionsCaddyfile is sessionsAuth with the operation placeholders copied into response
// headers. With sinks, audit events go to audit and not to Caddy's default log, debug.
func (f *fixture) sessionsCaddyfile(debug, audit *logSink) string {
	cfg := f.caddyfile(sessionsAuth,
		`header >X-MCP-Method "{http.auth.mcp.method}"`,
		`header >X-MCP-Name "{http.auth.mcp.name}"`,
		"reverse_proxy "+f.up.dial())
	if debug == nil {
		return cfg
	}
	return withGlobal(cfg, "log default {\n"+debug.output()+"\nformat json\nlevel DEBUG\nexclude http.handlers.mcp_auth.audit\n}\n"+
		"log mcp_audit {\n"+audit.output()+"\nformat json\ninclude http.handlers.mcp_auth.audit\n}")
}

// newSessionFixture is the fixture in front of a sessionUpstream, with the session key set.
func newSessionFixture(t *testing.T) (*fixture, *sessionUpstream) {
	t.Helper()
	t.Setenv("MCPAUTH_TEST_SESSION_KEY", testSessionKey)
	up := newSessionUpstream(t)
	return newFixture(t, up), up
}

// caller is the claims naming a caller: sub, client_id and the token's jti.
func caller(sub, client, jti string) map[string]any {
	return map[string]any{"sub": sub, "client_id": client, "jti": jti}
}

const testSessionKey = "0123456789abcdef0123456789abcdef-test-key"

// sessionUpstream is a real MCP server that records every request with the Mcp-Session-Id
// it carried.
type sessionUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, session string
	body            string
}

func newSessionUpstream(t *testing.T) *sessionUpstream {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "sessions-test", Version: "1.0.0"}, nil)
	type args struct {
		Path string `json:"path"`
	}
	for _, name := range []string{"read_file", "delete_file"} {
		mcp.AddTool(server, &mcp.Tool{Name: name, Description: name},
			func(ctx context.Context, req *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " " + in.Path}}}, nil, nil
			})
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	u := &sessionUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.Header.Get("Mcp-Session-Id"), string(body)})
		u.mu.Unlock()
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *sessionUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

func (u *sessionUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *sessionUpstream) since(n int) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen[n:]...)
}

// sessionRecorder adds a token to the SDK client's requests and records the session IDs
// the client is handed and sends.
type sessionRecorder struct {
	tr    http.RoundTripper
	token func() string
	mu    sync.Mutex
	got   []string // Mcp-Session-Id of answers
	sent  []string // Mcp-Session-Id of requests
}

func (s *sessionRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", bearer(s.token()))
	s.mu.Lock()
	if v := r.Header.Get("Mcp-Session-Id"); v != "" {
		s.sent = append(s.sent, v)
	}
	s.mu.Unlock()
	resp, err := s.tr.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		if v := resp.Header.Get("Mcp-Session-Id"); v != "" {
			s.got = append(s.got, v)
		}
		s.mu.Unlock()
	}
	return resp, err
}

// rawCall sends one JSON-RPC message with a session ID (through the fixture's sender) and
// returns status, header and body; hdr adds header lines.
func rawCall(t *testing.T, method, token, session, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	r := attackReq{method: method, body: body}
	if token != "" {
		r.auth = []string{bearer(token)}
	}
	if session == "" {
		r.header = append(r.header, "Mcp-Protocol-Version: "+protocolHeader)
	}
	for k, v := range hdr {
		r.header = append(r.header, k+": "+v)
	}
	code, h, b := sendRaw(t, session, r)
	return code, h, string(b)
}

const callReadFile = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`

var taggedID = regexp.MustCompile(`^([\x21-\x7e]+)\.([A-Za-z0-9_-]{43})$`)

func TestBoundSessionsThroughCaddy(t *testing.T) {
	f, up := newSessionFixture(t)
	debug, audit := newLogSink(t), newLogSink(t)
	f.start(t, f.sessionsCaddyfile(debug, audit), "caddyfile")

	// Alice's token was issued a minute ago, so that her refreshed token differs in iat.
	aliceClaims := caller("alice", "client-a", "alice-1")
	aliceClaims["iat"] = time.Now().Add(-time.Minute).Unix()
	alice := f.token(t, "mcp:read", aliceClaims)
	bob := f.token(t, "mcp:read", caller("bob", "client-b", "bob-1"))

	// Alice's official Go SDK client works unchanged: initialize, list, call, close.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	aliceToken := alice
	var tokMu sync.Mutex
	rec := &sessionRecorder{tr: tr, token: func() string { tokMu.Lock(); defer tokMu.Unlock(); return aliceToken }}
	cs := mcptest.Connect(t, baseURL+"/mcp", rec)
	if got := mcptest.ToolNames(t, cs); strings.Join(got, ",") != "delete_file,read_file" {
		t.Errorf("tools/list through a bound session: %v", got)
	}
	if text, err := mcptest.CallText(t, cs, "read_file"); err != nil || text != "read_file /x" {
		t.Fatalf("tools/call through a bound session: %q, %v", text, err)
	}

	rec.mu.Lock()
	handed := rec.got[0]
	rec.mu.Unlock()
	m := taggedID.FindStringSubmatch(handed)
	if m == nil {
		t.Fatalf("Mcp-Session-Id handed to the client %q is not <id>.<43 base64url characters>", handed)
	}
	serverID := m[1]
	// The MCP server only ever sees its own IDs.
	for _, r := range up.since(0) {
		if r.session != "" && r.session != serverID {
			t.Errorf("the MCP server saw Mcp-Session-Id %q, want its own %q", r.session, serverID)
		}
	}

	t.Run("placeholders", func(t *testing.T) {
		code, hdr, body := rawCall(t, http.MethodPost, alice, handed, callReadFile, nil)
		if code != http.StatusOK || !strings.Contains(body, "read_file /x") {
			t.Fatalf("call in alice's session: %d %q", code, body)
		}
		if hdr.Get("X-MCP-Method") != "tools/call" || hdr.Get("X-MCP-Name") != "read_file" {
			t.Errorf("{http.auth.mcp.method} = %q, {http.auth.mcp.name} = %q", hdr.Get("X-MCP-Method"), hdr.Get("X-MCP-Name"))
		}
	})

	// Bob replays Alice's session ID, tagged or not, or forges a tag: the session does not
	// exist for him, and the MCP server never hears of it.
	forged := []byte(handed)
	if forged[len(forged)-1] == 'A' {
		forged[len(forged)-1] = 'B'
	} else {
		forged[len(forged)-1] = 'A'
	}
	replays := []struct {
		name, method, token, session, body string
	}{
		{"bob replays alice's session", http.MethodPost, bob, handed, callReadFile},
		{"bob opens a stream in alice's session", http.MethodGet, bob, handed, ""},
		{"bob deletes alice's session", http.MethodDelete, bob, handed, ""},
		{"alice's server ID without tag", http.MethodPost, alice, serverID, callReadFile},
		{"bob with the server ID", http.MethodPost, bob, serverID, callReadFile},
		{"forged tag", http.MethodPost, alice, string(forged), callReadFile},
		{"tag without ID", http.MethodPost, alice, handed[len(serverID):], callReadFile},
		{"other client of alice", http.MethodPost, f.token(t, "mcp:read", caller("alice", "client-x", "alice-x")), handed, callReadFile},
	}
	for _, r := range replays {
		t.Run(r.name, func(t *testing.T) {
			before := up.count()
			code, hdr, body := rawCall(t, r.method, r.token, r.session, r.body, nil)
			if code != http.StatusNotFound {
				t.Errorf("status %d, want 404; body %q", code, body)
			}
			if hdr.Get("WWW-Authenticate") != "" {
				t.Errorf("404 carries a challenge %q", hdr.Get("WWW-Authenticate"))
			}
			if !strings.Contains(body, `"code":-32001`) {
				t.Errorf("body %q, want the transport's session-not-found error", body)
			}
			if n := up.count(); n != before {
				t.Errorf("the MCP server received %d requests: %+v", n-before, up.since(before))
			}
		})
	}

	t.Run("refreshed token keeps the session", func(t *testing.T) {
		fresh := f.ecKey.Token(t, f.claims("mcp:read", caller("alice", "client-a", "alice-2")), nil) // iat now
		if fresh == alice {
			t.Fatal("the refreshed token is the same token")
		}
		tokMu.Lock()
		aliceToken = fresh
		tokMu.Unlock()
		if text, err := mcptest.CallText(t, cs, "read_file"); err != nil || text != "read_file /x" {
			t.Errorf("SDK call with the refreshed token: %q, %v", text, err)
		}
		code, _, body := rawCall(t, http.MethodPost, fresh, handed, callReadFile, nil)
		if code != http.StatusOK || !strings.Contains(body, "read_file /x") {
			t.Errorf("raw call with the refreshed token: %d %q", code, body)
		}
	})

	t.Run("resume a stream", func(t *testing.T) {
		// A GET with Last-Event-ID (Streamable HTTP resumability) in the bound session
		// reaches the server with its own ID.
		before := up.count()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/mcp", nil)
		req.Header.Set("Authorization", bearer(alice))
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", handed)
		req.Header.Set("Mcp-Protocol-Version", protocolHeader)
		req.Header.Set("Last-Event-ID", "0_0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Errorf("resuming in a bound session: 404")
		}
		seen := up.since(before)
		if len(seen) != 1 || seen[0].method != http.MethodGet || seen[0].session != serverID {
			t.Errorf("the MCP server saw %+v, want one GET with session %q", seen, serverID)
		}
	})

	t.Run("insufficient scope", func(t *testing.T) {
		code, _, _ := rawCall(t, http.MethodPost, bob, "", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`, nil)
		if code != http.StatusForbidden {
			t.Errorf("delete_file with mcp:read: %d, want 403", code)
		}
	})

	// The SDK client's Close sends DELETE in the session: it reaches the server untagged.
	before := up.count()
	if err := cs.Close(); err != nil {
		t.Errorf("closing the SDK session: %v", err)
	}
	for _, r := range up.since(before) {
		if r.method == http.MethodDelete && r.session != serverID {
			t.Errorf("DELETE reached the server with %q", r.session)
		}
	}

	checkAuditLog(t, debug, audit, []string{alice, bob})
}

// checkAuditLog waits (bounded) for the audit events and checks one allow, one session denial
// and one scope denial field by field; no token may be anywhere in any log.
func checkAuditLog(t *testing.T, debug, audit *logSink, tokens []string) {
	t.Helper()
	find := func(events []map[string]any, pred func(e map[string]any) bool) map[string]any {
		for _, e := range events {
			if pred(e) {
				return e
			}
		}
		return nil
	}
	isAllow := func(e map[string]any) bool {
		return e["decision"] == "allow" && e["method"] == "tools/call" && e["sub"] == "alice"
	}
	isHijack := func(e map[string]any) bool {
		return e["decision"] == "deny" && e["sub"] == "bob" && e["status"] == 404.0
	}
	isScope := func(e map[string]any) bool { return e["decision"] == "deny" && e["status"] == 403.0 }
	events := audit.wait(func(events []map[string]any) bool {
		return find(events, isAllow) != nil && find(events, isHijack) != nil && find(events, isScope) != nil
	})
	for _, e := range events {
		if e["logger"] != "http.handlers.mcp_auth.audit" || e["msg"] != "decision" {
			t.Errorf("audit entry on logger %v with msg %v", e["logger"], e["msg"])
		}
	}
	allow := find(events, isAllow)
	if allow == nil {
		t.Fatalf("no allow event for alice's tools/call in %v", events)
	}
	want := map[string]any{"iss": issuer, "client_id": "client-a", "name": "read_file", "rule": "base", "remote_ip": "127.0.0.1"}
	for k, v := range want {
		if allow[k] != v {
			t.Errorf("allow event %s = %v, want %v", k, allow[k], v)
		}
	}
	if id, _ := allow["token_id"].(string); !strings.HasPrefix(id, "alice-") {
		t.Errorf("allow event token_id = %q, want the jti", id)
	}
	if id, _ := allow["request_id"].(string); len(id) != 36 {
		t.Errorf("allow event request_id = %q, want a UUID", id)
	}
	hijack := find(events, isHijack)
	if hijack == nil {
		t.Fatalf("no deny event for bob's replayed session in %v", events)
	}
	if hijack["reason"] != "access_denied" || hijack["detail"] != "session_not_found" || hijack["client_id"] != "client-b" {
		t.Errorf("session deny event: %v", hijack)
	}
	scope := find(events, isScope)
	if scope == nil {
		t.Fatalf("no deny event for the 403 in %v", events)
	}
	if scope["reason"] != "insufficient_scope" || scope["rule"] != "tool delete_*" || scope["name"] != "delete_file" || scope["sub"] != "bob" {
		t.Errorf("scope deny event: %v", scope)
	}
	// The default log excludes the audit logger; no log holds a token or the session key.
	// The default log reaches its sink on a connection of its own: wait until it holds
	// every line logged so far, as the file it replaces did when read.
	debug.through(t)
	for name, sink := range map[string]*logSink{"audit log": audit, "caddy log": debug} {
		b := []byte(sink.text())
		for _, tok := range tokens {
			if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(strings.Split(tok, ".")[2])) {
				t.Errorf("%s contains a token", name)
			}
		}
		if bytes.Contains(b, []byte(testSessionKey)) {
			t.Errorf("%s contains the session key", name)
		}
		if name == "caddy log" && bytes.Contains(b, []byte(`"http.handlers.mcp_auth.audit"`)) {
			t.Errorf("the default log got audit events despite exclude")
		}
	}
}

// TestStreamClosedAtTokenExpiry opens the GET stream of a session with a token that expires
// in 3 seconds: the stream ends when it expires (leeway 0s), cleanly, and a new stream
// opened with a new token of the same caller works.
func TestStreamClosedAtTokenExpiry(t *testing.T) {
	f, _ := newSessionFixture(t)
	f.start(t, f.sessionsCaddyfile(nil, nil), "caddyfile")

	long := f.token(t, "mcp:read", caller("carol", "client-c", "carol-1"))
	code, hdr, body := rawCall(t, http.MethodPost, long, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
		`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	session := hdr.Get("Mcp-Session-Id")
	if code != http.StatusOK || session == "" {
		t.Fatalf("initialize: %d %q", code, body)
	}
	if code, _, body := rawCall(t, http.MethodPost, long, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
		t.Fatalf("initialized: %d %q", code, body)
	}

	openStream := func(token string) (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/mcp", nil)
		req.Header.Set("Authorization", bearer(token))
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", protocolHeader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			cancel()
			t.Fatalf("GET stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return resp, cancel
	}

	shortClaims := caller("carol", "client-c", "carol-2")
	shortClaims["exp"] = time.Now().Add(3 * time.Second).Unix()
	short := f.token(t, "mcp:read", shortClaims)
	exp, _, _ := jwt.NewParser().ParseUnverified(short, jwt.MapClaims{})
	expiry, _ := exp.Claims.GetExpirationTime()
	resp, cancel := openStream(short)
	_, err := io.ReadAll(resp.Body) // blocks until the stream ends
	ended := time.Now()
	resp.Body.Close()
	cancel()
	if err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
	if ended.Before(expiry.Time) {
		t.Errorf("the stream ended at %s, before the token expired at %s", ended.Format(time.StampMilli), expiry.Time.Format(time.StampMilli))
	}
	if late := ended.Sub(expiry.Time); late > 2*time.Second {
		t.Errorf("the stream ended %s after the token expired", late)
	}

	// The client reconnects with its fresh token: the new stream is served, and stays open.
	fresh := f.ecKey.Token(t, f.claims("mcp:read", caller("carol", "client-c", "carol-3")), nil)
	resp, cancel = openStream(fresh)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(resp.Body); done <- err }()
	select {
	case err := <-done:
		t.Errorf("the stream opened with a fresh token ended at once: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	cancel()
	resp.Body.Close()
}

// TestBoundSessionsJSON writes bind_sessions, audit and close_streams_at_expiry by hand in
// JSON, pinning the field names.
func TestBoundSessionsJSON(t *testing.T) {
	f, up := newSessionFixture(t)
	f.start(t, f.json(map[string]any{
		"scopes":                  []string{"mcp:read"},
		"bind_sessions":           map[string]any{"key": "{env.MCPAUTH_TEST_SESSION_KEY}"},
		"audit":                   true,
		"close_streams_at_expiry": true,
	}), "json")
	alice := f.token(t, "mcp:read", caller("alice", "client-a", "alice-1"))
	bob := f.token(t, "mcp:read", caller("bob", "client-b", "bob-1"))
	code, hdr, body := rawCall(t, http.MethodPost, alice, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
		`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	session := hdr.Get("Mcp-Session-Id")
	if code != http.StatusOK || !taggedID.MatchString(session) {
		t.Fatalf("initialize: %d, Mcp-Session-Id %q, %q", code, session, body)
	}
	if code, _, body := rawCall(t, http.MethodPost, alice, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
		t.Fatalf("initialized: %d %q", code, body)
	}
	before := up.count()
	if code, _, _ := rawCall(t, http.MethodPost, bob, session, callReadFile, nil); code != http.StatusNotFound {
		t.Errorf("bob in alice's session: %d, want 404", code)
	}
	if up.count() != before {
		t.Error("bob's request reached the MCP server")
	}
	if code, _, body := rawCall(t, http.MethodPost, alice, session, callReadFile, nil); code != http.StatusOK || !strings.Contains(body, "read_file /x") {
		t.Errorf("alice in her session: %d %q", code, body)
	}
}

// The subdirectives of a shared MCP server, for the adapt tests (kept apart from the main
// list in adapt_test.go so that its alignment stays as it is).
func init() {
	for sub, field := range map[string]string{
		"bind_sessions":           "bind_sessions",
		"audit":                   "audit",
		"close_streams_at_expiry": "close_streams_at_expiry",
	} {
		subdirectives[sub] = field
	}
}
