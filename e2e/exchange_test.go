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

// TestTokenExchangeEndToEnd: oidc-provider with an RFC 8693 grant (registerGrantType), two
// upstream MCP servers (TypeScript SDK), each behind its own mcp_auth whose resource is its
// audience, and a front mcp_auth that exchanges per tool. The official TypeScript SDK client
// calls one tool on each upstream through the front; each upstream sees a token for itself,
// issued for the same user with mcp_auth's client acting, and the incoming token would be
// refused there.
func TestTokenExchangeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	caddyBin := buildCaddy(ctx, t, tmp)

	site := func() string { return "http://127.0.0.1:" + strconv.Itoa(freePort(t)) }
	front, upA, upB := site(), site(), site()
	resource, resA, resB := front+"/mcp", upA+"/mcp", upB+"/mcp"

	issuer := startProcess(ctx, t, "authorization server", "AS_READY ",
		exec.CommandContext(ctx, node, "as.mjs", resource, resA+","+resB))
	serverA := startProcess(ctx, t, "upstream a", "MCP_READY ", exec.CommandContext(ctx, node, "tsserver-exchange.mjs", "a"))
	serverB := startProcess(ctx, t, "upstream b", "MCP_READY ", exec.CommandContext(ctx, node, "tsserver-exchange.mjs", "b"))
	hostOf := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("address %q: %v", s, err)
		}
		return u.Host
	}

	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
%[1]s {
	route {
		mcp_auth {
			resource %[2]s
			authorization_servers %[3]s
			scopes mcp:read
			token_exchange {
				client_id mcp-gw
				client_secret mcp-gw-secret
				audience %[4]s
			}
			tool b_* {
				exchange {
					audience %[5]s
				}
			}
		}
		@b vars {http.auth.mcp.exchanged_audience} %[5]s
		reverse_proxy @b %[6]s
		reverse_proxy %[7]s
	}
}
%[6]s {
	mcp_auth {
		resource %[5]s
		authorization_servers %[3]s
		scopes mcp:read
	}
	reverse_proxy %[8]s
}
%[7]s {
	mcp_auth {
		resource %[4]s
		authorization_servers %[3]s
		scopes mcp:read
	}
	reverse_proxy %[9]s
}
`, front, resource, issuer, resA, resB, upB, upA, hostOf(serverB), hostOf(serverA))
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyCmd := exec.CommandContext(ctx, caddyBin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"))
	startProcess(ctx, t, "caddy", "", caddyCmd)

	hc := &http.Client{Timeout: 15 * time.Second}
	tokenEndpoint := waitForAS(ctx, t, hc, issuer)
	incoming := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, resource)
	waitFor(ctx, t, "the three sites to serve with their keys", func() bool {
		for _, u := range []string{resource, resA, resB} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+incoming)
			resp, err := hc.Do(req)
			if err != nil {
				return false
			}
			drain(resp)
			if resp.StatusCode == http.StatusServiceUnavailable {
				return false
			}
		}
		return true
	})
	// The incoming token is for the front only: each upstream refuses it.
	for _, u := range []string{resA, resB} {
		resp := mcpInitialize(t, hc, u, incoming)
		drain(resp)
		wantStatus(t, resp, http.StatusUnauthorized)
	}

	out := runClient(ctx, t, "client-exchange.mjs", exec.CommandContext(ctx, node, "client-exchange.mjs", resource, issuer, "a_whoami", "b_whoami"))
	wantLines(t, out,
		"a: aud="+resA+" sub=ts-cc act=mcp-gw",
		"b: aud="+resB+" sub=ts-cc act=mcp-gw",
	)
	if strings.Contains(out, "aud="+resource) {
		t.Fatal("an upstream saw the incoming token")
	}
}
