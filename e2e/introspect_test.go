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

// introspectionEnv is what the introspection suite takes from TestEndToEnd: the one
// authorization server of the test binary, the built binaries and the upstream.
type introspectionEnv struct {
	node, bin, tmp, issuer, upstream, tokenEndpoint string
	hc                                              *http.Client
}

// introspectionCacheTTL is short so that revocation shows within the test.
const introspectionCacheTTL = 2 * time.Second

// testIntrospection runs a second Caddy whose resource (under /opaque/) gets OPAQUE access
// tokens from oidc-provider, checked through RFC 7662 introspection with the resource
// server's own client credentials: the TypeScript SDK clients go through discovery, token
// and calls; a token revoked at the authorization server (RFC 7009) is refused within
// cache_ttl; a refresh token presented as an access token gets 401.
func testIntrospection(ctx context.Context, t *testing.T, env introspectionEnv) {
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	resource := base + "/opaque/mcp"
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
%s {
	route {
		mcp_auth {
			resource %s
			authorization_servers %s
			scopes %s
			introspection {
				client_id mcp-rs
				client_secret {env.E2E_INTROSPECTION_SECRET}
				cache_ttl %s
			}
		}
		uri strip_prefix /opaque
		reverse_proxy %s {
			header_up X-Auth-User {http.auth.user.id}
			header_up X-Auth-Client {http.auth.user.client_id}
			header_up X-Auth-Scope {http.auth.user.scope}
		}
	}
}
`, base, resource, env.issuer, scopeRead, introspectionCacheTTL, env.upstream)
	dir := filepath.Join(env.tmp, "introspection")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "caddy"), "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "E2E_INTROSPECTION_SECRET=mcp-rs-secret",
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	startProcess(ctx, t, "caddy (introspection)", "", cmd)
	waitFor(ctx, t, "the introspection caddy to serve its metadata", func() bool {
		resp, err := env.hc.Get(base + "/.well-known/oauth-protected-resource/opaque/mcp")
		if err != nil {
			return false
		}
		drain(resp)
		return resp.StatusCode == http.StatusOK
	})

	t.Run("opaque_token_accepted", func(t *testing.T) {
		tok := requestToken(t, env.hc, env.tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, resource)
		if strings.Count(tok, ".") == 2 {
			t.Fatal("the authorization server issued a JWT, not an opaque token, for the /opaque/ resource")
		}
		wantStatus(t, mcpInitialize(t, env.hc, resource, tok), http.StatusOK)
	})

	t.Run("ts_sdk_client_credentials", func(t *testing.T) {
		out := runClient(ctx, t, "client-cc.mjs", exec.CommandContext(ctx, env.node, "client-cc.mjs", resource, "ts-cc", "ts-cc-secret", env.issuer, scopeRead))
		wantLines(t, out,
			"tools: add,echo,whoami",
			"echo: hello through caddy",
			"whoami: user=ts-cc client=ts-cc scope=mcp:read authorization_forwarded=true",
		)
	})

	t.Run("ts_sdk_authorization_code_and_refresh_token_refused", func(t *testing.T) {
		out := runClient(ctx, t, "client-code.mjs", exec.CommandContext(ctx, env.node, "client-code.mjs", resource, "bob", "refresh-as-access"))
		wantLines(t, out,
			"tools: add,echo,whoami",
			"echo: hello via authorization code",
			"refresh token as access token: 401 invalid_token",
		)
		if !strings.Contains(out, "whoami: user=bob client=") {
			t.Errorf("whoami did not report user bob:\n%s", out)
		}
	})

	t.Run("revocation_within_cache_ttl", func(t *testing.T) {
		tok := requestToken(t, env.hc, env.tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, resource)
		wantStatus(t, mcpInitialize(t, env.hc, resource, tok), http.StatusOK)
		revoke(t, env.hc, env.issuer, "raw-cc", "raw-cc-secret", tok)
		revoked := time.Now()
		for {
			resp := mcpInitialize(t, env.hc, resource, tok)
			if resp.StatusCode == http.StatusUnauthorized {
				wantChallenge(t, resp, `error="invalid_token"`)
				t.Logf("revoked token refused %s after revocation (cache_ttl %s)", time.Since(revoked).Round(time.Millisecond), introspectionCacheTTL)
				break
			}
			wantStatus(t, resp, http.StatusOK)
			if time.Since(revoked) > introspectionCacheTTL+time.Second {
				t.Fatalf("revoked token still accepted %s after revocation, cache_ttl is %s", time.Since(revoked), introspectionCacheTTL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("jwt_for_other_resource_401", func(t *testing.T) {
		// A JWT is still verified locally: one issued for the first resource is refused here.
		tok := requestToken(t, env.hc, env.tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, strings.TrimSuffix(env.issuer, "/")+"/elsewhere")
		resp := mcpInitialize(t, env.hc, resource, tok)
		wantStatus(t, resp, http.StatusUnauthorized)
	})
}

// revoke revokes a token at the authorization server's RFC 7009 endpoint (found in its
// metadata), authenticated as the client the token was issued to.
func revoke(t *testing.T, hc *http.Client, issuer, id, secret, token string) {
	t.Helper()
	var md struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	getJSON(t, hc, issuer+"/.well-known/openid-configuration", &md)
	if md.RevocationEndpoint == "" {
		t.Fatal("the authorization server publishes no revocation_endpoint")
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequest(http.MethodPost, md.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("revocation: %v", err)
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: status %d", resp.StatusCode)
	}
}
