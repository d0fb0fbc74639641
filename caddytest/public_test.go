package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Public operations beside protected ones, and challenge_in_result, through a real Caddy in
// front of a real MCP server (the official Go SDK): Caddy → mcp_auth → reverse_proxy →
// mcp.StreamableHTTPHandler. search and docs_* are public; read_file needs the base scope
// mcp:read; delete_* needs mcp:admin too; pay_* needs billing:write or billing:admin.

// publicRules: read_file needs the base scope mcp:read, delete_* mcp:admin too, pay_*
// billing:write or billing:admin.
const publicRules = `scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
tool pay_* {
	any_of billing:write billing:admin
}
`

// publicBlock makes search and docs_* public.
const publicBlock = "public {\ntool search docs_*\n}\n"

// publicCaddyfile is the site named name with publicRules, the subdirectives in auth and
// bound sessions; the proxy hands the identity placeholders on as X-User and X-Tenant.
func (f *fixture) publicCaddyfile(name, auth string) string {
	return f.caddyfile(`resource_name "`+name+"\"\n"+publicRules+auth+"bind_sessions "+publicSessionKey,
		"reverse_proxy "+f.up.dial()+" {\nheader_up X-User \"{http.auth.user.id}\"\nheader_up X-Tenant \"{http.auth.mcp.claim.tenant}\"\n}")
}

// publicJSON is publicCaddyfile with publicBlock and challenge_in_result, written by hand in
// JSON, with more fields.
func (f *fixture) publicJSON(name string, more map[string]any) string {
	fields := map[string]any{
		"resource_name": name,
		"scopes":        []string{"mcp:read"},
		"rules": []any{
			map[string]any{"tools": []string{"delete_*"}, "scopes": []string{"mcp:admin"}},
			map[string]any{"tools": []string{"pay_*"}, "any_of": []string{"billing:write", "billing:admin"}},
		},
		"public":              map[string]any{"tools": []string{"search", "docs_*"}},
		"challenge_in_result": []string{"openai-mcp/*"},
		"bind_sessions":       map[string]any{"key": publicSessionKey},
	}
	for k, v := range more {
		fields[k] = v
	}
	proxy := f.proxy()
	proxy["headers"] = map[string]any{"request": map[string]any{"set": map[string]any{
		"X-User": []string{"{http.auth.user.id}"}, "X-Tenant": []string{"{http.auth.mcp.claim.tenant}"}}}}
	return f.json(fields, proxy)
}

// publicConfig is the usual configuration of these tests, public operations and
// challenge_in_result on, in either format, with more (filter_lists) when set.
func (f *fixture) publicConfig(adapter, name, more string) string {
	if adapter == "json" {
		m := map[string]any{}
		if more != "" {
			m[more] = true
		}
		return f.publicJSON(name, m)
	}
	return f.publicCaddyfile(name, publicBlock+"challenge_in_result\n"+more+"\n")
}

const publicSessionKey = "0123456789abcdef0123456789abcdef-public"

// publicTools are the upstream's tools.
var publicTools = []string{"search", "docs_page", "read_file", "delete_file", "pay_bill"}

// publicUpstream is the MCP server: it records the tools it ran and the X-User and X-Tenant
// headers of every request (the identity placeholders the route hands on).
type publicUpstream struct {
	*httptest.Server
	mu    sync.Mutex
	ran   map[string]int
	users []string
	hits  int
}

func newPublicUpstream(t *testing.T, jsonResponse bool) *publicUpstream {
	t.Helper()
	u := &publicUpstream{ran: map[string]int{}}
	server := mcp.NewServer(&mcp.Implementation{Name: "public-test", Version: "1.0.0"}, nil)
	for _, name := range publicTools {
		// The server claims every tool is public: the resource must not repeat it.
		tool := &mcp.Tool{Name: name, Description: name, InputSchema: map[string]any{"type": "object"},
			Meta: mcp.Meta{"securitySchemes": []any{map[string]any{"type": "noauth"}}, "vendor": "kept"}}
		server.AddTool(tool, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			u.mu.Lock()
			u.ran[name]++
			u.mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ran " + name}}}, nil
		})
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.hits++
		u.users = append(u.users, r.Header.Get("X-User")+"|"+r.Header.Get("X-Tenant"))
		u.mu.Unlock()
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *publicUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

func (u *publicUpstream) state() (hits int, ran map[string]int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ran = make(map[string]int, len(u.ran))
	for k, v := range u.ran {
		ran[k] = v
	}
	return u.hits, ran
}

func (u *publicUpstream) lastUser() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.users[len(u.users)-1]
}

// publicReq is one raw request to Caddy.
type publicReq struct {
	method  string // default POST
	body    string
	auth    []string // Authorization header values; nil: none
	session string
	hdr     map[string]string
}

