package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Attacks on the anonymous path (public, challenge_in_result) from outside: a raw client
// against a real Caddy in front of a recording server.

// attackPublicAuth: search and delete_public are public, delete_* needs mcp:admin.
const attackPublicAuth = `resource_name "Attack public"
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
public {
	tool search delete_public
}
challenge_in_result
`

// recordingUpstream records what reached it: the request bodies and the trailers.
type recordingUpstream struct {
	*httptest.Server
	mu       sync.Mutex
	hits     int
	trailers []string
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		u.mu.Lock()
		u.hits++
		for k, v := range r.Trailer {
			u.trailers = append(u.trailers, k+": "+strings.Join(v, ","))
		}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ran"}]}}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) seen() (int, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits, append([]string(nil), u.trailers...)
}

func (u *recordingUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

// startAttackPublic runs attackPublicAuth in front of a recordingUpstream.
func startAttackPublic(t *testing.T) (*recordingUpstream, *fixture) {
	t.Helper()
	up := newRecordingUpstream(t)
	f := newFixture(t, up)
	f.start(t, f.caddyfile(attackPublicAuth), "caddyfile", "Attack public")
	return up, f
}

// TestAttackPublicInResultID: a matched client's refused tools/call gets its challenge in a
// result whose id is the request's, byte for byte; an id that JSON-RPC does not allow (an
// object, an array, a boolean) is no request to answer in a result: the 401 stays, and
// nothing the caller wrote (a line break splitting the SSE event) is reflected.
func TestAttackPublicInResultID(t *testing.T) {
	up, _ := startAttackPublic(t)
	call := func(id string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"delete_file","arguments":{}}}`
	}
	for _, accept := range []string{"application/json, text/event-stream", "text/event-stream"} {
		for _, id := range []string{`7`, `-0.5e3`, `"a\"b\u2028"`, `"x\nevent: evil"`} {
			t.Run(accept+"/"+id, func(t *testing.T) {
				a := sendPublic(t, publicReq{body: call(id), hdr: map[string]string{"User-Agent": openAIUA, "Accept": accept}})
				if a.status != http.StatusOK {
					t.Fatalf("status %d, body %s", a.status, a.body)
				}
				body := string(a.body)
				if accept == "text/event-stream" {
					data, ok := strings.CutPrefix(body, "event: message\ndata: ")
					if !ok || !strings.HasSuffix(data, "\n\n") || strings.Count(data, "\n") != 2 {
						t.Fatalf("not one SSE event: %q", body)
					}
					body = strings.TrimSuffix(data, "\n\n")
				}
				if want := `{"jsonrpc":"2.0","id":` + id + `,"result":`; !strings.HasPrefix(body, want) {
					t.Errorf("answer %q does not start with %q", body, want)
				}
			})
		}
		for _, id := range []string{"{\"a\"\n:1}", "[1,\n2]", `true`, `{"jsonrpc":"2.0"}`, `null`} {
			t.Run(accept+"/refused "+id, func(t *testing.T) {
				before, _ := up.seen()
				a := sendPublic(t, publicReq{body: call(id), hdr: map[string]string{"User-Agent": openAIUA, "Accept": accept}})
				if a.status != http.StatusUnauthorized {
					t.Errorf("status %d, body %q: want 401", a.status, a.body)
				}
				checkChallenge(t, a.hdr, challenge("", "", "mcp:read mcp:admin"))
				if after, _ := up.seen(); after != before {
					t.Errorf("the refused call reached the server")
				}
			})
		}
	}
	t.Run("a notification (no id) keeps the 401", func(t *testing.T) {
		a := sendPublic(t, publicReq{body: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file"}}`,
			hdr: map[string]string{"User-Agent": openAIUA}})
		if a.status != http.StatusUnauthorized {
			t.Errorf("status %d, body %s: want 401", a.status, a.body)
		}
	})
	t.Run("a batch of one keeps the 401", func(t *testing.T) {
		a := sendPublic(t, publicReq{body: `[` + call("1") + `]`, hdr: map[string]string{"User-Agent": openAIUA}})
		if a.status != http.StatusUnauthorized {
			t.Errorf("status %d, body %s: want 401", a.status, a.body)
		}
	})
}

