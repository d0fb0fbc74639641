package mcpauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const testSessionKey = "an-example-session-key-of-32-bytes-or-more-for-tests"

func TestSessionTags(t *testing.T) {
	b, generated, err := newSessionBinder(&SessionBinding{Key: testSessionKey})
	if err != nil || generated {
		t.Fatalf("newSessionBinder: %v, generated %v", err, generated)
	}
	alice := &verify.Identity{Issuer: "https://as", Subject: "alice", ClientID: "c1"}
	bound := b.bind("SID-1", alice)
	if !strings.HasPrefix(bound, "SID-1.") || len(bound) != len("SID-1.")+43 {
		t.Fatalf("bound ID %q", bound)
	}
	for _, c := range bound {
		if c < 0x21 || c > 0x7e {
			t.Fatalf("bound ID %q has %q, not visible ASCII (MCP Streamable HTTP, Session Management)", bound, c)
		}
	}
	if sid, ok := b.unbind(bound, alice); !ok || sid != "SID-1" {
		t.Errorf("unbind for the same caller: %q %v", sid, ok)
	}
	// A server ID with dots of its own is cut at the last one.
	if sid, ok := b.unbind(b.bind("a.b.c", alice), alice); !ok || sid != "a.b.c" {
		t.Errorf("unbind of a dotted ID: %q %v", sid, ok)
	}
	refresh := &verify.Identity{Issuer: "https://as", Subject: "alice", ClientID: "c1", TokenID: "other-jti", Scopes: []string{"x"}}
	if _, ok := b.unbind(bound, refresh); !ok {
		t.Error("a refreshed token of the same caller lost the session")
	}
	others := []*verify.Identity{
		{Issuer: "https://as", Subject: "bob", ClientID: "c1"},
		{Issuer: "https://as", Subject: "alice", ClientID: "c2"},
		{Issuer: "https://other", Subject: "alice", ClientID: "c1"},
		// Same concatenation, other split: the values are length-prefixed.
		{Issuer: "https://asa", Subject: "lice", ClientID: "c1"},
	}
	for _, o := range others {
		if _, ok := b.unbind(bound, o); ok {
			t.Errorf("%+v may use alice's session", o)
		}
	}
	for _, bad := range []string{"", "SID-1", "SID-1.", bound[:len(bound)-1], bound + "A", "SID-2" + bound[5:], strings.ToUpper(bound)} {
		if _, ok := b.unbind(bad, alice); ok {
			t.Errorf("unbind accepted %q", bad)
		}
	}
	// Another key: another tag.
	b2, _, _ := newSessionBinder(&SessionBinding{Key: testSessionKey + "!"})
	if _, ok := b2.unbind(bound, alice); ok {
		t.Error("a tag made under another key was accepted")
	}
}

func TestSessionKeyConfig(t *testing.T) {
	t.Setenv("MCPAUTH_SHORT_KEY", "too-short")
	t.Setenv("MCPAUTH_GOOD_KEY", testSessionKey)
	base := func(extra string) string {
		return "mcp_auth {\n resource https://mcp.example.com/mcp\n authorization_servers https://auth.example.com\n scopes mcp:read\n" + extra + "\n}"
	}
	parse := func(cf string) (*Handler, error) {
		h := new(Handler)
		return h, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(cf))
	}
	for _, c := range []struct {
		line, err string
	}{
		{"bind_sessions short-key", "bind_sessions: the key has 9 bytes, fewer than 32"},
		{"bind_sessions " + testSessionKey + " b", "takes at most one value"},
		{"bind_sessions\n bind_sessions", "given more than once"},
		{"bind_sessions {http.request.header.X}", "has no value when the config loads"},
	} {
		_, err := parse(base(c.line))
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want %q", c.line, err, c.err)
		}
	}
	h, err := parse(base("bind_sessions"))
	if err != nil || h.BindSessions == nil || h.BindSessions.Key != "" {
		t.Fatalf("bind_sessions without key: %+v %v", h.BindSessions, err)
	}

	// The key is expanded at Provision and checked there; the error never shows it.
	jwks := newJWKSServer(t, jwttest.New(t, "k", "RS256"))
	h = &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer}, JWKSURLs: []string{jwks.URL},
		Scopes: []string{"mcp:read"}, BindSessions: &SessionBinding{Key: "{env.MCPAUTH_SHORT_KEY}"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err = h.Provision(ctx)
	_ = h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "bind_sessions") || strings.Contains(err.Error(), "too-short") {
		t.Errorf("short key from the environment: %v", err)
	}

	// Without a key, one is generated per process and a warning says sessions end on restart;
	// two configs (a reload) share it, so a reload keeps the sessions.
	core, logs := observer.New(zapcore.WarnLevel)
	alice := &verify.Identity{Issuer: testIssuer, Subject: "alice"}
	var tags []string
	for range 2 {
		h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer}, JWKSURLs: []string{jwks.URL},
			Scopes: []string{"mcp:read"}, BindSessions: &SessionBinding{}}
		provisionHandler(t, h)
		h.logger = zap.New(core)
		if err := h.BindSessions.Provision(ctx, h); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, h.sessions.bind("S", alice))
	}
	if tags[0] != tags[1] {
		t.Error("a second config generated another key: a reload would end every session")
	}
	if logs.FilterMessageSnippet("sessions end when Caddy restarts").Len() == 0 {
		t.Error("no warning that generated-key sessions end on restart")
	}
	h = &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer}, JWKSURLs: []string{jwks.URL},
		Scopes: []string{"mcp:read"}, BindSessions: &SessionBinding{Key: "{env.MCPAUTH_GOOD_KEY}"}}
	provisionHandler(t, h)
	if h.sessions.bind("S", alice) == tags[0] {
		t.Error("the configured key was not used")
	}
}

