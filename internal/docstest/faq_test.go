package docstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestFAQIdentityHeaders runs the FAQ's Caddyfile for passing the caller's identity on, through
// a real Caddy: request_header and header_up reach the MCP server with the token's subject and
// scopes (replacing what the client sent), a deferred header carries it to the client, and the
// plain `header` form the FAQ warns about, which runs before mcp_auth, has the placeholder's
// text instead of a value.
func TestFAQIdentityHeaders(t *testing.T) {
	var cf string
	for _, b := range docBlocks(t) {
		if b.file == "docs/faq.md" && strings.Contains(b.body, "request_header X-Auth-User") {
			cf = b.body
		}
	}
	if cf == "" {
		t.Fatal("docs/faq.md has no Caddyfile with request_header X-Auth-User")
	}

	var mu sync.Mutex
	var seen http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	defer upstream.Close()

	dir := t.TempDir()
	key := jwttest.New(t, "k1", "ES256")
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKS(key), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	for _, r := range []struct{ old, new string }{
		{"mcp.example.com {", "http://127.0.0.1:" + port + " {"},
		{"\t\tscopes mcp:read\n", "\t\tscopes mcp:read\n\t\tjwks_file " + jwks + "\n"},
		{"\t# to the MCP server", "\theader X-Early-User {http.auth.user.id}\n\t# to the MCP server"},
		{"reverse_proxy 127.0.0.1:3000", "reverse_proxy " + strings.TrimPrefix(upstream.URL, "http://")},
	} {
		if !strings.Contains(cf, r.old) {
			t.Fatalf("the FAQ's Caddyfile no longer contains %q; update this test", r.old)
		}
		cf = strings.Replace(cf, r.old, r.new, 1)
	}
	load(t, cf, dir)

	tok := key.Token(t, jwt.MapClaims{
		"iss": "https://auth.example.com", "aud": "https://mcp.example.com/mcp",
		"sub": "alice", "scope": "mcp:read",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+port+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Auth-User", "mallory") // a client's forgery, to be replaced
	resp := waitFor(t, req)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen.Values("X-Auth-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream X-Auth-User = %q, want [alice] (request_header)", got)
	}
	if got := seen.Get("X-Auth-Scope"); got != "mcp:read" {
		t.Errorf("upstream X-Auth-Scope = %q, want mcp:read (header_up)", got)
	}
	if got := resp.Header.Get("X-Served-For"); got != "alice" {
		t.Errorf("response X-Served-For = %q, want alice (deferred header)", got)
	}
	if got := resp.Header.Get("X-Early-User"); got != "{http.auth.user.id}" {
		t.Errorf("response X-Early-User = %q: plain header runs before mcp_auth, so the FAQ says it is the placeholder's text", got)
	}
}

// load adapts the Caddyfile and runs it in this process until the test ends.
func load(t *testing.T, cf, dir string) {
	t.Helper()
	raw, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), map[string]any{"filename": "faq"})
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cf)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w.String())
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfg["storage"] = map[string]any{"module": "file_system", "root": filepath.Join(dir, "caddy-data")}
	raw, _ = json.Marshal(cfg)
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
}

// waitFor sends req until Caddy's listener answers (it starts asynchronously) or 5 s pass.
func waitFor(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		resp, err := http.DefaultClient.Do(req.Clone(ctx))
		if err == nil {
			return resp
		}
		if ctx.Err() != nil {
			t.Fatalf("Caddy does not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}