type publicAnswer struct {
	status int
	hdr    http.Header
	body   []byte
}

// send sends r; a GET answer's body is not read (a stream stays open): only its status and
// headers are returned.
func sendPublic(t *testing.T, r publicReq) publicAnswer {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	var rd io.Reader
	if r.body != "" {
		rd = strings.NewReader(r.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, baseURL+"/mcp", rd)
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if r.auth != nil {
		req.Header["Authorization"] = r.auth
	}
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
		req.Header.Set("Mcp-Protocol-Version", protocolHeader)
	}
	for k, v := range r.hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var resp *http.Response
	for attempt := 1; ; attempt++ {
		resp, err = client.Do(req)
		if err == nil {
			break
		}
		if attempt == 10 {
			t.Fatalf("%s /mcp: %v", method, err)
		}
		// The previous config's server closed the connection unanswered: try again at once,
		// on a new connection.
		client.CloseIdleConnections()
		if r.body != "" {
			req.Body = io.NopCloser(strings.NewReader(r.body))
		}
	}
	defer resp.Body.Close()
	a := publicAnswer{status: resp.StatusCode, hdr: resp.Header}
	if method != http.MethodGet || resp.Header.Get("Content-Type") != "text/event-stream" {
		a.body, _ = io.ReadAll(resp.Body)
	}
	return a
}

const (
	initBody        = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"` + protocolHeader + `","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	initializedBody = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	toolsListBody   = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	openAIUA        = "openai-mcp/1.0.0"
)

// openSession runs initialize and notifications/initialized with auth (nil: anonymous) and
// returns the session ID the client was handed.
func openSession(t *testing.T, auth []string, hdr map[string]string) string {
	t.Helper()
	a := sendPublic(t, publicReq{body: initBody, auth: auth, hdr: hdr})
	sid := a.hdr.Get("Mcp-Session-Id")
	if a.status != http.StatusOK || sid == "" {
		t.Fatalf("initialize: status %d, session %q, body %s", a.status, sid, a.body)
	}
	if b := sendPublic(t, publicReq{body: initializedBody, auth: auth, session: sid, hdr: hdr}); b.status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: status %d, body %s", b.status, b.body)
	}
	return sid
}

// listedSchemes returns each tool of a tools/list answer with its top-level securitySchemes
// and _meta.securitySchemes (as JSON), and the result's cacheScope.
func listedSchemes(t *testing.T, a publicAnswer) (top, meta map[string]string, vendor map[string]string, cacheScope string) {
	t.Helper()
	if a.status/100 != 2 {
		t.Fatalf("tools/list: status %d, body %s", a.status, a.body)
	}
	m := rpcAnswer(t, a.hdr, a.body)
	res, _ := m["result"].(map[string]any)
	cacheScope, _ = res["cacheScope"].(string)
	tools, _ := res["tools"].([]any)
	top, meta, vendor = map[string]string{}, map[string]string{}, map[string]string{}
	for _, e := range tools {
		tool := e.(map[string]any)
		name := tool["name"].(string)
		b, _ := json.Marshal(tool["securitySchemes"])
		top[name] = string(b)
		mm, _ := tool["_meta"].(map[string]any)
		b, _ = json.Marshal(mm["securitySchemes"])
		meta[name] = string(b)
		vendor[name], _ = mm["vendor"].(string)
	}
	return top, meta, vendor, cacheScope
}

// publicSchemes are the securitySchemes every tools/list answer must carry.
var publicSchemes = map[string]string{
	"search":      `[{"type":"noauth"}]`,
	"docs_page":   `[{"type":"noauth"}]`,
	"read_file":   `[{"scopes":["mcp:read"],"type":"oauth2"}]`,
	"delete_file": `[{"scopes":["mcp:read","mcp:admin"],"type":"oauth2"}]`,
	"pay_bill":    `[{"scopes":["mcp:read","billing:write"],"type":"oauth2"}]`,
}

func TestPublicCaddyfile(t *testing.T) { runPublic(t, "caddyfile", false) }
func TestPublicJSON(t *testing.T)      { runPublic(t, "json", false) }
func TestPublicSSE(t *testing.T)       { runPublic(t, "caddyfile", true) }

