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
	"strings"
	"testing"
	"time"
)

// TestTypeScriptClientLazySignIn puts Caddy with `public { tool echo }` and
// challenge_in_result in front of the Go SDK server, with oidc-provider as the authorization
// server, and runs the official TypeScript SDK client (client-lazy.mjs): it connects and
// lists without a token, calls the public tool, calls a protected one, signs in from the
// answer (a 401 for a plain client, an in-result challenge for ChatGPT's User-Agent) and
// the same call succeeds with the token, in the same session.
func TestTypeScriptClientLazySignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	bin := buildBinaries(ctx, t, tmp)

	base := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	resource := base + "/mcp"
	upstream := startProcess(ctx, t, "mcpserver", "MCP_READY ", exec.CommandContext(ctx, filepath.Join(bin, "mcpserver")))
	issuer := startProcess(ctx, t, "authorization server", "AS_READY ", exec.CommandContext(ctx, node, "as.mjs", resource))
	upstreamURL, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("mcpserver address %q: %v", upstream, err)
	}
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
%s {
	mcp_auth {
		resource %s
		authorization_servers %s
		scopes %s
		public {
			tool echo
		}
		challenge_in_result openai-mcp/*
		bind_sessions e2e-public-session-key-0123456789abcdef
	}
	reverse_proxy %s {
		header_up X-Auth-User {http.auth.user.id}
		header_up X-Auth-Client {http.auth.user.client_id}
		header_up X-Auth-Scope {http.auth.user.scope}
	}
}
`, base, resource, issuer, scopeRead, upstreamURL.Host)
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyCmd := exec.CommandContext(ctx, filepath.Join(bin, "caddy"), "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"))
	startProcess(ctx, t, "caddy", "", caddyCmd)

	hc := &http.Client{Timeout: 15 * time.Second}
	tokenEndpoint := waitForAS(ctx, t, hc, issuer)
	waitFor(ctx, t, "caddy to serve the protected resource metadata", func() bool {
		resp, err := hc.Get(base + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			return false
		}
		drain(resp)
		return resp.StatusCode == http.StatusOK
	})
	good := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, resource)
	waitFor(ctx, t, "caddy to load the discovered signing keys", func() bool {
		return mcpInitialize(t, hc, resource, good).StatusCode != http.StatusServiceUnavailable
	})

	tools := `tools: add=[{"type":"oauth2","scopes":["mcp:read"]}] echo=[{"type":"noauth"}] whoami=[{"type":"oauth2","scopes":["mcp:read"]}]`
	t.Run("lazy", func(t *testing.T) {
		out := runClient(ctx, t, "client-lazy.mjs", exec.CommandContext(ctx, node, "client-lazy.mjs", resource, "alice", "lazy"))
		wantLines(t, out,
			"connected without a token: session=yes",
			tools,
			"echo: anonymous hello",
			"401: authorization request scope=mcp:read resource="+resource,
			"same session: true",
		)
		if !strings.Contains(out, "whoami: user=alice client=") || !strings.Contains(out, " scope=mcp:read authorization_forwarded=true") {
			t.Errorf("whoami did not report user alice with scope mcp:read:\n%s", out)
		}
	})
	t.Run("chatgpt", func(t *testing.T) {
		out := runClient(ctx, t, "client-lazy.mjs", exec.CommandContext(ctx, node, "client-lazy.mjs", resource, "bob", "chatgpt"))
		wantLines(t, out,
			"connected without a token: session=yes",
			tools,
			"echo: anonymous hello",
			"in-result challenge: isError=true scope=mcp:read",
			"authorization request scope=mcp:read resource="+resource,
			"same session: true",
		)
		if !strings.Contains(out, "whoami: user=bob client=") {
			t.Errorf("whoami did not report user bob:\n%s", out)
		}
	})
}
