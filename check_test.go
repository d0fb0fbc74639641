package mcpauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"

	_ "github.com/caddyserver/caddy/v2/modules/standard" // the demo's log and reverse_proxy
)

// demoConfig writes the demo's Caddyfile with its jwks_file pointing at a JWKS of k, and
// extra lines added to its mcp_auth block; it returns the file's path.
func demoConfig(t *testing.T, k *jwttest.Key, extra string) string {
	t.Helper()
	raw, err := os.ReadFile("examples/demo/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKS(k), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	const fileLine = "jwks_file examples/demo/.demo/jwks.json"
	if !strings.Contains(cfg, fileLine) {
		t.Fatalf("the demo's Caddyfile has no %q line any more", fileLine)
	}
	cfg = strings.Replace(cfg, fileLine, "jwks_file "+jwks+"\n"+extra, 1)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkNow is the clock of the checks: the output names times relative to it.
var checkNow = time.Now().Truncate(time.Second)

// demoClaims are the claims of a demo token that passes, for an hour.
func demoClaims(scope string) jwt.MapClaims {
	now := checkNow
	return jwt.MapClaims{
		"iss": "http://localhost:8080", "aud": "http://localhost:8080/mcp", "sub": "alice",
		"client_id": "demo-client", "scope": scope, "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// runCheckFor runs the check with the token on standard input and returns the exit status,
// the output and the error output.
func runCheckFor(t *testing.T, o checkOptions, token string) (int, string, string) {
	t.Helper()
	o.token = "-"
	o.now = func() time.Time { return checkNow }
	var out, errOut bytes.Buffer
	code := runCheck(o, strings.NewReader(token+"\n"), &out, &errOut)
	for _, s := range []string{out.String(), errOut.String()} {
		if strings.Contains(s, token) || strings.Contains(s, token[strings.LastIndexByte(token, '.')+1:]) {
			t.Fatalf("the token (or its signature) is in the output:\n%s", s)
		}
	}
	return code, out.String(), errOut.String()
}

// lines returns the output's lines keyed by their first word, the step.
func stepLines(out string) map[string][]string {
	m := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		step, rest, _ := strings.Cut(l, " ")
		m[step] = append(m[step], strings.TrimSpace(rest))
	}
	return m
}

// TestCheckAgainstTheDemo runs `caddy mcp-auth check` on the demo's configuration with the
// tokens the issue names, and reads its answer line by line.
func TestCheckAgainstTheDemo(t *testing.T) {
	k := jwttest.New(t, "demo-key", "ES256")
	atJWT := map[string]any{"typ": "at+jwt"}
	demo := demoConfig(t, k, "")
	withRule := demoConfig(t, k, "tool delete_* {\n\t\t\tscopes mcp:admin\n\t\t}")

	expired := demoClaims("mcp:read")
	expired["exp"] = checkNow.Add(-2 * time.Hour).Unix()
	wrongAud := demoClaims("mcp:read")
	wrongAud["aud"] = "http://localhost:9999/mcp"
	bound := demoClaims("mcp:read")
	bound["cnf"] = map[string]any{"jkt": jwttest.New(t, "client", "ES256").Thumbprint()}

	const challengeBase = `Bearer error="invalid_token", error_description="`
	for _, c := range []struct {
		name       string
		config     string
		method     string
		tool       string
		claims     jwt.MapClaims
		code       int
		want       map[string]string // step -> its exact line
		challenges string
	}{
		{"good token", demo, "tools/call", "get_weather", demoClaims("mcp:read"), 0, map[string]string{
			"token":     "JWT: alg ES256, kid demo-key, typ at+jwt",
			"key":       "1 key(s) of the configured sets match kid demo-key and alg ES256",
			"iss":       "http://localhost:8080: listed in issuers",
			"aud":       "http://localhost:8080/mcp: names this resource",
			"binding":   "none (a bearer token)",
			"scopes":    "granted (after scope_claim, scope_prefix, scope_implies): mcp:read",
			"client":    "demo-client",
			"operation": "tools/call get_weather: not read (no per-operation rules, list filters or audit): the base policy decides",
			"decision":  "allowed (200 from the server behind)",
		}, ""},
		{"expired", demo, "", "", expired, 1, map[string]string{
			"times":    "exp 2h0m0s ago, nbf now, iat now (now " + checkNow.UTC().Format(time.RFC3339) + ", leeway 30s)",
			"decision": "refused: 401 invalid_token (expired)",
		}, challengeBase + `The access token has expired."`},
		{"wrong audience", demo, "", "", wrongAud, 1, map[string]string{
			"aud":      "http://localhost:9999/mcp: does not name http://localhost:8080/mcp",
			"decision": "refused: 401 invalid_token (audience_not_accepted)",
		}, challengeBase + `The access token was not issued for this resource."`},
		{"token for another tool", withRule, "tools/call", "delete_file", demoClaims("mcp:read"), 1, map[string]string{
			"operation": "tools/call delete_file",
			"rule":      "tool delete_*",
			"scopes":    "granted (after scope_claim, scope_prefix, scope_implies): mcp:read",
			"decision":  "refused: 403 insufficient_scope (insufficient_scope)",
		}, `Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read mcp:admin"`},
		{"DPoP-bound token without a proof", demo, "", "", bound, 1, map[string]string{
			"binding":  "cnf.jkt: bound to a DPoP key; each request needs a DPoP proof of it, which check does not make",
			"decision": "refused: 401 invalid_token (bound_token)",
		}, challengeBase + `The access token is bound to a key and cannot be used as a bearer token."`},
	} {
		t.Run(c.name, func(t *testing.T) {
			token := k.Token(t, c.claims, atJWT)
			code, out, errOut := runCheckFor(t, checkOptions{config: c.config, method: c.method, name: c.tool}, token)
			if code != c.code {
				t.Fatalf("exit status %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			got := stepLines(out)
			for step, want := range c.want {
				if want == "" {
					continue
				}
				lines := got[step]
				if len(lines) != 1 || lines[0] != want {
					t.Errorf("%s: %q, want %q\n%s", step, lines, want, out)
				}
			}
			if c.challenges != "" && !strings.HasPrefix(strings.Join(got["challenge"], ""), c.challenges) {
				t.Errorf("challenge %q, want it to start with %q", got["challenge"], c.challenges)
			}
			if c.code == 0 {
				// The steps in order, each once.
				var steps []string
				for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
					step, _, _ := strings.Cut(l, " ")
					steps = append(steps, step)
				}
				want := "config resource token key iss aud times binding scopes client operation decision"
				if strings.Join(steps, " ") != want {
					t.Errorf("steps %q, want %q", steps, want)
				}
			}
			if got["config"] == nil || got["resource"][0] != "http://localhost:8080/mcp" {
				t.Errorf("config / resource lines: %q %q", got["config"], got["resource"])
			}

			// The same as JSON, for machines.
			code, jsonOut, _ := runCheckFor(t, checkOptions{config: c.config, method: c.method, name: c.tool, json: true}, token)
			var rep checkReport
			if err := json.Unmarshal([]byte(jsonOut), &rep); err != nil || code != c.code {
				t.Fatalf("--json: exit %d, %v\n%s", code, err, jsonOut)
			}
			if (rep.Decision == "allow") != (c.code == 0) || len(rep.Steps) == 0 {
				t.Errorf("--json: decision %q with %d steps", rep.Decision, len(rep.Steps))
			}
		})
	}
}

// TestCheckUsageErrors: a configuration it cannot use, or missing flags, exit 2.
func TestCheckUsageErrors(t *testing.T) {
	k := jwttest.New(t, "demo-key", "ES256")
	token := k.Token(t, demoClaims("mcp:read"), nil)
	dir := t.TempDir()
	noAuth := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(noAuth, []byte(":8080 {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    checkOptions
		want string
	}{
		{"no config", checkOptions{}, "--config is required"},
		{"missing file", checkOptions{config: filepath.Join(dir, "nope")}, "loading"},
		{"no mcp_auth", checkOptions{config: noAuth}, "no mcp_auth handler"},
		{"other resource", checkOptions{config: demoConfig(t, k, ""), resource: "https://x.example/mcp"}, "no mcp_auth handler for resource https://x.example/mcp"},
		{"name without method", checkOptions{config: noAuth, name: "x"}, "--name needs --method"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCheckFor(t, c.o, token)
			if code != 2 || !strings.Contains(errOut, c.want) || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want 2 and %q", code, errOut, out, c.want)
			}
		})
	}
}

// TestCheckJSONConfigAndRegistration: a JSON configuration is read as `caddy run` reads it,
// and the command is registered with Caddy's command line.
func TestCheckJSONConfigAndRegistration(t *testing.T) {
	if _, ok := caddycmd.Commands()["mcp-auth"]; !ok {
		t.Fatal("the mcp-auth command is not registered")
	}
	k := jwttest.New(t, "demo-key", "ES256")
	cfg, err := os.ReadFile(demoConfig(t, k, ""))
	if err != nil {
		t.Fatal(err)
	}
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, adapted, 0o600); err != nil {
		t.Fatal(err)
	}
	token := k.Token(t, demoClaims("mcp:read"), map[string]any{"typ": "at+jwt"})
	code, out, errOut := runCheckFor(t, checkOptions{config: path}, token)
	if code != 0 || !strings.Contains(out, "decision   allowed") {
		t.Errorf("JSON config: exit %d\n%s%s", code, out, errOut)
	}
}

// caddyMainEnv, when set, makes this test binary run Caddy's own main with the arguments
// after its "--": TestCheckThroughCaddyMain runs `caddy mcp-auth check` as a user does, exit
// status and all.
const caddyMainEnv = "MCPAUTH_TEST_CADDY_MAIN"

// TestCaddyMainHelper is not a test: it is the `caddy` process of TestCheckThroughCaddyMain.
func TestCaddyMainHelper(t *testing.T) {
	if os.Getenv(caddyMainEnv) == "" {
		t.Skip("run by TestCheckThroughCaddyMain only")
	}
	os.Args = append([]string{"caddy"}, flag.Args()...)
	caddycmd.Main() // exits
}

// TestCheckThroughCaddyMain runs the command through Caddy's main, as `caddy mcp-auth check`
// runs: the exit status is 0 allowed, 1 refused, 2 for a configuration or usage error, and
// Caddy's command line adds no "Error: exiting with status N" line of its own.
func TestCheckThroughCaddyMain(t *testing.T) {
	k := jwttest.New(t, "demo-key", "ES256")
	cfg := demoConfig(t, k, "")
	atJWT := map[string]any{"typ": "at+jwt"}
	good := k.Token(t, demoClaims("mcp:read"), atJWT)
	expired := demoClaims("mcp:read")
	expired["exp"] = time.Now().Add(-2 * time.Hour).Unix()
	for _, c := range []struct {
		name      string
		args      []string
		token     string
		code      int
		out, errs string // in stdout, in stderr
	}{
		{"allowed", []string{"--config", cfg, "--token", "-"}, good, 0, "decision   allowed", ""},
		{"refused", []string{"--config", cfg, "--token", "-"}, k.Token(t, expired, atJWT), 1,
			"decision   refused: 401 invalid_token (expired)", ""},
		{"no such config", []string{"--config", filepath.Join(t.TempDir(), "nope"), "--token", "-"}, good, 2,
			"", "mcp-auth check: loading"},
		{"unknown flag", []string{"--config", cfg, "--tokn", "-"}, good, 2, "", "mcp-auth check: unknown flag: --tokn"},
		{"an argument", []string{"--config", cfg, "stray"}, good, 2, "", `mcp-auth check: unexpected argument "stray"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestCaddyMainHelper$", "--", "mcp-auth", "check"}, c.args...)...)
			cmd.Env = append(os.Environ(), caddyMainEnv+"=1")
			cmd.Stdin = strings.NewReader(c.token + "\n")
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), c.out) || !strings.Contains(errOut.String(), c.errs) {
				t.Errorf("want %q in stdout and %q in stderr\nstdout:\n%s\nstderr:\n%s", c.out, c.errs, out.String(), errOut.String())
			}
			if strings.Contains(errOut.String(), "Error:") {
				t.Errorf("Caddy's command line added an error line:\n%s", errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), c.token) {
				t.Error("the token is in the output")
			}
		})
	}
}

// TestCheckOpaqueTokenThroughIntrospection: an opaque token is asked of the authorization
// server as the module asks it (its introspection endpoint, with the resource server's
// credentials), and the output, line by line, says so: the call and its outcome, the scopes as
// the policy reads them (scope_implies applied), the client and the decision. The token is
// never printed.
func TestCheckOpaqueTokenThroughIntrospection(t *testing.T) {
	const (
		active   = "opaque-active-2b7e151628aed2a6abf7158809cf4f3c"
		inactive = "opaque-revoked-3ad77bb40d7a3660a89ecaf32466ef97"
	)
	var mu sync.Mutex
	asked := map[string]int{}
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "rs" || secret != "rs-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		tok := r.PostForm.Get("token")
		mu.Lock()
		asked[tok]++
		mu.Unlock()
		ans := map[string]any{"active": false}
		if tok == active {
			ans = map[string]any{"active": true, "iss": "http://localhost:8080", "aud": "http://localhost:8080/mcp",
				"sub": "opaque-user", "client_id": "opaque-app", "scope": "mcp:admin", "token_type": "Bearer",
				"iat": checkNow.Unix(), "exp": checkNow.Add(time.Hour).Unix()}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(as.Close)

	k := jwttest.New(t, "demo-key", "ES256")
	// The demo requires mcp:read; the token holds mcp:admin, which implies it.
	cfg := demoConfig(t, k, "scope_implies mcp:admin mcp:read\n\t\tintrospection {\n\t\t\tendpoint "+as.URL+
		"\n\t\t\tclient_id rs\n\t\t\tclient_secret rs-secret\n\t\t}")

	for _, c := range []struct {
		name  string
		token string
		code  int
		want  [][2]string // every line, in order: step, detail
	}{
		{"active", active, 0, [][2]string{
			{"token", "opaque (not a JWT): asked of the authorization server (introspection)"},
			{"call", "introspect: ok"},
			{"scopes", "granted (after scope_claim, scope_prefix, scope_implies): mcp:admin mcp:read"},
			{"client", "opaque-app"},
			{"decision", "allowed (200 from the server behind)"},
		}},
		{"inactive", inactive, 1, [][2]string{
			{"token", "opaque (not a JWT): asked of the authorization server (introspection)"},
			{"call", "introspect: ok"},
			{"decision", "refused: 401 invalid_token (inactive_token)"},
			{"challenge", `Bearer error="invalid_token", error_description="The access token is not active.", scope="mcp:read", resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCheckFor(t, checkOptions{config: cfg}, c.token)
			if code != c.code {
				t.Fatalf("exit status %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if len(lines) != 2+len(c.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), 2+len(c.want), out)
			}
			if lines[1] != fmt.Sprintf("%-10s %s", "resource", "http://localhost:8080/mcp") {
				t.Errorf("line 2: %q", lines[1])
			}
			for i, w := range c.want {
				if want := fmt.Sprintf("%-10s %s", w[0], w[1]); lines[2+i] != want {
					t.Errorf("line %d: %q\nwant    %q", 3+i, lines[2+i], want)
				}
			}
			// runCheckFor already failed the test had the token been in the output.
			mu.Lock()
			n := asked[c.token]
			mu.Unlock()
			if n != 1 {
				t.Errorf("the authorization server was asked about the token %d times, want 1", n)
			}
		})
	}
}
