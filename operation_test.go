package mcpauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpStack is a real MCP server (the official Go SDK) behind the handler, behind an
// httptest front: client → front → mcp_auth → reverse proxy → SDK server.
type mcpStack struct {
	front    *httptest.Server
	key      *jwttest.Key
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
	st := &mcpStack{key: jwttest.New(t, "k1", "RS256"), issuer: "https://auth.example.com"}
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
	return st.key.Token(t, testClaims(st.issuer, st.resource, scope), nil)
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
	k := jwttest.New(t, "k1", "RS256")
	js := newJWKSServer(t, k)
	h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer},
		JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}, FilterToolsList: true,
		Rules: []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}}}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)

	const replay = "id: 1_0\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"read_file\"},{\"name\":\"delete_file\"}]}}\n\n"
	r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+k.Token(t, testClaims(testIssuer, testResource, "mcp:read"), nil))
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

func TestIsUTF8JSON(t *testing.T) {
	accept := []string{
		"application/json",
		"Application/JSON",
		" application/json\t",
		"application/json; charset=utf-8",
		"application/json;charset=UTF-8",
		`application/json; charset="utf-8"`,
		`application/json; charset="Utf-8"`,
		"application/json ; charset=utf-8",
		"application/json;\tcharset=utf-8",
		"application/json; foo=bar",
		`application/json; foo="a;b\"c\\d"; charset=utf-8`,
		"application/json; a=1; b=1; c=1; d=1; e=1; f=1; g=1; charset=utf-8",
	}
	refuse := []string{
		"",
		"text/json",
		"text/plain",
		"application/vnd.api+json",
		"application/jsonx",
		"application/json-seq",
		"application/json, text/plain",
		"application/json,application/json",
		"application/json/x",
		"application/",
		"/json",
		"application/json x",
		// Charsets other than UTF-8, in every spelling.
		"application/json; charset=utf-7",
		"application/json;charset=UTF-7",
		`application/json; charset="utf-7"`,
		`application/json; charset="UTF-16"`,
		"application/json; charset=utf-16le",
		"application/json; charset=utf-32",
		"application/json; charset=latin1",
		"application/json; charset=utf8",
		"application/json ; charset=utf-7",
		"application/json;   charset=utf-7",
		"application/json; CHARSET=utf-7",
		// Repeated or ambiguous charsets.
		"application/json; charset=utf-8; charset=utf-8",
		"application/json; charset=utf-8; charset=utf-7",
		"application/json; charset=utf-7; charset=utf-8",
		"application/json; charset*=utf-8'en'utf-7",
		"application/json; charset*0=utf-7",
		"application/json; charset=utf-8; charset*=utf-8'en'utf-7",
		`application/json; charset="utf\-8"`,
		`application/json; a="";a="b"`,
		"application/json; A=1; a=1",
		"application/json; a=1; b=1; c=1; d=1; e=1; f=1; g=1; h=1; i=1",
		// Malformed parameter lists.
		"application/json;",
		"application/json; ",
		"application/json;;charset=utf-8",
		"application/json; charset",
		"application/json; charset=",
		"application/json; charset = utf-8",
		"application/json; charset= utf-8",
		"application/json; charset =utf-8",
		`application/json; charset="utf-8`,
		`application/json; charset="utf-8"x`,
		"application/json; charset=utf-8 x",
		"application/json; charset=utf-8,text/plain",
		"application/json; =utf-8",
		"application/json; charset=utf-8\x00",
		"application/json; foo=\"\x01\"",
		"application/json; foo=b\xc3\xa4r",
	}
	for _, ct := range accept {
		if !isUTF8JSON([]string{ct}) {
			t.Errorf("%q refused", ct)
		}
		checkAgreesWithMime(t, ct)
	}
	for _, ct := range refuse {
		if isUTF8JSON([]string{ct}) {
			t.Errorf("%q accepted", ct)
		}
	}
	for _, vals := range [][]string{nil, {}, {"application/json", "application/json"}, {"application/json", "text/plain"}} {
		if isUTF8JSON(vals) {
			t.Errorf("%q accepted", vals)
		}
	}
}

// checkAgreesWithMime: whatever isUTF8JSON accepts, Go's own RFC 2045 parser also reads as
// application/json in UTF-8 (or without charset).
func checkAgreesWithMime(t *testing.T, ct string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		t.Errorf("%q accepted, but mime.ParseMediaType reads %q %v %v", ct, mt, params, err)
	}
}

func FuzzIsUTF8JSON(f *testing.F) {
	for _, s := range []string{"application/json; charset=utf-8", `application/json; a="\"" ; charset="utf-8"`, "application/json; charset=utf-7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		if isUTF8JSON([]string{ct}) {
			checkAgreesWithMime(t, ct)
		}
	})
}

