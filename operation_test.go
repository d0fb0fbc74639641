package mcpauth

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpStack is a real MCP server (the official Go SDK) behind the handler, behind an
// httptest front: client → front → mcp_auth → reverse proxy → SDK server.
type mcpStack struct {
	front    *httptest.Server
	key      *testKey
	issuer   string
	resource string
	mu       sync.Mutex
	bodies   [][]byte // POST bodies as the MCP server received them
	lengths  []int64
	upstream int      // requests that reached the MCP server
	ctypes   []string // Content-Type of the answers the SDK client got to its POSTs
}

func newMCPStack(t *testing.T, jsonResponse bool) *mcpStack {
	t.Helper()
	st := &mcpStack{key: newRSAKey(t, "k1"), issuer: "https://auth.example.com"}
	jwks := newJWKSServer(t, st.key)

	server := mcp.NewServer(&mcp.Implementation{Name: "test", Version: "1.0.0"}, nil)
	type args struct {
		Path string `json:"path"`
	}
	for _, name := range []string{"read_file", "delete_file"} {
		mcp.AddTool(server, &mcp.Tool{Name: name, Description: name}, func(ctx context.Context, req *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " " + in.Path}}}, nil, nil
		})
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		st.upstream++
		st.mu.Unlock()
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			st.mu.Lock()
			st.bodies = append(st.bodies, b)
			st.lengths = append(st.lengths, r.ContentLength)
			st.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	target, _ := url.Parse(upstream.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)

	var h *Handler
	st.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caddyhttp.NewTestReplacer(r)
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			proxy.ServeHTTP(w, r)
			return nil
		})
		if err := h.ServeHTTP(w, r, next); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(st.front.Close)
	st.resource = st.front.URL + "/mcp"
	h = &Handler{
		Resource:             st.resource,
		AuthorizationServers: []string{st.issuer},
		JWKSURLs:             []string{jwks.URL},
		Scopes:               []string{"mcp:read"},
		Rules:                []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}},
		FilterToolsList:      true,
		MaxBodySize:          64 << 10,
	}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	return st
}

func (st *mcpStack) token(t *testing.T, scope string) string {
	t.Helper()
	return st.key.sign(t, testClaims(st.issuer, st.resource, scope), nil)
}

// bearerTransport adds the token, and records the Content-Type of POST answers.
type bearerTransport struct {
	token string
	st    *mcpStack
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.Method == http.MethodPost {
		b.st.mu.Lock()
		b.st.ctypes = append(b.st.ctypes, resp.Header.Get("Content-Type"))
		b.st.mu.Unlock()
	}
	return resp, err
}

// connect opens an MCP client session through the handler, with the official SDK client.
func (st *mcpStack) connect(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	return mcptest.Connect(t, st.resource, bearerTransport{token, st})
}