func runPublic(t *testing.T, adapter string, sse bool) {
	up := newPublicUpstream(t, !sse)
	f := newFixture(t, up)
	name := "Public " + adapter
	f.start(t, f.publicConfig(adapter, name, ""), adapter, name)

	read := []string{bearer(f.token(t, "mcp:read", nil))}
	admin := []string{bearer(f.token(t, "mcp:read mcp:admin", nil))}
	expired := []string{bearer(f.token(t, "mcp:read", map[string]any{
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix(),
		"exp": time.Now().Add(-time.Hour).Unix()}))}
	other := jwttest.New(t, "rsa-other", "RS256") // not in the JWKS
	forged := []string{bearer(other.Token(t, f.claims("mcp:read", nil), nil))}

	// untouched runs f and asserts the MCP server received nothing.
	untouched := func(t *testing.T, what string, f func()) {
		t.Helper()
		before, ranBefore := up.state()
		f()
		after, ranAfter := up.state()
		if after != before || !mapsEqual(ranBefore, ranAfter) {
			t.Errorf("%s reached the MCP server: %d → %d requests, tools %v → %v", what, before, after, ranBefore, ranAfter)
		}
	}
	check401 := func(t *testing.T, a publicAnswer, scope string) {
		t.Helper()
		if a.status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401; body %s", a.status, a.body)
		}
		checkChallenge(t, a.hdr, challenge("", "", scope))
	}

	anon := openSession(t, nil, nil)
	t.Run("anonymous discovery and public tools", func(t *testing.T) {
		top, meta, vendor, scope := listedSchemes(t, sendPublic(t, publicReq{body: toolsListBody, session: anon}))
		for _, tool := range publicTools {
			if top[tool] != publicSchemes[tool] || meta[tool] != publicSchemes[tool] {
				t.Errorf("%s: securitySchemes %s, _meta.securitySchemes %s, want %s", tool, top[tool], meta[tool], publicSchemes[tool])
			}
			if vendor[tool] != "kept" {
				t.Errorf("%s: the server's other _meta members were lost: %q", tool, vendor[tool])
			}
		}
		if scope != "private" {
			t.Errorf("cacheScope %q, want private", scope)
		}
		for _, tool := range []string{"search", "docs_page"} {
			a := sendPublic(t, publicReq{body: toolCall(tool), session: anon})
			if a.status != http.StatusOK || toolText(t, a.hdr, a.body) != "ran "+tool {
				t.Errorf("%s: status %d, body %s", tool, a.status, a.body)
			}
			if u := up.lastUser(); u != "|" {
				t.Errorf("an anonymous request has {http.auth.user.id}|{http.auth.mcp.claim.tenant} %q, want both empty", u)
			}
		}
		for _, body := range []string{`{"jsonrpc":"2.0","id":3,"method":"ping"}`, `{"jsonrpc":"2.0","id":4,"method":"prompts/list"}`} {
			if a := sendPublic(t, publicReq{body: body, session: anon}); a.status != http.StatusOK {
				t.Errorf("%s: status %d, body %s", body, a.status, a.body)
			}
		}
		// A batch of allowed messages passes mcp_auth (this server then refuses batches,
		// as MCP 2025-06-18 does).
		before, _ := up.state()
		sendPublic(t, publicReq{body: `[{"jsonrpc":"2.0","id":5,"method":"ping"},` + toolCall("search") + `]`, session: anon})
		if after, _ := up.state(); after != before+1 {
			t.Errorf("an anonymous batch of allowed messages did not reach the server")
		}
	})

	t.Run("anonymous protected operations get the 401 their messages need", func(t *testing.T) {
		for _, c := range []struct{ what, body, scope string }{
			{"read_file", toolCall("read_file"), "mcp:read"},
			{"delete_file", toolCall("delete_file"), "mcp:read mcp:admin"},
			{"pay_bill (any_of: the first alternative)", toolCall("pay_bill"), "mcp:read billing:write"},
			{"protected tool hidden in a batch with public ones", `[` + toolCall("search") + `,` + toolCall("delete_file") + `,{"jsonrpc":"2.0","id":9,"method":"ping"}]`, "mcp:read mcp:admin"},
			{"a batch of one protected call", `[` + toolCall("pay_bill") + `]`, "mcp:read billing:write"},
			{"another method", `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"https://docs.example.com/a"}}`, "mcp:read"},
			{"a response (no method)", `{"jsonrpc":"2.0","id":7,"result":{}}`, "mcp:read"},
		} {
			t.Run(c.what, func(t *testing.T) {
				untouched(t, c.what, func() { check401(t, sendPublic(t, publicReq{body: c.body, session: anon}), c.scope) })
			})
		}
	})

	t.Run("public names spelled another way", func(t *testing.T) {
		// Each name as a JSON string literal, escapes as written.
		for _, name := range []string{`"Search"`, `"SEARCH"`, `"search "`, `" search"`, `"search\u0000"`, `"search\t"`,
			`"\u0455earch"` /* Cyrillic dze */, `"searc\u04bb"`, `"search\u200b"`, `"\uff53earch"`, `"Docs_page"`,
			`"search/../read_file"`, `"search\n"`} {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":` + name + `,"arguments":{}}}`
			untouched(t, name, func() { check401(t, sendPublic(t, publicReq{body: body, session: anon}), "mcp:read") })
		}
	})

	t.Run("body guards hold for anonymous requests", func(t *testing.T) {
		for _, c := range []struct {
			what   string
			r      publicReq
			status int
		}{
			{"params.name given twice", publicReq{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_file"}}`}, 400},
			{"method given twice", publicReq{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_file"}}`}, 400},
			{"a case-variant key", publicReq{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_file"}}`}, 400},
			{"invalid UTF-8", publicReq{body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\xff\"}}"}, 400},
			{"not JSON", publicReq{body: `{"jsonrpc":"2.0",`}, 400},
			{"Mcp-Name disagrees with the body", publicReq{body: toolCall("delete_file"), hdr: map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "search"}}, 400},
			{"Mcp-Method disagrees with the body", publicReq{body: toolCall("delete_file"), hdr: map[string]string{"Mcp-Method": "tools/list"}}, 400},
			{"Mcp-Name on a public call that names another tool", publicReq{body: toolCall("search"), hdr: map[string]string{"Mcp-Name": "delete_file"}}, 400},
			{"text/plain", publicReq{body: toolCall("search"), hdr: map[string]string{"Content-Type": "text/plain"}}, 415},
			{"UTF-7 charset", publicReq{body: toolCall("search"), hdr: map[string]string{"Content-Type": "application/json; charset=utf-7"}}, 415},
			{"Content-Encoding", publicReq{body: toolCall("search"), hdr: map[string]string{"Content-Encoding": "identity"}}, 415},
			{"method override", publicReq{body: toolCall("search"), hdr: map[string]string{"X-HTTP-Method-Override": "GET"}}, 400},
			{"a PUT with a body", publicReq{method: http.MethodPut, body: toolCall("search")}, 400},
			{"a GET with a body", publicReq{method: http.MethodGet, body: toolCall("search")}, 400},
			{"too large", publicReq{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"` + strings.Repeat("a", 1<<20) + `"}}}`}, 413},
		} {
			t.Run(c.what, func(t *testing.T) {
				c.r.session = anon
				untouched(t, c.what, func() {
					if a := sendPublic(t, c.r); a.status != c.status {
						t.Errorf("status %d, want %d; body %s", a.status, c.status, a.body)
					}
				})
			})
		}
	})

	t.Run("a present Authorization header is never anonymous", func(t *testing.T) {
		for _, c := range []struct {
			what   string
			auth   []string
			status int
			want   string
		}{
			{"an invalid token", forged, 401, challenge("invalid_token", "The access token was not signed by a known key.", "mcp:read")},
			{"an expired token", expired, 401, challenge("invalid_token", "The access token has expired.", "mcp:read")},
			{"an empty Authorization header", []string{""}, 401, challenge("", "", "mcp:read")},
			{"Bearer and nothing", []string{"Bearer "}, 400, challenge("invalid_request", "The Authorization header is not a valid Bearer credential.", "mcp:read")},
			{"another scheme", []string{"Basic dXNlcjpwYXNz"}, 401, challenge("", "", "mcp:read")},
		} {
			t.Run(c.what, func(t *testing.T) {
				untouched(t, c.what, func() {
					a := sendPublic(t, publicReq{body: toolCall("search"), auth: c.auth})
					if a.status != c.status {
						t.Fatalf("status %d, want %d; body %s", a.status, c.status, a.body)
					}
					checkChallenge(t, a.hdr, c.want)
				})
			})
		}
	})

	t.Run("signed-in callers", func(t *testing.T) {
		sid := openSession(t, read, nil)
		if u := up.lastUser(); u != "user-1|acme" {
			t.Errorf("X-User|X-Tenant %q for a signed-in caller, want user-1|acme", u)
		}
		top, meta, _, _ := listedSchemes(t, sendPublic(t, publicReq{body: toolsListBody, auth: read, session: sid}))
		for _, tool := range publicTools {
			if top[tool] != publicSchemes[tool] || meta[tool] != publicSchemes[tool] {
				t.Errorf("%s: securitySchemes %s / %s, want %s", tool, top[tool], meta[tool], publicSchemes[tool])
			}
		}
		if a := sendPublic(t, publicReq{body: toolCall("read_file"), auth: read, session: sid}); a.status != http.StatusOK {
			t.Errorf("read_file with mcp:read: status %d", a.status)
		}
		untouched(t, "delete_file with mcp:read", func() {
			a := sendPublic(t, publicReq{body: toolCall("delete_file"), auth: read, session: sid})
			if a.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", a.status)
			}
			checkChallenge(t, a.hdr, challenge("insufficient_scope", descScope, "mcp:read mcp:admin"))
		})
	})

	t.Run("challenge_in_result", func(t *testing.T) {
		inResult := func(t *testing.T, a publicAnswer, id string, want string) {
			t.Helper()
			if a.status != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", a.status, a.body)
			}
			if len(a.hdr.Values("WWW-Authenticate")) != 0 {
				t.Errorf("a 200 with a WWW-Authenticate header: %q", a.hdr.Values("WWW-Authenticate"))
			}
			m := rpcAnswer(t, a.hdr, a.body)
			if got, _ := json.Marshal(m["id"]); string(got) != id {
				t.Errorf("id %s, want %s", got, id)
			}
			res, _ := m["result"].(map[string]any)
			meta, _ := res["_meta"].(map[string]any)
			chs, _ := meta["mcp/www_authenticate"].([]any)
			content, _ := res["content"].([]any)
			if res["isError"] != true || len(chs) != 1 || chs[0] != want || len(content) != 1 {
				t.Errorf("result %v, want isError, one text and _meta.mcp/www_authenticate [%q]", res, want)
			}
		}
		ua := map[string]string{"User-Agent": openAIUA}
		untouched(t, "ChatGPT, anonymous, read_file", func() {
			inResult(t, sendPublic(t, publicReq{body: toolCall("read_file"), hdr: ua}), "1", challenge("", "", "mcp:read"))
		})
		untouched(t, "ChatGPT with a comment in its User-Agent, string id", func() {
			body := `{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"delete_file"}}`
			inResult(t, sendPublic(t, publicReq{body: body, hdr: map[string]string{"User-Agent": openAIUA + " (+https://openai.com/bot)"}}),
				`"call-7"`, challenge("", "", "mcp:read mcp:admin"))
		})
		untouched(t, "ChatGPT accepting only an event stream", func() {
			a := sendPublic(t, publicReq{body: toolCall("read_file"), hdr: map[string]string{"User-Agent": openAIUA, "Accept": "text/event-stream"}})
			if ct := a.hdr.Get("Content-Type"); ct != "text/event-stream" || !bytes.HasPrefix(a.body, []byte("event: message\ndata: ")) {
				t.Errorf("Content-Type %q, body %q: want one SSE message event", ct, a.body)
			}
			inResult(t, a, "1", challenge("", "", "mcp:read"))
		})
		untouched(t, "ChatGPT with a token short of scopes", func() {
			inResult(t, sendPublic(t, publicReq{body: toolCall("delete_file"), auth: read, hdr: ua}), "1",
				challenge("insufficient_scope", descScope, "mcp:read mcp:admin"))
		})
		untouched(t, "ChatGPT, a batch", func() {
			check401(t, sendPublic(t, publicReq{body: `[` + toolCall("read_file") + `]`, hdr: ua}), "mcp:read")
		})
		untouched(t, "ChatGPT, another method", func() {
			check401(t, sendPublic(t, publicReq{body: `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p"}}`, hdr: ua}), "mcp:read")
		})
		untouched(t, "ChatGPT, an invalid token", func() {
			a := sendPublic(t, publicReq{body: toolCall("read_file"), auth: forged, hdr: ua})
			if a.status != http.StatusUnauthorized {
				t.Errorf("status %d, want 401 (an invalid token is no lack of a token)", a.status)
			}
		})
		untouched(t, "another client", func() {
			check401(t, sendPublic(t, publicReq{body: toolCall("read_file"), hdr: map[string]string{"User-Agent": "claude-code/2.1.0"}}), "mcp:read")
		})
		untouched(t, "a User-Agent that only contains the pattern's text", func() {
			check401(t, sendPublic(t, publicReq{body: toolCall("read_file"), hdr: map[string]string{"User-Agent": "x openai-mcp/1.0.0"}}), "mcp:read")
		})
		chatgpt := openSession(t, read, ua)
		if a := sendPublic(t, publicReq{body: toolCall("read_file"), auth: read, hdr: ua, session: chatgpt}); a.status != http.StatusOK || toolText(t, a.hdr, a.body) != "ran read_file" {
			t.Errorf("ChatGPT with a token: status %d, body %s", a.status, a.body)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		// An anonymous session stays usable once the user signs in, and without a token again.
		if a := sendPublic(t, publicReq{body: toolCall("read_file"), auth: read, session: anon}); a.status != http.StatusOK {
			t.Errorf("signed-in call in an anonymous session: status %d, body %s", a.status, a.body)
		}
		if a := sendPublic(t, publicReq{body: toolCall("search"), session: anon}); a.status != http.StatusOK {
			t.Errorf("anonymous call in the same session after sign-in: status %d", a.status)
		}
		if a := sendPublic(t, publicReq{method: http.MethodGet, session: anon}); a.status != http.StatusOK {
			t.Errorf("anonymous GET on an anonymous session: status %d, body %s", a.status, a.body)
		}
		// A session opened with a token is nobody else's.
		signed := openSession(t, read, nil)
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			untouched(t, "anonymous "+m+" on a signed-in session", func() {
				if a := sendPublic(t, publicReq{method: m, session: signed}); a.status != http.StatusNotFound {
					t.Errorf("status %d, want 404", a.status)
				}
			})
		}
		untouched(t, "anonymous public call on a signed-in session", func() {
			if a := sendPublic(t, publicReq{body: toolCall("search"), session: signed}); a.status != http.StatusNotFound {
				t.Errorf("status %d, want 404", a.status)
			}
		})
		untouched(t, "another user's token on a signed-in session", func() {
			otherUser := []string{bearer(f.token(t, "mcp:read", map[string]any{"sub": "user-2"}))}
			if a := sendPublic(t, publicReq{body: toolCall("search"), auth: otherUser, session: signed}); a.status != http.StatusNotFound {
				t.Errorf("status %d, want 404", a.status)
			}
		})
		untouched(t, "a forged anonymous tag", func() {
			sid, _, _ := strings.Cut(anon, ".")
			if a := sendPublic(t, publicReq{body: toolCall("search"), session: sid + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}); a.status != http.StatusNotFound {
				t.Errorf("status %d, want 404", a.status)
			}
		})
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			untouched(t, "anonymous "+m+" without a session", func() {
				a := sendPublic(t, publicReq{method: m})
				if a.status != http.StatusMethodNotAllowed || a.hdr.Get("Allow") != "POST" || len(a.hdr.Values("WWW-Authenticate")) != 0 {
					t.Errorf("status %d, Allow %q, challenge %q: want 405, Allow POST, no challenge", a.status, a.hdr.Get("Allow"), a.hdr.Values("WWW-Authenticate"))
				}
			})
		}
		// DELETE without a token ends the anonymous session.
		if a := sendPublic(t, publicReq{method: http.MethodDelete, session: anon}); a.status/100 != 2 {
			t.Errorf("anonymous DELETE of an anonymous session: status %d, body %s", a.status, a.body)
		}
	})
	_ = admin
}