func TestHasMethodOverride(t *testing.T) {
	for _, name := range []string{"X-HTTP-Method-Override", "X-Http-Method", "X-Method-Override",
		"x-http-method-override", "X_HTTP_METHOD_OVERRIDE", "x_method_override", "X-HTTP_Method"} {
		hdr := http.Header{"Content-Type": {"application/json"}}
		hdr[name] = []string{"POST"} // as received: a name with '_' is not canonicalised
		if !hasMethodOverride(hdr) {
			t.Errorf("%s not seen", name)
		}
	}
	for _, name := range []string{"X-HTTP-Method-Overrides", "X-Method", "Method", "X-HTTP-Method-Overrid"} {
		if hasMethodOverride(http.Header{name: {"POST"}}) {
			t.Errorf("%s taken for a method override", name)
		}
	}
}

func TestRequestHasBody(t *testing.T) {
	cases := []struct {
		name string
		req  func() *http.Request
		want bool
	}{
		{"no body", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/mcp", nil) }, false},
		{"Content-Length 0", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/mcp", strings.NewReader("")) }, false},
		{"Content-Length 3", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/mcp", strings.NewReader("abc")) }, true},
		{"chunked, empty", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/mcp", strings.NewReader(""))
			r.ContentLength, r.TransferEncoding = -1, []string{"chunked"}
			return r
		}, true},
		{"unknown length, empty", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/mcp", io.MultiReader()) }, false},
		{"unknown length, data", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/mcp", io.MultiReader(strings.NewReader("abc")))
		}, true},
		{"unknown length, read error", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/mcp", iotest.ErrReader(errors.New("reset")))
		}, true},
	}
	for _, tc := range cases {
		r := tc.req()
		if got := requestHasBody(r); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if !tc.want && r.ContentLength != 0 {
			t.Errorf("%s: ContentLength %d after an empty body", tc.name, r.ContentLength)
		}
	}
	// A byte read to look is put back: the next handler reads the body whole.
	r := httptest.NewRequest(http.MethodOptions, "/mcp", io.MultiReader(strings.NewReader("abc")))
	if !requestHasBody(r) {
		t.Fatal("body not seen")
	}
	if b, err := io.ReadAll(r.Body); err != nil || string(b) != "abc" {
		t.Fatalf("body after the look: %q %v", b, err)
	}
}

// TestUnjudgeableRequests: with rules on, a request whose body the server could read
// otherwise than the handler does never reaches next.
func TestUnjudgeableRequests(t *testing.T) {
	k := jwttest.New(t, "k1", "RS256")
	h := newTestHandler(t, newJWKSServer(t, k), func(h *Handler) {
		h.Rules = []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}}
	})
	plain := newTestHandler(t, newJWKSServer(t, k), nil)
	read := "Bearer " + k.Token(t, testClaims(testIssuer, testResource, "mcp:read"), nil)
	none := "Bearer " + k.Token(t, testClaims(testIssuer, testResource, "other"), nil)
	const utf7 = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"+AGQ-elete+AF8-file"}}`
	const readFile = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`

	type bodyKind int
	const (
		sized bodyKind = iota
		chunked
		unknown // HTTP/2 or HTTP/3 without Content-Length
	)
	req := func(method, body string, kind bodyKind, auth string, hdr ...string) *http.Request {
		var rd io.Reader
		if body != "" || kind != sized {
			rd = strings.NewReader(body)
			if kind != sized {
				rd = io.MultiReader(rd)
			}
		}
		r := httptest.NewRequest(method, "/mcp", rd)
		if kind == chunked {
			r.TransferEncoding = []string{"chunked"}
		}
		r.Header.Set("Authorization", auth)
		if method == http.MethodPost {
			r.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i+1] == "" {
				r.Header.Del(hdr[i])
			} else {
				r.Header[hdr[i]] = append(r.Header[hdr[i]], hdr[i+1])
			}
		}
		return r
	}
	const (
		descNoBody   = "Only POST requests may carry a body."
		descOverride = "Method override headers are not accepted."
		descMedia    = "The request body must be UTF-8 application/json without content coding."
		descUpgrade  = "Connection upgrades are not accepted."
	)
	type result struct {
		status int
		desc   string // "" for a request passed on
	}
	type tcase struct {
		name string
		h    *Handler
		r    *http.Request
		want result
	}
	cases := []tcase{
		{"POST tools/call passes", h, req(http.MethodPost, readFile, sized, read), result{200, ""}},
		{"POST with charset utf-8 passes", h, req(http.MethodPost, readFile, sized, read, "Content-Type", "", "Content-Type", `application/json; charset="UTF-8"`), result{200, ""}},
		{"GET without body passes", h, req(http.MethodGet, "", sized, read), result{200, ""}},
		{"GET of unknown length, empty, passes", h, req(http.MethodGet, "", unknown, read), result{200, ""}},
		{"DELETE without body passes", h, req(http.MethodDelete, "", sized, read), result{200, ""}},
		{"without rules a PUT body is not judged", plain, req(http.MethodPut, toolsCall, sized, read), result{200, ""}},
		{"without rules an override is not judged", plain, req(http.MethodGet, "", sized, read, "X-Http-Method-Override", "POST"), result{200, ""}},
		{"without rules a UTF-7 POST is not judged", plain, req(http.MethodPost, utf7, sized, read, "Content-Type", "", "Content-Type", "application/json; charset=utf-7"), result{200, ""}},
	}
	for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodGet, http.MethodDelete, http.MethodOptions, http.MethodHead} {
		for kind, kn := range []string{"Content-Length", "chunked", "unknown length"} {
			cases = append(cases, tcase{m + " with a tools/call body, " + kn, h, req(m, toolsCall, bodyKind(kind), read), result{400, descNoBody}})
		}
		cases = append(cases, tcase{m + " with a body and X-HTTP-Method-Override: POST", h, req(m, toolsCall, sized, read, "X-Http-Method-Override", "POST"), result{400, descOverride}})
	}
	cases = append(cases, []tcase{
		{"chunked GET with an empty body", h, req(http.MethodGet, "", chunked, read), result{400, descNoBody}},
		{"without the base scope: 403 first", h, req(http.MethodPut, toolsCall, sized, none), result{403, descScope}},
		{"POST with X-HTTP-Method-Override: POST", h, req(http.MethodPost, readFile, sized, read, "X-Http-Method-Override", "POST"), result{400, descOverride}},
		{"POST with X-HTTP-Method: DELETE", h, req(http.MethodPost, readFile, sized, read, "X-Http-Method", "DELETE"), result{400, descOverride}},
		{"GET with X-Method-Override: POST", h, req(http.MethodGet, "", sized, read, "X-Method-Override", "POST"), result{400, descOverride}},
		{"POST with X_HTTP_METHOD_OVERRIDE", h, req(http.MethodPost, readFile, sized, read, "X_HTTP_METHOD_OVERRIDE", "PUT"), result{400, descOverride}},
		{"POST charset utf-7", h, req(http.MethodPost, utf7, sized, read, "Content-Type", "", "Content-Type", "application/json; charset=utf-7"), result{415, descMedia}},
		{"POST charset quoted UTF-7", h, req(http.MethodPost, utf7, sized, read, "Content-Type", "", "Content-Type", `application/json;charset="UTF-7"`), result{415, descMedia}},
		{"POST charset utf-16le", h, req(http.MethodPost, readFile, sized, read, "Content-Type", "", "Content-Type", "Application/JSON ; charset=utf-16le"), result{415, descMedia}},
		{"POST charset utf-8 then utf-7", h, req(http.MethodPost, utf7, sized, read, "Content-Type", "", "Content-Type", "application/json; charset=utf-8; charset=utf-7"), result{415, descMedia}},
		{"POST with two Content-Types", h, req(http.MethodPost, readFile, sized, read, "Content-Type", "application/json"), result{415, descMedia}},
		{"POST application/json, text/plain", h, req(http.MethodPost, readFile, sized, read, "Content-Type", "", "Content-Type", "application/json, text/plain"), result{415, descMedia}},
		{"POST without Content-Type", h, req(http.MethodPost, readFile, sized, read, "Content-Type", ""), result{415, descMedia}},
		{"POST Content-Encoding gzip", h, req(http.MethodPost, readFile, sized, read, "Content-Encoding", "gzip"), result{415, descMedia}},
		{"POST Content-Encoding identity", h, req(http.MethodPost, readFile, sized, read, "Content-Encoding", "identity"), result{415, descMedia}},
		{"POST empty Content-Encoding", h, req(http.MethodPost, readFile, sized, read, "Content-Encoding", " "), result{415, descMedia}},
		// After a 101 the connection is a tunnel no rule reads.
		{"POST with Upgrade: websocket", h, req(http.MethodPost, readFile, sized, read, "Upgrade", "websocket", "Connection", "Upgrade"), result{400, descUpgrade}},
		{"GET with Upgrade alone", h, req(http.MethodGet, "", sized, read, "Upgrade", "h2c"), result{400, descUpgrade}},
		{"POST with Connection: close, upgrade", h, req(http.MethodPost, readFile, sized, read, "Connection", "close,  uPgRaDe "), result{400, descUpgrade}},
		{"HTTP/2 extended CONNECT", h, extendedConnect(req(http.MethodConnect, "", unknown, read)), result{400, descUpgrade}},
		{"CONNECT", h, req(http.MethodConnect, "", sized, read), result{400, descUpgrade}},
		{"Connection: keep-alive passes", h, req(http.MethodPost, readFile, sized, read, "Connection", "keep-alive"), result{200, ""}},
		{"without rules an upgrade is not judged", plain, req(http.MethodGet, "", sized, read, "Upgrade", "websocket", "Connection", "Upgrade"), result{200, ""}},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := serveRequest(t, tc.h, tc.r)
			if res.status != tc.want.status {
				t.Fatalf("status %d, want %d (body %q)", res.status, tc.want.status, res.body)
			}
			if tc.want.desc == "" {
				if !res.nextRan {
					t.Fatal("next did not run")
				}
				return
			}
			if res.nextRan {
				t.Fatal("next ran")
			}
			if res.body != wantBody(denialCode(tc.want.status), tc.want.desc) {
				t.Errorf("body %q", res.body)
			}
			ch := res.header.Get("WWW-Authenticate")
			if tc.want.status == http.StatusUnsupportedMediaType {
				if ch != "" {
					t.Errorf("415 with a challenge %q", ch)
				}
			} else if want := wantChallenge(denialCode(tc.want.status), tc.want.desc, "mcp:read", testMetaURL); ch != want {
				t.Errorf("WWW-Authenticate\n got %q\nwant %q", ch, want)
			}
		})
	}
}

