package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestTypeScriptClientBoundSessions runs the official TypeScript SDK client, unchanged,
// against Caddy with bind_sessions in front of the Go SDK server (client-bound.mjs): it
// connects, lists, calls, keeps its session with a refreshed token, resumes the stream and
// ends the session, while another user's replay of its session ID gets 404. Tokens are signed
// here and verified against a jwks_file, so no authorization server is needed.
func TestTypeScriptClientBoundSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	bin := buildBinaries(ctx, t, tmp)

	key := jwttest.New(t, "e2e-sessions", "ES256")
	jwksPath := filepath.Join(tmp, "jwks.json")
	if err := os.WriteFile(jwksPath, jwttest.JWKS(key), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := startProcess(ctx, t, "mcpserver", "MCP_READY ", exec.CommandContext(ctx, filepath.Join(bin, "mcpserver")))
	upstreamURL, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("mcpserver address %q: %v", upstream, err)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	resource := base + "/mcp"
	const issuer = "https://as.e2e.example"
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
%s {
	mcp_auth {
		resource %s
		authorization_servers %s
		jwks_file %s
		scopes %s
		bind_sessions {env.MCPAUTH_E2E_SESSION_KEY}
	}
	reverse_proxy %s
}
`, base, resource, issuer, jwksPath, scopeRead, upstreamURL.Host)
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyCmd := exec.CommandContext(ctx, filepath.Join(bin, "caddy"), "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"),
		"MCPAUTH_E2E_SESSION_KEY=e2e-session-key-0123456789abcdef-0123456789")
	startProcess(ctx, t, "caddy", "", caddyCmd)

	hc := &http.Client{Timeout: 15 * time.Second}
	waitFor(ctx, t, "caddy to serve the protected resource metadata", func() bool {
		resp, err := hc.Get(base + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			return false
		}
		drain(resp)
		return resp.StatusCode == http.StatusOK
	})
	token := func(sub, client, jti string) string {
		now := time.Now()
		return key.Token(t, jwt.MapClaims{"iss": issuer, "aud": resource, "sub": sub, "client_id": client, "jti": jti,
			"scope": scopeRead, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}, nil)
	}
	out := runClient(ctx, t, "client-bound.mjs", exec.CommandContext(ctx, node, "client-bound.mjs", resource,
		token("alice", "ts-client", "a-1"), token("alice", "ts-client", "a-2"), token("bob", "ts-client", "b-1")))
	wantLines(t, out,
		"session id: tagged",
		"tools: add,echo,whoami",
		"echo: bound",
		"bob replays alice session: 404",
		"echo after refresh: refreshed (same session)",
		"resume stream: yes",
		"terminated: yes",
		"transport 404 errors: 0",
	)
}
