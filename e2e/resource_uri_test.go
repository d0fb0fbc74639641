package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestResourceURISpellings replays the resource_uri red team finding against a real
// TypeScript SDK file server (tsserver-files.mjs: ResourceTemplate, fileURLToPath,
// path.resolve) behind Caddy with
//
//	resource_uri file://<root>/secret/* { scopes mcp:admin }
//	resource_uri file://<root>/public/exact.txt { scopes mcp:admin }
//
// Every spelling of the two protected files is sent with a read-only token: the files'
// contents must never come back. The same spellings sent to the server directly show which
// of them a server reads as the protected files.
func TestResourceURISpellings(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	bin := buildBinaries(ctx, t, tmp)

	// The files, each holding a random marker that nothing else in an answer can contain.
	root := filepath.Join(tmp, "srv")
	marker := func(what string) string {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		return what + "-" + hex.EncodeToString(b)
	}
	secret, exact, public := marker("SECRET"), marker("EXACT"), marker("PUBLIC")
	for name, content := range map[string]string{"secret/a.txt": secret, "public/exact.txt": exact, "public/a.txt": public} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if strings.ContainsAny(root, " \t\"{}%\\") {
		t.Skipf("temporary directory %q does not fit in a Caddyfile token and a URI as is", root)
	}

	key := jwttest.New(t, "e2e-uri", "ES256")
	jwksPath := filepath.Join(tmp, "jwks.json")
	if err := os.WriteFile(jwksPath, jwttest.JWKS(key), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := startProcess(ctx, t, "tsserver-files", "MCP_READY ", exec.CommandContext(ctx, node, "tsserver-files.mjs", root))
	upstreamURL, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("tsserver-files address %q: %v", upstream, err)
	}

	caddyPort := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(caddyPort)
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
		resource_uri file://%s/secret/* {
			scopes mcp:admin
		}
		resource_uri file://%s/public/exact.txt {
			scopes mcp:admin
		}
	}
	reverse_proxy %s
}
`, base, resource, issuer, jwksPath, scopeRead, root, root, upstreamURL.Host)
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyCmd := exec.CommandContext(ctx, filepath.Join(bin, "caddy"), "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"))
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
	token := func(scope string) string {
		now := time.Now()
		return key.Token(t, jwt.MapClaims{"iss": issuer, "aud": resource, "sub": "e2e", "client_id": "e2e",
			"scope": scope, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}, nil)
	}
	reader, admin := token(scopeRead), token(scopeRead+" mcp:admin")

	fileURI := "file://" + root
	// Controls: the server reads each file, and Caddy lets the right tokens read them.
	if got := readResource(t, hc, upstream, "", fileURI+"/public/../secret/a.txt"); !strings.Contains(got.body, secret) {
		t.Fatalf("the server does not read the secret through a dot segment (status %d): the test proves nothing\n%s", got.status, got.body)
	}
	if got := readResource(t, hc, resource, admin, fileURI+"/secret/a.txt"); !strings.Contains(got.body, secret) {
		t.Fatalf("an mcp:admin token does not read the secret through caddy: status %d\n%s", got.status, got.body)
	}
	if got := readResource(t, hc, resource, admin, fileURI+"/public/exact.txt"); !strings.Contains(got.body, exact) {
		t.Fatalf("an mcp:admin token does not read exact.txt through caddy: status %d\n%s", got.status, got.body)
	}
	if got := readResource(t, hc, resource, reader, fileURI+"/public/a.txt"); !strings.Contains(got.body, public) {
		t.Fatalf("a read-only token does not read a public file through caddy: status %d\n%s", got.status, got.body)
	}

	spellings := protectedSpellings(root)
	classes := map[string]int{}
	directLeaks := 0
	for _, u := range spellings {
		direct := readResource(t, hc, upstream, "", u)
		leaked := strings.Contains(direct.body, secret) || strings.Contains(direct.body, exact)
		if leaked {
			directLeaks++
		}
		got := readResource(t, hc, resource, reader, u)
		if strings.Contains(got.body, secret) || strings.Contains(got.body, exact) {
			t.Errorf("%q: a read-only token read a protected file through caddy (status %d)", u, got.status)
			continue
		}
		class := got.class(public)
		if leaked && class != "400 not in normal form" && class != "403 insufficient_scope" {
			t.Errorf("%q: the server reads it as a protected file, and caddy answered %s", u, class)
		}
		classes[class]++
		if class != "400 not in normal form" {
			t.Logf("%s: %q", class, u)
		}
	}
	if directLeaks == 0 {
		t.Fatal("no spelling reads a protected file from the server directly: the test proves nothing")
	}
	names := make([]string, 0, len(classes))
	for c := range classes {
		names = append(names, c)
	}
	sort.Strings(names)
	var summary strings.Builder
	for _, c := range names {
		fmt.Fprintf(&summary, "\n  %4d  %s", classes[c], c)
	}
	t.Logf("%d spellings of the protected files; %d read a protected file from the server directly; through caddy with a read-only token:%s",
		len(spellings), directLeaks, summary.String())
}

// protectedSpellings are ways of writing <root>/secret/a.txt and <root>/public/exact.txt
// that a server using new URL, fileURLToPath and path.resolve may read as those files.
func protectedSpellings(root string) []string {
	slash := func(pre string) func(string) string { return func(r string) string { return pre + r } }
	back := func(pre string) func(string) string {
		return func(r string) string { return pre + strings.ReplaceAll(r, "/", `\`) }
	}
	// Each turns the root (/tmp/…/srv) into the start of a URI; backslash forms write the
	// whole URI with backslashes.
	prefixes := []func(string) string{
		slash("file://"), slash("FILE://"), slash("File://"), slash("file://localhost"), slash("file://LOCALHOST"),
		slash("file://localhost:"), slash("file://127.0.0.1"), slash("file:///"), slash("file:////"), slash("file:"),
		func(r string) string { return "file:" + strings.TrimPrefix(r, "/") },
		back(`file:\\`), back(`file:/\`), back("file://"), slash(" file://"), slash("\tfile://"), slash("\x01file://"),
	}
	paths := []string{
		"/secret/a.txt", "/public/../secret/a.txt", "/public/%2e%2e/secret/a.txt", "/public/%2E%2E/secret/a.txt",
		"/public/.%2e/secret/a.txt", "/public/%2E./secret/a.txt", "/public/..%2fsecret/a.txt", "/public/..%2Fsecret/a.txt",
		"/public/%252e%252e/secret/a.txt", "/%73ecret/a.txt", "/secre%74/a.txt", "/secret/%61.txt", "/secret/a%2etxt",
		"/SECRET/a.txt", "/./secret/a.txt", "/secret/./a.txt", "//secret/a.txt", "/secret//a.txt", "/public//../secret/a.txt",
		"/sec\tret/a.txt", "/sec\nret/a.txt", "/secret/a.txt\r", "/secret/a.txt ", "/secret/a.txt?x", "/secret/a.txt#x",
		"/secret/a.txt/", `\secret\a.txt`, `/public\..\secret\a.txt`, "/public/%5C../secret/a.txt", "/secret%2Fa.txt",
		"/secret/a.txt%00", "/ｓecret/a.txt", "/public/．．/secret/a.txt",
		"/public/exact.txt", "/public/exact.txt?x", "/public/exact.txt#x", "/public/exact.txt/", "/public/exact.txt?",
		"/public/exact.txt#", "/public/./exact.txt", "/public/EXACT.txt", "/public/exact%2etxt", "/public/%65xact.txt",
		"/secret/../public/exact.txt", "/public/exact.txt/.", "/public/exact.txt//", "/public//exact.txt", `/public\exact.txt`,
	}
	var out []string
	for _, pre := range prefixes {
		for _, p := range paths {
			out = append(out, pre(root+p))
		}
	}
	return out
}

type readAnswer struct {
	status int
	body   string
}

// class names what an answer to a resources/read of a protected file was.
func (a readAnswer) class(public string) string {
	switch {
	case a.status == http.StatusBadRequest && strings.Contains(a.body, "not in normal form"):
		return "400 not in normal form"
	case a.status == http.StatusForbidden && strings.Contains(a.body, "insufficient_scope"):
		return "403 insufficient_scope"
	case a.status == http.StatusOK && strings.Contains(a.body, public):
		return "200 a public file"
	case a.status == http.StatusOK && strings.Contains(a.body, `"error"`):
		return "200 JSON-RPC error from the server (not found, not under the root, invalid URL)"
	}
	return fmt.Sprintf("%d other", a.status)
}

// readResource POSTs a resources/read of uri, with the token when one is given.
func readResource(t *testing.T, hc *http.Client, endpoint, token, uri string) readAnswer {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": map[string]string{"uri": uri}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer drain(resp)
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", endpoint, err)
	}
	return readAnswer{status: resp.StatusCode, body: string(b)}
}
