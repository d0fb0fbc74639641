package mcpauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestPlaceholderMessages: a placeholder that cannot work is named as the user wrote it, in
// the Caddyfile with its position, and in Provision (JSON, or an {env.*} that is not set)
// instead of "required" or a complaint about a '{' character.
func TestPlaceholderMessages(t *testing.T) {
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKS(jwttest.New(t, "k1", "ES256")), 0o644); err != nil {
		t.Fatal(err)
	}
	block := func(lines string) string {
		return "mcp_auth {\n" + lines + "\n jwks_file " + jwks + "\n scopes a\n}"
	}

	t.Run("request placeholder in the Caddyfile", func(t *testing.T) {
		for _, c := range []struct{ lines, want string }{
			{"resource https://{http.request.host}/mcp\n authorization_servers https://a",
				`resource "https://{http.request.host}/mcp": {http.request.host} has no value when the config loads`},
			{"resource https://h/mcp\n authorization_servers https://a {http.request.header.X-Issuer}",
				`authorization_servers "{http.request.header.X-Issuer}": {http.request.header.X-Issuer} has no value`},
			{"resource https://h/mcp\n authorization_servers https://a\n jwks_url https://{env.AS}/{http.vars.x}",
				`jwks_url "https://{env.AS}/{http.vars.x}": {http.vars.x} has no value`},
		} {
			_, err := parseTestCaddyfile(block(c.lines))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) || !strings.Contains(err.Error(), ", at Testfile:") {
				t.Errorf("%q: error %v, want it to start with %q and give the position", c.lines, err, c.want)
			}
		}
	})

	provision := func(t *testing.T, h *Handler) error {
		t.Helper()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		err := h.Provision(ctx)
		if cerr := h.Cleanup(); cerr != nil {
			t.Errorf("cleanup: %v", cerr)
		}
		return err
	}

	t.Run("environment variable not set", func(t *testing.T) {
		h, err := parseTestCaddyfile(block("resource {env.MCPAUTH_TEST_UNSET_RESOURCE}\n authorization_servers https://a"))
		if err != nil {
			t.Fatalf("parse: %v", err) // known at load: left to Provision
		}
		want := `resource "{env.MCPAUTH_TEST_UNSET_RESOURCE}": expands to an empty value`
		if err := provision(t, h); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("provision: %v, want %q", err, want)
		}
		h = &Handler{Resource: "https://h/mcp", AuthorizationServers: []string{"https://a"}, Scopes: []string{"a"},
			JWKSURLs: []string{"{env.MCPAUTH_TEST_UNSET_JWKS}"}}
		want = `jwks_url (JSON jwks_urls) "{env.MCPAUTH_TEST_UNSET_JWKS}": expands to an empty value`
		if err := provision(t, h); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("provision: %v, want %q", err, want)
		}
	})

	t.Run("environment variable set", func(t *testing.T) {
		t.Setenv("MCPAUTH_TEST_RESOURCE", "https://mcp.example.com/mcp")
		h, err := parseTestCaddyfile(block("resource {env.MCPAUTH_TEST_RESOURCE}\n authorization_servers https://a"))
		if err != nil {
			t.Fatal(err)
		}
		if err := provision(t, h); err != nil || h.Resource != "https://mcp.example.com/mcp" {
			t.Errorf("provision: %v, resource %q", err, h.Resource)
		}
	})

	t.Run("request placeholder in JSON", func(t *testing.T) {
		h := &Handler{Resource: "https://h/mcp", AuthorizationServers: []string{"https://{http.request.host}"},
			Scopes: []string{"a"}, JWKSFile: jwks}
		want := `authorization_servers "https://{http.request.host}": {http.request.host} has no value when the config loads`
		if err := provision(t, h); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("provision: %v, want %q", err, want)
		}
	})

	t.Run("braces in values that are not expanded", func(t *testing.T) {
		// '{' and '}' are scope-token characters (RFC 6749 §3.3): scopes are never expanded.
		h, err := parseTestCaddyfile("mcp_auth {\n resource https://h/mcp\n authorization_servers https://a\n scopes {x}\n}")
		if err != nil || h.Validate() != nil {
			t.Errorf("parse: %v, validate: %v", err, h.Validate())
		}
	})
}