// TestPublicFilterLists: with filter_lists, an anonymous caller sees the public tools and
// those a plain sign-in unlocks, never those behind further scopes; a signed-in caller still
// loses what its token does not satisfy.
func TestPublicFilterLists(t *testing.T) {
	for _, adapter := range []string{"caddyfile", "json"} {
		t.Run(adapter, func(t *testing.T) {
			f := newFixture(t, newPublicUpstream(t, true))
			name := "Public filter " + adapter
			f.start(t, f.publicConfig(adapter, name, "filter_lists"), adapter, name)
			names := func(auth []string) []string {
				sid := openSession(t, auth, nil)
				top, _, _, scope := listedSchemes(t, sendPublic(t, publicReq{body: toolsListBody, auth: auth, session: sid}))
				if scope != "private" {
					t.Errorf("cacheScope %q", scope)
				}
				var out []string
				for n, s := range top {
					if s != publicSchemes[n] {
						t.Errorf("%s: securitySchemes %s, want %s", n, s, publicSchemes[n])
					}
					out = append(out, n)
				}
				slices.Sort(out)
				return out
			}
			if got, want := names(nil), []string{"docs_page", "read_file", "search"}; !slices.Equal(got, want) {
				t.Errorf("anonymous tools %q, want %q", got, want)
			}
			read := []string{bearer(f.token(t, "mcp:read", nil))}
			if got, want := names(read), []string{"docs_page", "read_file", "search"}; !slices.Equal(got, want) {
				t.Errorf("mcp:read tools %q, want %q", got, want)
			}
			admin := []string{bearer(f.token(t, "mcp:read mcp:admin billing:admin", nil))}
			if got, want := names(admin), []string{"delete_file", "docs_page", "pay_bill", "read_file", "search"}; !slices.Equal(got, want) {
				t.Errorf("admin tools %q, want %q", got, want)
			}
		})
	}
}