// TestAttackPublicTrailers: a request without a token that announces trailers could send
// Authorization (a token this resource would refuse: expired, for another audience, bound to a
// key it does not hold) after the body, where reverse_proxy forwards it unchecked. Such a
// request is refused, never passed as anonymous.
func TestAttackPublicTrailers(t *testing.T) {
	up, _ := startAttackPublic(t)
	body := toolCall("search")
	for _, c := range []struct{ trailer, announce string }{
		{"Authorization", "Trailer: Authorization\r\n"}, {"DPoP", "Trailer: DPoP\r\n"}, {"Mcp-Method", "Trailer: Mcp-Method\r\n"},
		// Not announced: net/http drops it; the call passes, without it.
		{"Authorization", ""}, {"Mcp-Session-Id", ""},
	} {
		trailer := c.trailer
		t.Run(trailer+" announced "+fmt.Sprint(c.announce != ""), func(t *testing.T) {
			req := "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
				"Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n" + c.announce + "\r\n" +
				fmt.Sprintf("%x\r\n%s\r\n0\r\n", len(body), body) + trailer + ": Bearer stolen.token.value\r\n\r\n"
			before, _ := up.seen()
			code, _, b := sendBytes(t, req, http.MethodPost)
			hits, trailers := up.seen()
			if len(trailers) != 0 {
				t.Fatalf("trailers reached the server: %q", trailers)
			}
			if c.announce == "" {
				if code != http.StatusOK {
					t.Errorf("status %d (body %q): want 200, the unannounced trailer dropped", code, b)
				}
				return
			}
			if code != http.StatusBadRequest || hits != before {
				t.Errorf("status %d (body %q), server hits %d → %d: want 400, untouched", code, b, before, hits)
			}
		})
	}
	t.Run("without trailers the public call passes", func(t *testing.T) {
		req := "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
			"Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		if code, _, b := sendBytes(t, req, http.MethodPost); code != http.StatusOK {
			t.Errorf("status %d, body %q", code, b)
		}
	})
}

// TestAttackPublicOverlapAndBatches: a public tool that a protected rule's glob also matches
// (delete_public, under delete_*) is public to callers without a token, and judged by the
// rules for callers with one, as public is what a caller without a token may do; a batch of
// a thousand pings passes as one request, and one protected call among them gets the 401.
func TestAttackPublicOverlapAndBatches(t *testing.T) {
	up, f := startAttackPublic(t)
	read := []string{bearer(f.token(t, "mcp:read", nil))}
	if a := sendPublic(t, publicReq{body: toolCall("delete_public")}); a.status != http.StatusOK {
		t.Errorf("anonymous delete_public: status %d, body %s", a.status, a.body)
	}
	a := sendPublic(t, publicReq{body: toolCall("delete_public"), auth: read})
	if a.status != http.StatusForbidden {
		t.Errorf("signed-in delete_public without mcp:admin: status %d, body %s: want 403", a.status, a.body)
	}
	pings := make([]string, 1000)
	for i := range pings {
		pings[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, i)
	}
	before, _ := up.seen()
	if a := sendPublic(t, publicReq{body: "[" + strings.Join(pings, ",") + "]"}); a.status != http.StatusOK {
		t.Errorf("a batch of 1000 pings: status %d", a.status)
	}
	if after, _ := up.seen(); after != before+1 {
		t.Errorf("the batch of pings reached the server %d times, want once", after-before)
	}
	pings[500] = toolCall("delete_file")
	before, _ = up.seen()
	a = sendPublic(t, publicReq{body: "[" + strings.Join(pings, ",") + "]", hdr: map[string]string{"User-Agent": openAIUA}})
	if a.status != http.StatusUnauthorized {
		t.Errorf("a protected call among 999 pings, ChatGPT's User-Agent: status %d: want 401", a.status)
	}
	checkChallenge(t, a.hdr, challenge("", "", "mcp:read mcp:admin"))
	if after, _ := up.seen(); after != before {
		t.Errorf("the refused batch reached the server")
	}
}

// TestAttackPublicNeverIntrospects: no request without a token reaches the introspection
// endpoint, whatever it carries instead (a DPoP proof, another scheme, a public or protected
// call, a batch, a stream): the flood limits of introspection are never spent on anonymous
// callers, and an anonymous flood never marks an address suspect. A real token is then
// introspected once.
func TestAttackPublicNeverIntrospects(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	f := newFixture(t, nil)
	f.start(t, withGlobal(f.siteCaddyfile(`resource https://mcp.example.com/mcp
authorization_servers `+as.URL+`
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
public {
	tool search
}
introspection {
	endpoint `+as.URL+`/introspect
	client_id mcp-rs
	client_secret {env.MCP_ITEST_RS_SECRET}
	max_in_flight 4
	timeout 10s
}`, `respond "ok {http.auth.user.id}"`), "servers {\ntrusted_proxies static 127.0.0.0/8\n}"), "caddyfile")
	for _, c := range []struct {
		what   string
		r      publicReq
		status int
	}{
		{"a public call", publicReq{body: toolCall("search")}, 200},
		{"a public call with a DPoP proof and no Authorization", publicReq{body: toolCall("search"), hdr: map[string]string{"DPoP": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}}, 200},
		{"a protected call", publicReq{body: toolCall("delete_file")}, 401},
		{"a protected call with a DPoP proof", publicReq{body: toolCall("delete_file"), hdr: map[string]string{"DPoP": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}}, 401},
		{"a batch", publicReq{body: "[" + toolCall("search") + "," + toolCall("read_file") + "]"}, 401},
		{"a GET", publicReq{method: http.MethodGet}, 405},
		{"another scheme", publicReq{body: toolCall("search"), auth: []string{"Basic " + randomToken()}}, 401},
		{"an empty Authorization", publicReq{body: toolCall("search"), auth: []string{""}}, 401},
		{"Authorization twice", publicReq{body: toolCall("search"), auth: []string{"Bearer " + randomToken(), "Bearer " + real}}, 400},
	} {
		t.Run(c.what, func(t *testing.T) {
			for range 20 {
				if a := sendPublic(t, c.r); a.status != c.status {
					t.Fatalf("status %d, want %d; body %s", a.status, c.status, a.body)
				}
			}
			if n := as.calls.Load(); n != 0 {
				t.Fatalf("%d introspection calls for requests without a token", n)
			}
		})
	}
	if a := sendPublic(t, publicReq{body: toolCall("search"), auth: []string{"Bearer " + real}}); a.status != http.StatusOK {
		t.Errorf("the real token: status %d, body %s", a.status, a.body)
	}
	if n := as.calls.Load(); n != 1 {
		t.Errorf("%d introspection calls for one real token, want 1", n)
	}
}

