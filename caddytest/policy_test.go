package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The per-operation policy through a real Caddy in front of a real MCP server built
// on the official Go SDK: Caddy → mcp_auth → reverse_proxy → mcp.StreamableHTTPHandler.

// policyConfig: the base policy needs mcp:read; delete_* tools need mcp:admin too;
// logging/setLevel needs mcp:admin or mcp:ops. Bodies are read up to 64 KiB. In JSON it is
// written as by hand, pinning the field names of the rules.
func policyConfig(f *fixture, format, name string) string {
	if format == "caddyfile" {
		return f.caddyfile(`resource_name "` + name + `"
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
method logging/setLevel {
	any_of mcp:admin mcp:ops
}
filter_tools_list
max_body_size 64KiB`)
	}
	return f.json(map[string]any{
		"resource_name": name,
		"scopes":        []string{"mcp:read"},
		"rules": []any{
			map[string]any{"tools": []string{"delete_*"}, "scopes": []string{"mcp:admin"}},
			map[string]any{"methods": []string{"logging/setLevel"}, "any_of": []string{"mcp:admin", "mcp:ops"}},
		},
		"filter_tools_list": true,
		"max_body_size":     65536,
	})
}

const (
	policyMaxBody  = 64 << 10
	protocolHeader = "2025-06-18"
	descBadMessage = "The request body is not a valid JSON-RPC message."
	descTooLarge   = "The request body is larger than the server accepts."
)

// mcpUpstream is a real MCP server with the tools read_file and delete_file. It records
// every request that reaches it and every tool it runs.
type mcpUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	methods []string // HTTP method of each request received
	bodies  [][]byte // POST bodies, as received
	lengths []int64  // Content-Length of those POSTs
	ran     map[string]int
}

func newMCPUpstream(t *testing.T, jsonResponse bool) *mcpUpstream {
	t.Helper()
	u := &mcpUpstream{ran: map[string]int{}}
	server := mcp.NewServer(&mcp.Implementation{Name: "policy-test", Version: "1.0.0"}, nil)
	type args struct {
		Path string `json:"path"`
	}
	for _, name := range []string{"read_file", "delete_file"} {
		mcp.AddTool(server, &mcp.Tool{Name: name, Description: name},
			func(ctx context.Context, req *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
				u.mu.Lock()
				u.ran[name]++
				u.mu.Unlock()
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " " + in.Path}}}, nil, nil
			})
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		u.mu.Lock()
		u.methods = append(u.methods, r.Method)
		if r.Method == http.MethodPost {
			u.bodies = append(u.bodies, body)
			u.lengths = append(u.lengths, r.ContentLength)
		}
		u.mu.Unlock()
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// snapshot is what the upstream has seen so far.
type snapshot struct {
	requests int
	posts    int
	ran      map[string]int
}

func (u *mcpUpstream) snapshot() snapshot {
	u.mu.Lock()
	defer u.mu.Unlock()
	ran := make(map[string]int, len(u.ran))
	for k, v := range u.ran {
		ran[k] = v
	}
	return snapshot{requests: len(u.methods), posts: len(u.bodies), ran: ran}
}

// postsSince returns the POST bodies and Content-Lengths received since s.
func (u *mcpUpstream) postsSince(s snapshot) ([][]byte, []int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.bodies[s.posts:]), slices.Clone(u.lengths[s.posts:])
}