// TestWithoutPublic: without public, nothing changes: a request without a token is refused
// whatever it asks, and tools/list answers are not rewritten.
func TestWithoutPublic(t *testing.T) {
	f := newFixture(t, newPublicUpstream(t, true))
	name := "No public"
	f.start(t, f.publicCaddyfile(name, ""), "caddyfile", name)
	for _, body := range []string{initBody, toolsListBody, toolCall("search")} {
		a := sendPublic(t, publicReq{body: body})
		if a.status != http.StatusUnauthorized {
			t.Errorf("%s without a token: status %d, want 401", body, a.status)
		}
		checkChallenge(t, a.hdr, challenge("", "", "mcp:read"))
	}
	read := []string{bearer(f.token(t, "mcp:read", nil))}
	sid := openSession(t, read, nil)
	top, meta, _, scope := listedSchemes(t, sendPublic(t, publicReq{body: toolsListBody, auth: read, session: sid}))
	// The server's own answer: no top-level securitySchemes, its _meta one, its cacheScope.
	if top["read_file"] != "null" || meta["read_file"] != `[{"type":"noauth"}]` || scope != "public" {
		t.Errorf("without public the tools list was rewritten: securitySchemes %s, _meta %s, cacheScope %q", top["read_file"], meta["read_file"], scope)
	}
	if a := sendPublic(t, publicReq{method: http.MethodGet}); a.status != http.StatusUnauthorized {
		t.Errorf("GET without a token and without public: status %d, want 401", a.status)
	}
}