// TestAttackPublicSessionHandedToSignedIn: a session the server opens for a request that
// carries a token is bound to that caller, also when the request came in an anonymous
// session (a client that signs in and initializes again; a server that opens a new session
// for a request in an old one): a new session ID is never tagged anonymous because the
// request's old one was, so no caller without a token can use it.
func TestAttackPublicSessionHandedToSignedIn(t *testing.T) {
	var mu sync.Mutex
	opened := 0
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), `"initialize"`) {
			// A new session for every initialize, whatever session the request named.
			mu.Lock()
			opened++
			w.Header().Set("Mcp-Session-Id", fmt.Sprintf("server-session-%d", opened))
			mu.Unlock()
		} else if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
			// Answers in a session name it again, as some servers do on every response.
			w.Header().Set("Mcp-Session-Id", sid)
		}
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":0,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	f := newFixture(t, server{up})
	f.start(t, f.caddyfile(attackPublicAuth+"bind_sessions "+publicSessionKey), "caddyfile", "Attack public")
	read := []string{bearer(f.token(t, "mcp:read", nil))}

	a := sendPublic(t, publicReq{body: initBody})
	anon := a.hdr.Get("Mcp-Session-Id")
	if a.status != http.StatusOK || !strings.HasPrefix(anon, "server-session-1.") {
		t.Fatalf("anonymous initialize: status %d, session %q", a.status, anon)
	}
	// The same session, used with a token: its ID stays the anonymous one.
	a = sendPublic(t, publicReq{body: toolCall("search"), auth: read, session: anon})
	if a.status != http.StatusOK || a.hdr.Get("Mcp-Session-Id") != anon {
		t.Fatalf("signed-in call in the anonymous session: status %d, session %q, want %q", a.status, a.hdr.Get("Mcp-Session-Id"), anon)
	}
	// A new session opened for the signed-in caller from within the anonymous one.
	a = sendPublic(t, publicReq{body: initBody, auth: read, session: anon})
	signed := a.hdr.Get("Mcp-Session-Id")
	if a.status != http.StatusOK || !strings.HasPrefix(signed, "server-session-2.") {
		t.Fatalf("signed-in initialize in the anonymous session: status %d, session %q", a.status, signed)
	}
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		r := publicReq{method: m, session: signed}
		if m == http.MethodPost {
			r.body = toolCall("search")
		}
		if b := sendPublic(t, r); b.status != http.StatusNotFound {
			t.Errorf("anonymous %s in the session opened with a token: status %d, want 404", m, b.status)
		}
	}
	if b := sendPublic(t, publicReq{body: toolCall("search"), auth: read, session: signed}); b.status != http.StatusOK {
		t.Errorf("its owner: status %d, body %s", b.status, b.body)
	}
}

// TestAttackPublicTokenInQuery: a request without an Authorization header that names an
// access token in its query (RFC 6750 §2.3, forbidden to MCP clients) is a credential
// attempt, not an anonymous request: 400, and the server, which might accept such a token
// (expired, for another audience), never sees it. A public call with any other query passes.
func TestAttackPublicTokenInQuery(t *testing.T) {
	up, f := startAttackPublic(t)
	post := func(t *testing.T, query string) publicAnswer {
		t.Helper()
		code, hdr, b := f.do(t, attackReq{target: "/mcp?" + query, body: toolCall("search")})
		return publicAnswer{status: code, hdr: hdr, body: b}
	}
	for _, q := range []string{"access_token=stolen", "x=1&access_token=stolen", "access%5Ftoken=stolen", "ACCESS_TOKEN=stolen", "x=1;access_token=stolen"} {
		t.Run(q, func(t *testing.T) {
			before, _ := up.seen()
			a := post(t, q)
			if a.status != http.StatusBadRequest {
				t.Errorf("status %d, body %s: want 400", a.status, a.body)
			}
			checkChallenge(t, a.hdr, challenge("invalid_request", "Access tokens are accepted only in the Authorization header.", "mcp:read"))
			if after, _ := up.seen(); after != before {
				t.Errorf("the request reached the server")
			}
		})
	}
	if a := post(t, "session=1&token_hint=x"); a.status != http.StatusOK {
		t.Errorf("a public call with another query: status %d, body %s", a.status, a.body)
	}
}
