package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	_ "github.com/mcpauth/caddy-mcp-auth"
	"github.com/mcpauth/caddy-mcp-auth/examples/demo/internal/demo"
)

// TestDemo runs the demo as run.sh does, in-process and on a random port: the demo Caddyfile
// (ports and paths rewritten), the demo MCP server, and tokens from the token tool's key. It
// proves the walk-through of the README: 401 without a token, a working MCP session through
// Caddy with an official SDK client, and 403 for a token without the scope.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	state := t.TempDir()
	key, err := demo.LoadOrCreateKey(state)
	if err != nil {
		t.Fatal(err)
	}
	again, err := demo.LoadOrCreateKey(state)
	if err != nil {
		t.Fatal(err)
	}
	if again.KID != key.KID {
		t.Fatalf("second run made a new key: kid %s, then %s", key.KID, again.KID)
	}

	mux := http.NewServeMux()
	mux.Handle("/mcp", demo.NewMCPHandler())
	upstream := httptest.NewServer(mux)
	defer upstream.Close()

	port := freePort(t)
	startCaddy(t, state, port, strings.TrimPrefix(upstream.URL, "http://"))
	base := "http://127.0.0.1:" + port
	resource := "http://localhost:" + port + "/mcp"
	metadata := "http://localhost:" + port + "/.well-known/oauth-protected-resource/mcp"
	waitListening(t, ctx, "127.0.0.1:"+port)

	mint := func(scope string) string {
		t.Helper()
		tok, err := key.Mint(demo.TokenOptions{
			Issuer: "http://localhost:" + port, Audience: resource,
			Subject: "demo-user", ClientID: "demo-client", Scope: scope, Lifetime: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// 1. No token: 401 with a challenge naming the scope and the metadata document.
	resp := post(t, ctx, base+"/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	wantChallenge := `Bearer scope="mcp:read", resource_metadata="` + metadata + `"`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != wantChallenge {
		t.Fatalf("no token: got %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), wantChallenge)
	}

	// The metadata document the challenge points to.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/oauth-protected-resource/mcp", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	err = json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || prm.Resource != resource {
		t.Fatalf("metadata: status %d, resource %q, err %v; want 200 %q", resp.StatusCode, prm.Resource, err, resource)
	}

	// 2. A token with mcp:read: a full MCP session through Caddy with the official SDK client.
	client := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "1.0.0"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             base + "/mcp",
		HTTPClient:           &http.Client{Transport: bearer{mint("mcp:read")}, Timeout: 30 * time.Second},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
	if err != nil {
		t.Fatalf("MCP initialize through Caddy: %v", err)
	}
	defer session.Close()

	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"add", "echo", "whoami"}) {
		t.Fatalf("tools/list: got %v, want [add echo whoami]", names)
	}

	sum, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "add", Arguments: map[string]any{"a": 2, "b": 3}})
	if err != nil {
		t.Fatalf("tools/call add: %v", err)
	}
	if got, _ := json.Marshal(sum.StructuredContent); string(got) != `{"sum":5}` {
		t.Fatalf("tools/call add: got %s, want {\"sum\":5}", got)
	}

	// The MCP server sees who the caller is (placeholders in header_up) and not the token
	// (strip_token).
	who, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("tools/call whoami: %v", err)
	}
	const wantWho = `user="demo-user" scope="mcp:read" authorization_header_seen=false`
	if text := toolText(who); text != wantWho {
		t.Fatalf("whoami: got %q, want %q", text, wantWho)
	}

	// 3. A token without mcp:read: 403 insufficient_scope, and the MCP server is not reached.
	resp = post(t, ctx, base+"/mcp", mint("profile"), `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	wantChallenge = `Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read", resource_metadata="` + metadata + `"`
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("WWW-Authenticate") != wantChallenge {
		t.Fatalf("wrong scope: got %d %q, want 403 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), wantChallenge)
	}
}

// startCaddy loads examples/demo/Caddyfile into an in-process Caddy, with the port, the
// upstream and the state paths of this test, and stops it when the test ends.
func startCaddy(t *testing.T, state, port, upstream string) {
	t.Helper()
	raw, err := os.ReadFile("Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(raw)
	for _, r := range []struct{ old, new string }{
		{"examples/demo/.demo/", filepath.ToSlash(state) + "/"},
		{":8080 {", ":" + port + " {"},
		{"localhost:8080", "localhost:" + port},
		{"127.0.0.1:8081", upstream},
	} {
		if !strings.Contains(cf, r.old) {
			t.Fatalf("Caddyfile no longer contains %q; update this test with it", r.old)
		}
		cf = strings.ReplaceAll(cf, r.old, r.new)
	}

	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	cfgJSON, warnings, err := adapter.Adapt([]byte(cf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the demo Caddyfile: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("Caddyfile warning: %s", w.String())
	}

	// Keep Caddy's autosave and storage in the test's directory.
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	admin, _ := cfg["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
		cfg["admin"] = admin
	}
	admin["config"] = map[string]any{"persist": false}
	cfg["storage"] = map[string]any{"module": "file_system", "root": filepath.Join(state, "caddy-data")}
	cfgJSON, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("loading the demo config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
}

// freePort returns a port on 127.0.0.1 that was free a moment ago. Caddy's config needs the
// number, so it cannot listen on port 0 itself.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func waitListening(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	var d net.Dialer
	for i := 0; i < 100; i++ {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Caddy is not listening on %s", addr)
}

// post sends a JSON-RPC message the way a Streamable HTTP client does.
func post(t *testing.T, ctx context.Context, url, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func toolText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// bearer adds the access token to every request of the MCP client.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