// extendedConnect makes r an RFC 8441 extended CONNECT as net/http's HTTP/2 server hands it
// on: method CONNECT, the :protocol pseudo-header among the headers, a body of unknown length
// (the tunnel: reading it would wait for the client).
func extendedConnect(r *http.Request) *http.Request {
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header[":protocol"] = []string{"websocket"}
	r.ContentLength = -1
	pr, _ := io.Pipe() // never written: a read would block, and fail the test by its timeout
	r.Body = pr
	return r
}

func denialCode(status int) string {
	if status == http.StatusForbidden {
		return "insufficient_scope"
	}
	return "invalid_request"
}

// TestUnjudgeableAllocations: the checks run on every request of a handler with rules.
func TestUnjudgeableAllocations(t *testing.T) {
	post := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(toolsCall))
	post.Header.Set("Content-Type", `application/json; charset="utf-8"`)
	post.Header.Set("Accept", "application/json, text/event-stream")
	post.Header.Set("Mcp-Session-Id", "abc")
	get := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	for _, r := range []*http.Request{post, get} {
		if d := unjudgeable(r); d != denyNone {
			t.Fatalf("%s refused: %s", r.Method, denials[d].label)
		}
		if n := testing.AllocsPerRun(100, func() { unjudgeable(r) }); n != 0 {
			t.Errorf("%s: %v allocations", r.Method, n)
		}
	}
}