// The subdirectives of public operations, for the adapt tests.
func init() {
	subdirectives["public"] = "public"
	subdirectives["challenge_in_result"] = "challenge_in_result"
}

// TestInResultWithoutPublic: challenge_in_result alone allows nothing without a token and
// keeps today's 401 with the base challenge, which a matched client gets inside a result.
func TestInResultWithoutPublic(t *testing.T) {
	up := newPublicUpstream(t, true)
	f := newFixture(t, up)
	name := "In result alone"
	f.start(t, f.publicCaddyfile(name, "challenge_in_result\n"), "caddyfile", name)
	ua := map[string]string{"User-Agent": openAIUA}
	base := challenge("", "", "mcp:read")
	for _, tool := range []string{"search", "delete_file"} {
		a := sendPublic(t, publicReq{body: toolCall(tool), hdr: ua})
		if a.status != http.StatusOK {
			t.Fatalf("%s: status %d, want 200; body %s", tool, a.status, a.body)
		}
		m := rpcAnswer(t, a.hdr, a.body)
		res, _ := m["result"].(map[string]any)
		meta, _ := res["_meta"].(map[string]any)
		if chs, _ := meta["mcp/www_authenticate"].([]any); len(chs) != 1 || chs[0] != base || res["isError"] != true {
			t.Errorf("%s: result %v, want the base challenge %q", tool, res, base)
		}
	}
	for _, r := range []publicReq{
		{body: toolCall("search")},
		{body: `[` + toolCall("search") + `]`, hdr: ua},
		{body: initBody, hdr: ua},
		{method: http.MethodGet, hdr: ua},
		{body: toolCall("search"), hdr: map[string]string{"User-Agent": openAIUA, "Content-Type": "text/plain"}},
	} {
		a := sendPublic(t, r)
		if a.status != http.StatusUnauthorized {
			t.Errorf("%s %s: status %d, want 401", r.method, r.body, a.status)
			continue
		}
		checkChallenge(t, a.hdr, base)
	}
	if hits, _ := up.state(); hits != 0 {
		t.Errorf("%d requests without a token reached the MCP server", hits)
	}
}