// checkUntouched asserts the upstream received no request and ran no tool since s.
func (u *mcpUpstream) checkUntouched(t *testing.T, s snapshot, what string) {
	t.Helper()
	now := u.snapshot()
	if now.requests != s.requests || !mapsEqual(now.ran, s.ran) {
		t.Errorf("%s reached the MCP server: requests %d → %d, tools run %v → %v",
			what, s.requests, now.requests, s.ran, now.ran)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (u *mcpUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

// mcpClient talks to Caddy: raw HTTP, and the official SDK client over the same transport.
type mcpClient struct {
	transport *http.Transport
	session   string // Mcp-Session-Id of the raw session, once opened
	mu        sync.Mutex
	ctypes    []string // Content-Type of the answers to the SDK client's POSTs
}

func newMCPClient(t *testing.T) *mcpClient {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &mcpClient{transport: tr}
}

// post sends a JSON-RPC POST to Caddy and returns the answer. chunked hides the length of
// the body so that it is sent with chunked transfer coding. A connection error (the previous
// config's server closing) is retried; an HTTP answer never is.
func (c *mcpClient) post(t *testing.T, token string, body []byte, chunked bool, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	client := &http.Client{Transport: c.transport, Timeout: 30 * time.Second}
	for attempt := 1; ; attempt++ {
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
		req, err := http.NewRequest(http.MethodPost, baseURL+"/mcp", rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", bearer(token))
		}
		if c.session != "" {
			req.Header.Set("Mcp-Session-Id", c.session)
			req.Header.Set("Mcp-Protocol-Version", protocolHeader)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			if attempt == 10 {
				t.Fatalf("POST /mcp: %v", err)
			}
			c.transport.CloseIdleConnections() // try again at once, on a new connection
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("POST /mcp: reading the answer: %v", err)
		}
		return resp.StatusCode, resp.Header, b
	}
}

// open starts a raw MCP session (initialize, then notifications/initialized) for token.
func (c *mcpClient) open(t *testing.T, token string) {
	t.Helper()
	c.session = ""
	code, hdr, body := c.post(t, token, []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
		`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), false, nil)
	if code != http.StatusOK || hdr.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: status %d, Mcp-Session-Id %q, body %q", code, hdr.Get("Mcp-Session-Id"), body)
	}
	c.session = hdr.Get("Mcp-Session-Id")
	if code, _, body := c.post(t, token, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), false, nil); code != http.StatusAccepted {
		t.Fatalf("notifications/initialized: status %d, body %q", code, body)
	}
}

// roundTripper adds the token to every request of the SDK client, and records the
// Content-Type of the answers to its POSTs.
type roundTripper struct {
	c     *mcpClient
	token string
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", bearer(rt.token))
	resp, err := rt.c.transport.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost {
		rt.c.mu.Lock()
		rt.c.ctypes = append(rt.c.ctypes, resp.Header.Get("Content-Type"))
		rt.c.mu.Unlock()
	}
	return resp, err
}

// connect opens a session with the official SDK client, through Caddy.
func (c *mcpClient) connect(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	return mcptest.Connect(t, baseURL+"/mcp", roundTripper{c, token})
}

// rpcAnswer extracts the JSON-RPC response from an answer in either response mode: the
// body itself (application/json), or the first SSE event whose data is a response.
func rpcAnswer(t *testing.T, hdr http.Header, body []byte) map[string]any {
	t.Helper()
	ct := hdr.Get("Content-Type")
	var datas [][]byte
	switch {
	case strings.HasPrefix(ct, "application/json"):
		datas = [][]byte{body}
	case strings.HasPrefix(ct, "text/event-stream"):
		// As a client reads it (WHATWG HTML, "Server-sent events"): lines end at CRLF, LF or
		// CR, and an event's data lines are joined with LF.
		norm := strings.ReplaceAll(strings.ReplaceAll(strings.TrimPrefix(string(body), "\uFEFF"), "\r\n", "\n"), "\r", "\n")
		var event []string
		for line := range strings.SplitSeq(norm+"\n", "\n") {
			if line == "" {
				if len(event) > 0 {
					datas = append(datas, []byte(strings.Join(event, "\n")))
				}
				event = nil
			} else if d, ok := strings.CutPrefix(line, "data:"); ok {
				event = append(event, strings.TrimPrefix(d, " "))
			}
		}
	default:
		t.Fatalf("answer Content-Type %q, body %q", ct, body)
	}
	for _, d := range datas {
		var m map[string]any
		if err := json.Unmarshal(d, &m); err == nil {
			if _, ok := m["id"]; ok {
				return m
			}
		}
	}
	t.Fatalf("no JSON-RPC response in %q", body)
	return nil
}

// toolText is the text of a tools/call result.
func toolText(t *testing.T, hdr http.Header, body []byte) string {
	t.Helper()
	m := rpcAnswer(t, hdr, body)
	res, _ := m["result"].(map[string]any)
	content, _ := res["content"].([]any)
	if len(content) != 1 {
		t.Fatalf("tools/call answer %v", m)
	}
	text, _ := content[0].(map[string]any)["text"].(string)
	return text
}

// toolsCallOfSize is a tools/call of name whose JSON is exactly size bytes long.
func toolsCallOfSize(t *testing.T, name string, size int) []byte {
	t.Helper()
	head := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"` + name + `","arguments":{"path":"`
	tail := `"}}}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("size %d too small", size)
	}
	return []byte(head + strings.Repeat("x", pad) + tail)
}

// TestPolicyThroughCaddy runs the per-operation policy through a real Caddy (configured by
// Caddyfile and by JSON) in front of a real go-sdk MCP server answering with JSON and with
// SSE.
func TestPolicyThroughCaddy(t *testing.T) {
	key := jwttest.New(t, "policy-1", "RS256")
	jwks := newJWKSServer(t, key)
	token := func(scope string) string { return key.Token(t, claims(resource, scope), nil) }
	forbidden := challenge("insufficient_scope", descScope, "mcp:read mcp:admin")
	badMessage := challenge("invalid_request", descBadMessage, "mcp:read")

	for _, format := range []string{"caddyfile", "json"} {
		for _, mode := range []string{"json", "sse"} {
			t.Run(format+"/"+mode, func(t *testing.T) {
				up := newMCPUpstream(t, mode == "json")
				name := "Policy MCP " + format + " " + mode
				f := &fixture{key: key, jwks: jwks, up: up}
				// The metadata document names this config: once it is served, so are the rules.
				tc := f.start(t, policyConfig(f, format, name), format, name)
				wantCT := "text/event-stream"
				if mode == "json" {
					wantCT = "application/json"
				}

				t.Run("metadata lists the rules' scopes", func(t *testing.T) {
					_, _, body := request(t, tc, http.MethodGet, prmPath, "")
					var doc struct {
						ScopesSupported []string `json:"scopes_supported"`
					}
					if err := json.Unmarshal([]byte(body), &doc); err != nil {
						t.Fatalf("document %q: %v", body, err)
					}
					if want := []string{"mcp:read", "mcp:admin", "mcp:ops"}; !slices.Equal(doc.ScopesSupported, want) {
						t.Errorf("scopes_supported = %q, want %q", doc.ScopesSupported, want)
					}
				})

				t.Run("base scope: SDK client sees and calls only the allowed tool", func(t *testing.T) {
					c := newMCPClient(t)
					cs := c.connect(t, token("mcp:read"))
					if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"read_file"}) {
						t.Errorf("tools/list = %v, want [read_file]", got)
					}
					before := up.snapshot()
					if text, err := mcptest.CallText(t, cs, "read_file"); err != nil || text != "read_file /x" {
						t.Errorf("read_file: %q, %v", text, err)
					}
					if _, err := mcptest.CallText(t, cs, "delete_file"); err == nil {
						t.Error("delete_file called with mcp:read only")
					}
					after := up.snapshot()
					if after.ran["read_file"] != before.ran["read_file"]+1 || after.ran["delete_file"] != 0 {
						t.Errorf("tools run %v → %v, want read_file once and delete_file never", before.ran, after.ran)
					}
					c.mu.Lock()
					defer c.mu.Unlock()
					if !slices.ContainsFunc(c.ctypes, func(ct string) bool { return strings.HasPrefix(ct, wantCT) }) {
						t.Errorf("SDK client's POST answers %q, none %s: the server is not in %s mode", c.ctypes, wantCT, mode)
					}
				})

				t.Run("base scope: filtered tools/list on the wire", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					code, hdr, body := c.post(t, token("mcp:read"), []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), false, nil)
					if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), wantCT) {
						t.Fatalf("tools/list: status %d, Content-Type %q, want 200 %s", code, hdr.Get("Content-Type"), wantCT)
					}
					if cl := hdr.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
						t.Errorf("Content-Length %s for a %d-byte body", cl, len(body))
					}
					if mode == "sse" && hdr.Get("Content-Length") != "" {
						t.Errorf("SSE answer has Content-Length %q", hdr.Get("Content-Length"))
					}
					res, _ := rpcAnswer(t, hdr, body)["result"].(map[string]any)
					tools, _ := res["tools"].([]any)
					var names []string
					for _, tool := range tools {
						n, _ := tool.(map[string]any)["name"].(string)
						names = append(names, n)
					}
					if !slices.Equal(names, []string{"read_file"}) {
						t.Errorf("tools/list on the wire = %v, want [read_file]", names)
					}
				})

				t.Run("base scope: forbidden call gets 403 step-up and never reaches the server", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					before := up.snapshot()
					code, hdr, body := c.post(t, token("mcp:read"),
						[]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`), false, nil)
					if code != http.StatusForbidden {
						t.Fatalf("status %d, body %q; want 403", code, body)
					}
					checkChallenge(t, hdr, forbidden)
					checkErrorBody(t, string(body), "insufficient_scope", descScope)
					up.checkUntouched(t, before, "a denied tools/call")
				})

				t.Run("both scopes: SDK client sees and calls both tools", func(t *testing.T) {
					c := newMCPClient(t)
					cs := c.connect(t, token("mcp:read mcp:admin"))
					if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"delete_file", "read_file"}) {
						t.Errorf("tools/list = %v, want both", got)
					}
					for _, tool := range []string{"read_file", "delete_file"} {
						if text, err := mcptest.CallText(t, cs, tool); err != nil || text != tool+" /x" {
							t.Errorf("%s: %q, %v", tool, text, err)
						}
					}
				})

				t.Run("any_of rule on a method", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					setLevel := []byte(`{"jsonrpc":"2.0","id":4,"method":"logging/setLevel","params":{"level":"info"}}`)
					before := up.snapshot()
					code, hdr, _ := c.post(t, token("mcp:read"), setLevel, false, nil)
					if code != http.StatusForbidden {
						t.Fatalf("logging/setLevel with mcp:read: status %d, want 403", code)
					}
					checkChallenge(t, hdr, forbidden) // the first any_of alternative is named
					up.checkUntouched(t, before, "a denied logging/setLevel")

					code, _, body := c.post(t, token("mcp:read mcp:ops"), setLevel, false, nil)
					got, _ := up.postsSince(before)
					if code != http.StatusOK || len(got) != 1 || !bytes.Equal(got[0], setLevel) {
						t.Errorf("logging/setLevel with mcp:ops: status %d, body %q, upstream got %q; want it passed on", code, body, got)
					}
				})

				t.Run("oversized body: 413, and 401 first without a token", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					over := toolsCallOfSize(t, "read_file", policyMaxBody+1)
					before := up.snapshot()
					for _, chunked := range []bool{false, true} {
						code, hdr, body := c.post(t, token("mcp:read"), over, chunked, nil)
						if code != http.StatusRequestEntityTooLarge {
							t.Errorf("chunked=%v: status %d, want 413", chunked, code)
						}
						if v := hdr.Values("WWW-Authenticate"); len(v) != 0 {
							t.Errorf("chunked=%v: 413 carries a challenge %q", chunked, v)
						}
						checkErrorBody(t, string(body), "invalid_request", descTooLarge)

						code, hdr, _ = c.post(t, "", over, chunked, nil)
						if code != http.StatusUnauthorized {
							t.Errorf("chunked=%v, no token: status %d, want 401", chunked, code)
						}
						checkChallenge(t, hdr, challenge("", "", "mcp:read"))
					}
					up.checkUntouched(t, before, "an oversized or unauthenticated body")

					// Exactly max_body_size passes, whole.
					exact := toolsCallOfSize(t, "read_file", policyMaxBody)
					code, hdr, body := c.post(t, token("mcp:read"), exact, false, nil)
					got, _ := up.postsSince(before)
					if code != http.StatusOK || len(got) != 1 || !bytes.Equal(got[0], exact) {
						t.Fatalf("a body of exactly %d bytes: status %d, upstream got %d bodies", policyMaxBody, code, len(got))
					}
					if text := toolText(t, hdr, body); !strings.HasPrefix(text, "read_file xxx") {
						t.Errorf("answer %q", text)
					}
				})

				t.Run("upstream receives the body byte for byte", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					// Whitespace, escapes and a trailing CRLF: nothing of it may be normalised.
					sent := []byte(" {\"jsonrpc\" : \"2.0\",\"id\":7,\"method\":\"tools/c\\u0061ll\",\n" +
						"\t\"params\":{\"name\":\"read_\\u0066ile\",\"arguments\":{\"path\":\"\\u00e9\\/\u00e9\"}}}\r\n")
					for _, chunked := range []bool{false, true} {
						before := up.snapshot()
						code, hdr, body := c.post(t, token("mcp:read"), sent, chunked, nil)
						got, lengths := up.postsSince(before)
						if code != http.StatusOK || len(got) != 1 {
							t.Fatalf("chunked=%v: status %d, upstream got %d bodies", chunked, code, len(got))
						}
						if !bytes.Equal(got[0], sent) {
							t.Errorf("chunked=%v: upstream got\n %q\nsent\n %q", chunked, got[0], sent)
						}
						if lengths[0] != int64(len(sent)) {
							t.Errorf("chunked=%v: upstream Content-Length %d, want %d", chunked, lengths[0], len(sent))
						}
						if text := toolText(t, hdr, body); text != "read_file é/é" {
							t.Errorf("chunked=%v: server answered %q", chunked, text)
						}
					}
				})

				t.Run("parser differentials never reach the server as another tool", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					before := up.snapshot()
					for _, body := range []string{
						// Duplicate keys, plain and escaped: parsers disagree on which one counts.
						`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","name":"delete_file"}}`,
						`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","n\u0061me":"delete_file"}}`,
						`{"jsonrpc":"2.0","id":5,"method":"tools/list","method":"tools/call","params":{"name":"delete_file"}}`,
						// Invalid UTF-8 and a BOM.
						"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_file\xff\"}}",
						"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_file\"}}",
						// Case variants: "Name" is "name" to encoding/json, another key to a
						// case-sensitive server. Refused, whatever the server behind.
						`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"Name":"delete_file"}}`,
						`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"read_file","Name":"delete_file","arguments":{"path":"/y"}}}`,
						`{"jsonrpc":"2.0","id":7,"Method":"tools/call","Params":{"Name":"delete_file"}}`,
					} {
						code, hdr, resp := c.post(t, token("mcp:read"), []byte(body), false, nil)
						if code != http.StatusBadRequest {
							t.Errorf("%q: status %d, want 400", body, code)
							continue
						}
						checkChallenge(t, hdr, badMessage)
						checkErrorBody(t, string(resp), "invalid_request", descBadMessage)
					}
					up.checkUntouched(t, before, "a refused body")

				})

				t.Run("GET and DELETE are judged by the base policy only", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token("mcp:read"))
					send := func(method, tok string) (int, http.Header) {
						t.Helper()
						req, err := http.NewRequest(method, baseURL+"/mcp", nil)
						if err != nil {
							t.Fatal(err)
						}
						req.Header.Set("Authorization", bearer(tok))
						req.Header.Set("Accept", "text/event-stream")
						req.Header.Set("Mcp-Session-Id", c.session)
						req.Header.Set("Mcp-Protocol-Version", protocolHeader)
						ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
						defer cancel()
						resp, err := (&http.Client{Transport: c.transport}).Do(req.WithContext(ctx))
						if err != nil {
							t.Fatalf("%s: %v", method, err)
						}
						// A GET that opened the stream stays open: only the head is needed.
						resp.Body.Close()
						return resp.StatusCode, resp.Header
					}

					// Without the base scope, mcp:admin does not help: 403 naming mcp:read only.
					before := up.snapshot()
					for _, m := range []string{http.MethodGet, http.MethodDelete} {
						code, hdr := send(m, token("mcp:admin"))
						if code != http.StatusForbidden {
							t.Errorf("%s with mcp:admin only: status %d, want 403", m, code)
						}
						checkChallenge(t, hdr, challenge("insufficient_scope", descScope, "mcp:read"))
					}
					up.checkUntouched(t, before, "GET/DELETE without the base scope")

					// With the base scope, the stream opens and the session ends at the server.
					code, hdr := send(http.MethodGet, token("mcp:read"))
					if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") {
						t.Errorf("GET with mcp:read: status %d, Content-Type %q; want the SSE stream", code, hdr.Get("Content-Type"))
					}
					code, _ = send(http.MethodDelete, token("mcp:read"))
					if code != http.StatusNoContent && code != http.StatusOK {
						t.Errorf("DELETE with mcp:read: status %d, want the server's 2xx", code)
					}
					up.mu.Lock()
					methods := slices.Clone(up.methods[before.requests:])
					up.mu.Unlock()
					if !slices.Equal(methods, []string{http.MethodGet, http.MethodDelete}) {
						t.Errorf("server received %v, want [GET DELETE]", methods)
					}
				})
			})
		}
	}
}
