// Package integration runs the mcp_auth module inside a real, in-process Caddy through
// Caddy's caddytest harness: configurations are loaded through the admin API (Caddyfile and
// JSON), requests go over real HTTP to port 9080, tokens are really signed, and keys come
// from a JWKS served by an httptest server.
//
// The harness binds the fixed ports 2999 (admin) and 9080 (HTTP), shared on the machine, so
// run these tests serialised:
//
//	flock /tmp/caddytest.lock go test -race ./caddytest/
package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mcpauth/caddy-mcp-auth"
)

// Fixed facts of the configurations under test.
const (
	adminURL = "http://localhost:2999"
	baseURL  = "http://localhost:9080"

	resource = "https://mcp.example.com/mcp"
	issuer   = "https://auth.example.com"
	prmPath  = "/.well-known/oauth-protected-resource/mcp"
	prmURL   = "https://mcp.example.com" + prmPath

	// Fixed error descriptions (wwwauth.go); clients compare challenges, so they are pinned.
	descScope    = "The access token does not have the scope this request requires."
	descAudience = "The access token was not issued for this resource."
	descMultiple = "The request has more than one Authorization header."
)

// challenge is the WWW-Authenticate value expected for an error code, description and scope.
func challenge(code, desc, scope string) string {
	var parts []string
	if code != "" {
		parts = append(parts, `error="`+code+`"`, `error_description="`+desc+`"`)
	}
	if scope != "" {
		parts = append(parts, `scope="`+scope+`"`)
	}
	parts = append(parts, `resource_metadata="`+prmURL+`"`)
	return "Bearer " + strings.Join(parts, ", ")
}

// claims are valid claims of the test issuer for audience aud, with scope, lasting an hour.
func claims(aud, scope string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":       issuer,
		"aud":       aud,
		"sub":       "user-1",
		"client_id": "client-1",
		"scope":     scope,
		"tenant":    "acme",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
}

// jwksServer serves the public keys on 127.0.0.1 and counts the fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64
	down    atomic.Bool   // answer 503, as an authorization server that is down
	served  chan struct{} // closed once the keys were first answered
	once    sync.Once
}

// waitKeysServed waits (bounded) until the server has answered with the keys once. From
// then on a request finds the keys, or the fetch in flight that will install them, which it
// joins: the keys count as loaded. The bound is generous because the fetch may wait for the
// module's retry back-off.
func (js *jwksServer) waitKeysServed(t testing.TB) {
	t.Helper()
	select {
	case <-js.served:
	case <-time.After(30 * time.Second):
		t.Fatal("the JWKS was not fetched within 30s")
	}
}

func newJWKSServer(t testing.TB, keys ...*jwttest.Key) *jwksServer {
	t.Helper()
	body := jwttest.JWKS(keys...)
	js := &jwksServer{served: make(chan struct{})}
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		if js.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		js.once.Do(func() { close(js.served) })
	}))
	t.Cleanup(js.Close)
	return js
}

// upstream is the MCP server behind Caddy: it records what reached it.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

const upstreamBody = "upstream reached"

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.mu.Unlock()
		_, _ = io.WriteString(w, upstreamBody)
	}))
	t.Cleanup(u.Close)
	return u
}