// TestPublicToolsListAnswers: the securitySchemes rewrite reads server answers with every
// guard of the list filter (docs/filter.md): each answer a client reads as the result reaches
// it rewritten, or is refused with 502; what the server said about securitySchemes never
// reaches the client.
func TestPublicToolsListAnswers(t *testing.T) {
	up := newCraftedUpstream(t)
	f := newFixture(t, up)
	f.start(t, f.caddyfile(filterAuth+"public {\ntool read_*\n}"), "caddyfile", "Filter MCP")
	read := []string{bearer(f.token(t, "mcp:read", nil))}

	// The server claims both tools are public, in both places, and in a _meta that is no object.
	const list = `{"jsonrpc":"2.0","id":2,"result":{"tools":[` +
		`{"name":"read_file","securitySchemes":[{"type":"bogus"}],"inputSchema":{"type":"object"},"_meta":null},` +
		`{"securitySchemes":[{"type":"bogus"}],"_meta":{"securitySchemes":[{"type":"bogus"}],"vendor":"kept"},"name":"delete_file","inputSchema":{"type":"object"}}]}}`
	want := map[string]string{"read_file": `[{"type":"noauth"}]`, "delete_file": `[{"scopes":["mcp:read","mcp:admin"],"type":"oauth2"}]`}
	rewritten := []struct {
		what string
		a    crafted
	}{
		{"JSON", crafted{status: 200, ctype: "application/json", body: list}},
		{"JSON with a charset", crafted{status: 200, ctype: "application/json; charset=utf-8", body: list}},
		{"201", crafted{status: 201, ctype: "application/json", body: list}},
		{"SSE", crafted{status: 200, ctype: "text/event-stream", body: "event: message\ndata: " + list + "\n\n"}},
		{"SSE with a BOM", crafted{status: 200, ctype: "text/event-stream", body: "\uFEFFdata: " + list + "\n\n"}},
		{"SSE with CR framing", crafted{status: 200, ctype: "text/event-stream", body: "data: " + list + "\r\r"}},
		{"SSE with the list split over data lines", crafted{status: 200, ctype: "text/event-stream",
			body: "data: " + strings.Replace(list, `"tools":[`, "\"tools\":[\ndata: ", 1) + "\n\n"}},
	}
	for _, auth := range [][]string{nil, read} {
		who := "anonymous"
		if auth != nil {
			who = "signed in"
		}
		const sid = "" // the crafted server keeps no session
		for _, c := range rewritten {
			t.Run(who+"/"+c.what, func(t *testing.T) {
				up.set(c.a, false)
				a := sendPublic(t, publicReq{body: toolsListBody, auth: auth, session: sid})
				if bytes.Contains(a.body, []byte("bogus")) {
					t.Fatalf("the server's securitySchemes reached the client: %s", a.body)
				}
				top, meta, vendor, scope := listedSchemes(t, a)
				for name, w := range want {
					if top[name] != w || meta[name] != w {
						t.Errorf("%s: securitySchemes %s, _meta %s, want %s", name, top[name], meta[name], w)
					}
				}
				if vendor["delete_file"] != "kept" || scope != "private" {
					t.Errorf("_meta.vendor %q, cacheScope %q", vendor["delete_file"], scope)
				}
			})
		}
		for _, c := range []struct {
			what string
			a    crafted
		}{
			{"a content coding", crafted{status: 200, ctype: "application/json", body: list, coding: "br"}},
			{"text/plain with a body", crafted{status: 200, ctype: "text/plain", body: list}},
			{"a case variant of securitySchemes", crafted{status: 200, ctype: "application/json",
				body: strings.Replace(list, `"securitySchemes":[{"type":"bogus"}],"inputSchema"`, `"SecuritySchemes":[{"type":"bogus"}],"inputSchema"`, 1)}},
			{"a case variant of _meta", crafted{status: 200, ctype: "application/json", body: strings.Replace(list, `"_meta":null`, `"_META":null`, 1)}},
			{"a case variant in _meta", crafted{status: 200, ctype: "application/json",
				body: strings.Replace(list, `"_meta":{"securitySchemes"`, `"_meta":{"securityschemes"`, 1)}},
			{"a duplicate key", crafted{status: 200, ctype: "application/json", body: strings.Replace(list, `"_meta":null`, `"_meta":null,"_meta":{}`, 1)}},
			{"not JSON", crafted{status: 200, ctype: "application/json", body: list[:len(list)-3]}},
		} {
			t.Run(who+"/"+c.what, func(t *testing.T) {
				up.set(c.a, false)
				a := sendPublic(t, publicReq{body: toolsListBody, auth: auth, session: sid})
				if a.status != http.StatusBadGateway || bytes.Contains(a.body, []byte("bogus")) {
					t.Errorf("status %d, body %s: want 502", a.status, a.body)
				}
			})
		}
	}
}