// TestStreamEndsAtExpiry runs, in a synctest bubble, a handler whose next handler behaves as
// reverse_proxy does with an SSE upstream: it streams until the request context ends, then
// aborts with http.ErrAbortHandler. The stream must end exactly at exp + leeway, cleanly; a
// JSON answer is never cut.
func TestStreamEndsAtExpiry(t *testing.T) {
	keys := newTestKeyring(t)
	h := newTestHandler(t, newJWKSServer(t, keys.ec), func(h *Handler) {
		h.CloseStreamsAtExpiry = true
		h.Leeway = durationPtr(5 * time.Second)
	})
	synctest.Test(t, func(t *testing.T) {
		h.now = time.Now // the bubble's clock
		h.verifier.(*verify.JWT).Now = time.Now
		start := time.Now()
		claims := testClaims(testIssuer, testResource, "mcp:read")
		claims["exp"] = start.Add(3 * time.Second).Unix()
		tok := keys.ec.Token(t, claims, nil)

		serve := func(ctype string) (time.Duration, bool, string) {
			var cut bool
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Content-Type", ctype)
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, "data: 1\n\n")
				select {
				case <-r.Context().Done():
					cut = true
					panic(http.ErrAbortHandler) // as reverse_proxy does when its upstream read fails
				case <-time.After(time.Minute):
				}
				return nil
			})
			r := bearerReq(http.MethodGet, "/mcp", "Bearer "+tok)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			rec := httptest.NewRecorder()
			t0 := time.Now()
			if err := h.ServeHTTP(rec, r, next); err != nil {
				t.Errorf("ServeHTTP: %v", err)
			}
			return time.Since(t0), cut, rec.Body.String()
		}
		took, cut, body := serve("text/event-stream")
		if want := time.Unix(claims["exp"].(int64), 0).Add(5 * time.Second).Sub(start); !cut || took != want {
			t.Errorf("SSE stream: cut %v after %s, want cut after %s (exp + leeway)", cut, took, want)
		}
		if body != "data: 1\n\n" {
			t.Errorf("SSE body %q", body)
		}
		start = time.Now()
		claims["exp"] = start.Add(3 * time.Second).Unix()
		tok = keys.ec.Token(t, claims, nil)
		if took, cut, _ := serve("application/json"); cut || took != time.Minute {
			t.Errorf("JSON answer: cut %v after %s; only streams end at expiry", cut, took)
		}
	})
}