// post sends a raw JSON-RPC POST through the stack.
func (st *mcpStack) post(t *testing.T, token string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.resource, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestPolicyThroughMCPServer(t *testing.T) {
	for _, mode := range []struct {
		name string
		json bool
	}{{"json", true}, {"sse", false}} {
		t.Run(mode.name, func(t *testing.T) {
			st := newMCPStack(t, mode.json)
			metaURL := strings.Replace(st.resource, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1)

			t.Run("base scope lists and calls only the allowed tool", func(t *testing.T) {
				cs := st.connect(t, st.token(t, "mcp:read"))
				if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"read_file"}) {
					t.Fatalf("tools/list = %v", got)
				}
				if txt, err := mcptest.CallText(t, cs, "read_file"); err != nil || txt != "read_file /x" {
					t.Fatalf("read_file: %q %v", txt, err)
				}
				if _, err := mcptest.CallText(t, cs, "delete_file"); err == nil {
					t.Fatal("delete_file called with mcp:read only")
				}
				// The filtered answers came in the mode the server was set to.
				want := "text/event-stream"
				if mode.json {
					want = "application/json"
				}
				st.mu.Lock()
				defer st.mu.Unlock()
				if !slices.Contains(st.ctypes, want) {
					t.Fatalf("answers %v, none %s", st.ctypes, want)
				}
			})

			t.Run("forbidden tool gets a step-up challenge", func(t *testing.T) {
				before := st.upstreamCount()
				resp := st.post(t, st.token(t, "mcp:read"),
					[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`), nil)
				want := `Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read mcp:admin", resource_metadata="` + metaURL + `"`
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != want {
					t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
				if st.upstreamCount() != before {
					t.Fatal("a denied call reached the MCP server")
				}
			})

			t.Run("both scopes list and call both tools", func(t *testing.T) {
				cs := st.connect(t, st.token(t, "mcp:read mcp:admin"))
				if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"delete_file", "read_file"}) {
					t.Fatalf("tools/list = %v", got)
				}
				for _, name := range []string{"read_file", "delete_file"} {
					if txt, err := mcptest.CallText(t, cs, name); err != nil || txt != name+" /x" {
						t.Fatalf("%s: %q %v", name, txt, err)
					}
				}
			})

			t.Run("oversized body gets 413 without a challenge", func(t *testing.T) {
				body := toolsCallBody(t, "read_file", 64<<10+1)
				resp := st.post(t, st.token(t, "mcp:read"), body, nil)
				if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("WWW-Authenticate") != "" {
					t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
				if b, _ := io.ReadAll(resp.Body); !bytes.Contains(b, []byte(`"error":"invalid_request"`)) {
					t.Fatalf("body %s", b)
				}
			})

			t.Run("unauthenticated gets 401 before the body is read", func(t *testing.T) {
				resp := st.post(t, "", toolsCallBody(t, "read_file", 64<<10+1), nil)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("got %d", resp.StatusCode)
				}
			})

			t.Run("upstream receives the body byte for byte", func(t *testing.T) {
				body := []byte(" {\"jsonrpc\" : \"2.0\",\"id\":7,\"method\":\"tools/c\\u0061ll\",\n\"params\":{\"name\":\"read_\\u0066ile\",\"arguments\":{\"path\":\"\\u00e9\"}}}\r\n")
				for _, chunked := range []bool{false, true} {
					st.mu.Lock()
					n := len(st.bodies)
					st.mu.Unlock()
					var rd io.Reader = bytes.NewReader(body)
					if chunked {
						rd = io.MultiReader(rd) // hides the length: sent chunked
					}
					req, _ := http.NewRequest(http.MethodPost, st.resource, rd)
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					req.Header.Set("Authorization", "Bearer "+st.token(t, "mcp:read"))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					st.mu.Lock()
					if len(st.bodies) != n+1 {
						st.mu.Unlock()
						t.Fatalf("chunked=%v: status %d, upstream got no body", chunked, resp.StatusCode)
					}
					got, length := st.bodies[n], st.lengths[n]
					st.mu.Unlock()
					if !bytes.Equal(got, body) || length != int64(len(body)) {
						t.Fatalf("chunked=%v: upstream got %q (Content-Length %d)", chunked, got, length)
					}
				}
			})

			t.Run("parser differentials are refused before the server", func(t *testing.T) {
				before := st.upstreamCount()
				for _, body := range []string{
					`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"delete_file"}}`,
					`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/call","params":{"name":"delete_file"}}`,
					"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_file\xff\"}}",
					"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_file\"}}",
				} {
					resp := st.post(t, st.token(t, "mcp:read"), []byte(body), nil)
					if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
						t.Fatalf("%q: got %d %q", body, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
					}
				}
				// "Name" beside "name" means "name" to a case-sensitive server and "Name" to
				// encoding/json: refused, whichever server is behind.
				resp := st.post(t, st.token(t, "mcp:read"),
					[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"delete_file","name":"read_file"}}`), nil)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
					t.Fatalf("case variant: got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
				if st.upstreamCount() != before {
					t.Fatal("refused requests reached the server")
				}
			})

			t.Run("batch with a forbidden call is refused whole", func(t *testing.T) {
				resp := st.post(t, st.token(t, "mcp:read"), []byte(`[`+
					`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}},`+
					`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}}]`), nil)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="mcp:read mcp:admin"`) {
					t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
			})

			t.Run("Mcp-Name header must match the body", func(t *testing.T) {
				resp := st.post(t, st.token(t, "mcp:read"),
					[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}`),
					map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "read_file"})
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("got %d", resp.StatusCode)
				}
			})

			t.Run("non-JSON POST is refused", func(t *testing.T) {
				resp := st.post(t, st.token(t, "mcp:read"), []byte(`{}`), map[string]string{"Content-Type": "text/plain"})
				if resp.StatusCode != http.StatusUnsupportedMediaType || resp.Header.Get("WWW-Authenticate") != "" {
					t.Fatalf("got %d", resp.StatusCode)
				}
			})

			t.Run("GET and DELETE are judged by the base policy", func(t *testing.T) {
				for _, m := range []string{http.MethodGet, http.MethodDelete} {
					req, _ := http.NewRequest(m, st.resource, nil)
					req.Header.Set("Authorization", "Bearer "+st.token(t, "mcp:admin"))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="mcp:read"`) {
						t.Fatalf("%s: got %d %q", m, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
					}
				}
			})
		})
	}
}

func (st *mcpStack) upstreamCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.upstream
}

// TestFilterAppliesToResumedStreams: a GET that resumes a stream (Last-Event-ID) replays the
// events of an earlier POST, a tools/list result among them; the filter must apply there too.
func TestFilterAppliesToResumedStreams(t *testing.T) {
	k := newRSAKey(t, "k1")
	js := newJWKSServer(t, k)
	h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer},
		JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}, FilterToolsList: true,
		Rules: []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}}}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)

	const replay = "id: 1_0\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"read_file\"},{\"name\":\"delete_file\"}]}}\n\n"
	r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+k.sign(t, testClaims(testIssuer, testResource, "mcp:read"), nil))
	r.Header.Set("Last-Event-ID", "1_0")
	caddyhttp.NewTestReplacer(r)
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, err := io.WriteString(w, replay)
		w.(http.Flusher).Flush()
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	body := w.Body.String()
	if !strings.Contains(body, "read_file") || strings.Contains(body, "delete_file") {
		t.Fatalf("replayed tools/list not filtered: %q", body)
	}
}