// TestPublicAudit: the audit events of anonymous requests say so and name no caller; the
// identity placeholders are empty in Caddy's access log too.
func TestPublicAudit(t *testing.T) {
	f := newFixture(t, newPublicUpstream(t, true))
	audit := newLogSink(t)
	name := "Public audit"
	f.start(t, withGlobal(f.publicCaddyfile(name, publicBlock+"challenge_in_result\naudit\n"),
		"log mcp_audit {\n"+audit.output()+"\nformat json\ninclude http.handlers.mcp_auth.audit\n}"), "caddyfile", name)
	sid := openSession(t, nil, nil)
	if a := sendPublic(t, publicReq{body: toolCall("search"), session: sid}); a.status != http.StatusOK {
		t.Fatalf("search: status %d", a.status)
	}
	if a := sendPublic(t, publicReq{body: toolCall("delete_file"), session: sid}); a.status != http.StatusUnauthorized {
		t.Fatalf("delete_file: status %d", a.status)
	}
	var allow, deny map[string]any
	events := audit.wait(func(events []map[string]any) bool {
		for _, e := range events {
			if e["name"] == "search" && e["decision"] == "allow" {
				allow = e
			}
			if e["name"] == "delete_file" && e["decision"] == "deny" {
				deny = e
			}
		}
		return allow != nil && deny != nil
	})
	for what, e := range map[string]map[string]any{"allow search": allow, "deny delete_file": deny} {
		if e == nil {
			t.Errorf("no audit event for %s in %v", what, events)
			continue
		}
		if e["anonymous"] != true || e["method"] != "tools/call" {
			t.Errorf("%s: %v, want anonymous true and method tools/call", what, e)
		}
		for _, k := range []string{"iss", "sub", "client_id", "token_id"} {
			if _, ok := e[k]; ok {
				t.Errorf("%s: an anonymous event has %s: %v", what, k, e)
			}
		}
	}
	if deny != nil && (deny["status"] != float64(401) || deny["reason"] != "access_denied" || deny["detail"] != "missing_token") {
		t.Errorf("deny event %v, want status 401, detail missing_token", deny)
	}
}