func TestAuditEvents(t *testing.T) {
	keys := newTestKeyring(t)
	h := newTestHandler(t, newJWKSServer(t, keys.rsa), func(h *Handler) {
		h.Audit = true
		h.Rules = []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}}
	})
	core, logs := observer.New(zapcore.InfoLevel)
	h.audit = zap.New(core).Named("http.handlers.mcp_auth.audit")

	withJTI := testClaims(testIssuer, testResource, "mcp:read")
	withJTI["jti"] = "jti-1"
	noJTI := testClaims(testIssuer, testResource, "mcp:read")
	tokJTI, tokNoJTI := keys.rsa.Token(t, withJTI, nil), keys.rsa.Token(t, noJTI, nil)
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `"}}`
	}
	post := func(tok, body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader([]byte(body)))
		r.Header.Set("Content-Type", "application/json")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		r.RemoteAddr = "192.0.2.7:4242"
		return r
	}
	cases := []struct {
		name string
		r    *http.Request
		want map[string]any
	}{
		{"allowed call", post(tokJTI, call("read_file")), map[string]any{"decision": "allow", "iss": testIssuer, "sub": "user-1",
			"client_id": "client-1", "method": "tools/call", "name": "read_file", "rule": "base", "token_id": "jti-1", "remote_ip": "192.0.2.7"}},
		{"denied call", post(tokNoJTI, call("delete_file")), map[string]any{"decision": "deny", "status": int64(403), "reason": "insufficient_scope",
			"detail": "insufficient_scope", "sub": "user-1", "method": "tools/call", "name": "delete_file", "rule": "tool delete_*",
			"token_id": tokenHashID(tokNoJTI)}},
		{"no token", post("", call("read_file")), map[string]any{"decision": "deny", "status": int64(401), "reason": "access_denied",
			"detail": "missing_token"}},
		{"bad token", post(tamper(t, tokJTI), call("read_file")), map[string]any{"decision": "deny", "status": int64(401),
			"reason": "invalid_token", "token_id": tokenHashID(tamper(t, tokJTI))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs.TakeAll()
			serveRequest(t, h, c.r)
			entries := logs.TakeAll()
			if len(entries) != 1 {
				t.Fatalf("%d audit events, want 1", len(entries))
			}
			got := entries[0].ContextMap()
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, got[k], got[k], v)
				}
			}
			if c.want["sub"] == nil && got["sub"] != nil {
				t.Errorf("an unauthenticated request names sub %v", got["sub"])
			}
			for k, v := range got {
				if s, ok := v.(string); ok && strings.Contains(s, ".ey") {
					t.Errorf("field %s looks like a token: %q", k, s)
				}
			}
			if len(tokenHashID("x")) != 16 {
				t.Error("token_id hash is not 8 bytes in hex")
			}
		})
	}
}

// TestFeaturesOffAllocateNothing: with bind_sessions, audit and close_streams_at_expiry off,
// the cached request path allocates nothing.
func TestFeaturesOffAllocateNothing(t *testing.T) {
	keys := newTestKeyring(t)
	h := newTestHandler(t, newJWKSServer(t, keys.rsa), nil)
	h.logger = zap.NewNop()
	tok := keys.rsa.Token(t, testClaims(testIssuer, testResource, "mcp:read"), nil)
	r := withReplacer(newBenchRequest(tok))
	w := &nopWriter{h: make(http.Header)}
	_ = h.ServeHTTP(w, r, nextOK)
	if n := testing.AllocsPerRun(100, func() { _ = h.ServeHTTP(w, r, nextOK) }); n != 0 {
		t.Errorf("the cached path allocates %v times per request with the features off", n)
	}
}

// TestSessionHeaderSpellings: a header that CGI-style servers read as Mcp-Session-Id
// (HTTP_MCP_SESSION_ID) but net/http keeps apart is refused, whatever else the request holds,
// should Caddy be told to pass underscore headers on (expected_underscore_headers).
func TestSessionHeaderSpellings(t *testing.T) {
	b, _, _ := newSessionBinder(&SessionBinding{Key: testSessionKey})
	alice := &verify.Identity{Issuer: "https://as", Subject: "alice"}
	own := b.bind("S", alice)
	for _, c := range []struct {
		hdr  map[string][]string
		pass bool
	}{
		{map[string][]string{"Mcp-Session-Id": {own}}, true},
		{map[string][]string{}, true},
		{map[string][]string{"Mcp_session_id": {"OTHER"}}, false},
		{map[string][]string{"Mcp-Session-Id": {own}, "MCP_SESSION_ID": {"OTHER"}}, false},
		{map[string][]string{"Mcp-Session_Id": {"OTHER"}}, false},
		{map[string][]string{"Mcp-Session-Id": {own, own}}, false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header = c.hdr
		if got := b.checkSession(r, alice, ""); got != c.pass {
			t.Errorf("%v: pass %v, want %v", c.hdr, got, c.pass)
		}
	}
}

// bind is bindFor for a caller without a session anchor; only tests call it.
func (b *sessionBinder) bind(sid string, id *verify.Identity) string {
	return b.bindFor(sid, id, "")
}

// unbind is unbindFor for a caller without a session anchor; only tests call it.
func (b *sessionBinder) unbind(sent string, id *verify.Identity) (string, bool) {
	return b.unbindFor(sent, id, "")
}

// tokenHashID is the audit token_id of a token without jti: the first 8 bytes of its SHA-256,
// in hex.
func tokenHashID(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:8])
}