// lastHeader is the request header of the last request the upstream received.
func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// dial is the upstream's host:port, for reverse_proxy.
func (u *upstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

// request sends a request to Caddy with the tester's client and returns the status, headers
// and body. auth values are sent as separate Authorization header lines.
func request(t *testing.T, tc *caddytest.Tester, method, path, host string, auth ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if len(auth) > 0 {
		req.Header["Authorization"] = auth
	}
	// Right after a reload the old server, which shares the listener, may still take a
	// connection and then close it without an answer (Caddy stops the old servers
	// asynchronously). As a real client does, try again at once on such a connection error,
	// on a new connection, which the old server, no longer accepting, cannot take; an HTTP
	// answer is never retried.
	var resp *http.Response
	for attempt := 1; ; attempt++ {
		tc.Client.CloseIdleConnections()
		resp, err = tc.Client.Do(req)
		if err == nil {
			break
		}
		if attempt == 10 {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// bearer is an Authorization header value.
func bearer(token string) string { return "Bearer " + token }

// loadConfig POSTs a configuration to the admin API's /load, as `caddy reload` does, and
// returns the status and body of the answer. contentType is "application/json" or
// "text/caddyfile". The answer comes after the new config runs (or was refused). force
// reloads even an unchanged config, as `caddy reload --force` does.
func loadConfig(t *testing.T, cfg, contentType string, force bool) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	// A load replaces the admin server too, and Caddy stops the old one asynchronously, so a
	// connection may meet the old one as it closes. Loading is idempotent: try again at once
	// on a connection error, on a fresh connection each time.
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, adminURL+"/load", strings.NewReader(cfg))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		if force {
			req.Header.Set("Cache-Control", "must-revalidate")
		}
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			if attempt == 10 {
				t.Fatalf("POST /load: %v", err)
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
}

// mustLoad loads cfg and fails the test unless the admin API accepted it.
func mustLoad(t *testing.T, cfg, contentType string, force bool) {
	t.Helper()
	if code, body := loadConfig(t, cfg, contentType, force); code != http.StatusOK {
		t.Fatalf("POST /load: status %d: %s", code, body)
	}
}

// checkChallenge asserts one exact WWW-Authenticate challenge and that browsers may read it.
func checkChallenge(t *testing.T, hdr http.Header, want string) {
	t.Helper()
	got := hdr.Values("WWW-Authenticate")
	if len(got) != 1 || got[0] != want {
		t.Errorf("WWW-Authenticate = %q\n want %q", got, want)
	}
	if v := hdr.Get("Access-Control-Expose-Headers"); v != "WWW-Authenticate" {
		t.Errorf("Access-Control-Expose-Headers = %q, want WWW-Authenticate", v)
	}
}

// checkErrorBody asserts the JSON error body of a denial.
func checkErrorBody(t *testing.T, body, code, desc string) {
	t.Helper()
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Errorf("error body %q is not JSON: %v", body, err)
		return
	}
	if got["error"] != code || got["error_description"] != desc {
		t.Errorf("error body = %v, want error=%q error_description=%q", got, code, desc)
	}
}

// startCaddy makes sure the in-process Caddy runs (the harness starts it on first use) and
// loads cfg through the harness, which also checks that the config became active.
func startCaddy(t *testing.T, cfg, adapter string) *caddytest.Tester {
	t.Helper()
	tc := caddytest.NewTester(t)
	tc.InitServer(cfg, adapter)
	if t.Failed() {
		t.FailNow()
	}
	return tc
}

// waitServed asks (bounded) until GET path answers a body containing want. /load answers
// once the old servers were told to stop, but each stops in a goroutine of its own (in this
// process), so a connection may still be accepted by the previous config for a moment; every
// new connection after its listener closed meets the new one. Each attempt is a whole HTTP
// exchange, which lets that goroutine run: no sleep is needed.
func waitServed(t *testing.T, tc *caddytest.Tester, path, want string) {
	t.Helper()
	var body string
	for range 50 {
		if _, _, body = request(t, tc, http.MethodGet, path, ""); strings.Contains(body, want) {
			return
		}
	}
	t.Fatalf("GET %s: body %q, want it to contain %q after the reload", path, body, want)
}

// jsonEnvelope is a JSON config of one server, mcp on :9080, whose routes are the given JSON
// array: the admin endpoint and HTTP ports caddytest uses and no grace period, what
// globalOptions is for a Caddyfile. A test spells only its routes, and keeps pinning the
// handler's JSON field names.
func jsonEnvelope(routes string) string {
	return `{
	"admin": {"listen": "localhost:2999"},
	"apps": {"http": {
		"http_port": 9080,
		"https_port": 9443,
		"grace_period": 1,
		"servers": {"mcp": {"listen": [":9080"], "routes": ` + routes + `}}
	}}
}
`
}

// globalOptions are the Caddyfile global options every test config starts with: caddytest's
// fixed admin and HTTP ports, no trust-store install, no grace period.
const globalOptions = globalHead + "}\n"

// globalHead is globalOptions still open, for a config that adds global options of its own
// and closes the block.
const globalHead = `
{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
`