// TestListsFilterAppliesToResumedStreams: with filter_lists, prompts, resources and templates
// results replayed on a resumed GET stream are filtered and marked private too.
func TestListsFilterAppliesToResumedStreams(t *testing.T) {
	k := jwttest.New(t, "k1", "RS256")
	js := newJWKSServer(t, k)
	h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer},
		JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}, FilterLists: true,
		Rules: []*Rule{
			{Prompts: []string{"secret_*"}, Scopes: []string{"mcp:admin"}},
			{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"mcp:admin"}},
		}}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)

	const replay = "id: 1_0\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"review\"},{\"name\":\"secret_plan\"}]}}\n\n" +
		"id: 1_1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resources\":[{\"uri\":\"file:///pub/a\"},{\"uri\":\"file:///private/key\"}],\"cacheScope\":\"public\"}}\n\n" +
		"id: 1_2\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resourceTemplates\":[{\"uriTemplate\":\"file:///private/{n}\"},{\"uriTemplate\":\"file:///{p}\"}]}}\n\n"
	const want = "id: 1_0\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"cacheScope\":\"private\",\"prompts\":[{\"name\":\"review\"}]}}\n\n" +
		"id: 1_1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resources\":[{\"uri\":\"file:///pub/a\"}],\"cacheScope\":\"private\"}}\n\n" +
		"id: 1_2\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"cacheScope\":\"private\",\"resourceTemplates\":[{\"uriTemplate\":\"file:///{p}\"}]}}\n\n"
	r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+k.Token(t, testClaims(testIssuer, testResource, "mcp:read"), nil))
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
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("status %d, stream\n%q\nwant\n%q", w.Code, w.Body.String(), want)
	}
}
