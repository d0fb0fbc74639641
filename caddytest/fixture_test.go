package integration

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// upstreamServer is what stands behind reverse_proxy: upstream (records headers), mcpUpstream
// (a go-sdk MCP server), listsUpstream, sessionUpstream, craftedUpstream.
type upstreamServer interface{ dial() string }

// fixture is one in-process Caddy with mcp_auth in front of an upstream; its keys are
// published by a JWKS server of its own. A test spells only what differs from the usual
// configuration: resource https://mcp.example.com/mcp, authorization server
// https://auth.example.com, the fixture's JWKS, and reverse_proxy to the upstream.
type fixture struct {
	key, ecKey *jwttest.Key // rsa-1 RS256 and ec-1 ES256, both published
	jwks       *jwksServer
	up         upstreamServer
	tc         *caddytest.Tester // set by start
	session    string            // Mcp-Session-Id that do sends, once a test opened a session
}

// newFixture generates the keys, starts their JWKS server and keeps up (a plain upstream when
// nil). Caddy starts with the first start.
func newFixture(t *testing.T, up upstreamServer) *fixture {
	t.Helper()
	if up == nil {
		up = newUpstream(t)
	}
	f := &fixture{key: jwttest.New(t, "rsa-1", "RS256"), ecKey: jwttest.New(t, "ec-1", "ES256"), up: up}
	f.jwks = newJWKSServer(t, f.key, f.ecKey)
	return f
}

// jwksURL is the URL the usual configuration names in jwks_url.
func (f *fixture) jwksURL() string { return f.jwks.URL + "/jwks" }

// start loads cfg (adapter "caddyfile" or "json") into the in-process Caddy. With want, it
// also waits until the metadata document contains want (a resource_name of the new config):
// the previous test's server may still answer for a moment.
func (f *fixture) start(t *testing.T, cfg, adapter string, want ...string) *caddytest.Tester {
	t.Helper()
	f.tc = startCaddy(t, cfg, adapter)
	for _, w := range want {
		waitServed(t, f.tc, prmPath, w)
	}
	return f.tc
}

// caddyfile is the usual site: mcp_auth with the usual head (resource, authorization server,
// the fixture's jwks_url) followed by the subdirectives in auth, beside reverse_proxy to the
// upstream, or beside the directives given instead.
func (f *fixture) caddyfile(auth string, beside ...string) string {
	return f.siteCaddyfile(strings.Replace(usualHead, "@JWKS@", f.jwksURL(), 1)+auth, beside...)
}

// usualHead is the head of every usual mcp_auth block, @JWKS@ to be filled.
const usualHead = `
resource https://mcp.example.com/mcp
authorization_servers https://auth.example.com
jwks_url @JWKS@
`

// siteCaddyfile is a site whose mcp_auth block is exactly block, beside reverse_proxy to the
// upstream or the directives given instead.
func (f *fixture) siteCaddyfile(block string, beside ...string) string {
	rest := strings.Join(beside, "\n")
	if len(beside) == 0 {
		rest = "reverse_proxy " + f.up.dial()
	}
	return globalOptions + "\n:9080 {\n" + rest + "\nmcp_auth {\n" + block + "\n}\n}\n"
}

// mcpAuth is the JSON of an mcp_auth handler: the usual resource, authorization_servers and
// jwks_urls (when the fixture has a JWKS server), then fields (a nil value leaves a usual
// field out). Field names stay spelt by the tests, so the JSON names are still pinned.
func (f *fixture) mcpAuth(fields map[string]any) map[string]any {
	h := map[string]any{
		"handler":               "mcp_auth",
		"resource":              resource,
		"authorization_servers": []string{issuer},
	}
	if f.jwks != nil {
		h["jwks_urls"] = []string{f.jwksURL()}
	}
	for k, v := range fields {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return h
}

// proxy is the JSON of reverse_proxy to the upstream.
func (f *fixture) proxy() map[string]any {
	return map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": f.up.dial()}}}
}

// json is the usual config in JSON: one route of mcp_auth with fields (see mcpAuth), then
// reverse_proxy to the upstream, or the handlers given instead.
func (f *fixture) json(fields map[string]any, then ...map[string]any) string {
	if len(then) == 0 {
		then = []map[string]any{f.proxy()}
	}
	handle := append([]map[string]any{f.mcpAuth(fields)}, then...)
	return jsonRoutes(map[string]any{"handle": handle})
}

// jsonRoutes is the JSON envelope around these routes.
func jsonRoutes(routes ...map[string]any) string {
	b, err := json.Marshal(routes)
	if err != nil {
		panic(err) // maps of strings, numbers and booleans always marshal
	}
	return jsonEnvelope(string(b))
}

// claims are the usual valid claims (see claims) for scope, with set applied: a nil value
// deletes the claim.
func (f *fixture) claims(scope string, set map[string]any) jwt.MapClaims {
	c := claims(resource, scope)
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// token is a valid token signed by the RSA key for the resource with scope, claims changed
// by set (nil deletes).
func (f *fixture) token(t testing.TB, scope string, set map[string]any) string {
	t.Helper()
	return f.key.Token(t, f.claims(scope, set), nil)
}

// do sends r to Caddy byte for byte (see attackReq) on a fresh connection and returns the
// answer. When the fixture has a session, the request carries it.
func (f *fixture) do(t *testing.T, r attackReq) (int, http.Header, []byte) {
	t.Helper()
	return sendRaw(t, f.session, r)
}

// server is any httptest server as an upstream (a test's own fake MCP server).
type server struct{ *httptest.Server }

func (s server) dial() string { return strings.TrimPrefix(s.URL, "http://") }

// --- added by fixA ---

// usualBlock is the usual head of an mcp_auth block (resource, authorization server, the
// fixture's jwks_url) followed by auth: the block caddyfile puts in its site.
func (f *fixture) usualBlock(auth string) string {
	return strings.Replace(usualHead, "@JWKS@", f.jwksURL(), 1) + auth
}

// proxyDirective is reverse_proxy to the upstream, with the subdirectives in sub when given.
func (f *fixture) proxyDirective(sub ...string) string {
	if len(sub) == 0 {
		return "reverse_proxy " + f.up.dial()
	}
	return "reverse_proxy " + f.up.dial() + " {\n" + strings.Join(sub, "\n") + "\n}"
}

// mcpAuthDirective is the mcp_auth directive whose block is exactly block.
func mcpAuthDirective(block string) string { return "mcp_auth {\n" + block + "\n}" }

// siteAt is a site block at addr holding the directives given, in order (no global
// options: see caddyfileOf).
func siteAt(addr string, directives ...string) string {
	return "\n" + addr + " {\n" + strings.Join(directives, "\n") + "\n}\n"
}

// caddyfileOf is a Caddyfile of the sites under the usual global options with global added
// to them (siteCaddyfile is caddyfileOf("", siteAt(":9080", ...))).
func caddyfileOf(global string, sites ...string) string {
	return globalHead + global + "\n}\n" + strings.Join(sites, "")
}

// trustLoopback is the global option that makes the loopback a trusted proxy, so that a test
// speaks for other client addresses with X-Forwarded-For.
const trustLoopback = "servers {\ntrusted_proxies static 127.0.0.0/8\n}"

// introspected is an mcp_auth block for res with authorization server as, scope mcp:read and
// auth, which introspects opaque tokens at as's /introspect as client mcp-rs (the secret from
// the environment, MCP_ITEST_RS_SECRET), intro added to the introspection group.
func introspected(res, as, auth, intro string) string {
	return "resource " + res + "\nauthorization_servers " + as + "\nscopes mcp:read\n" + auth +
		"\nintrospection {\nendpoint " + as + "/introspect\nclient_id " + rsClientID +
		"\nclient_secret {env.MCP_ITEST_RS_SECRET}\n" + intro + "\n}"
}

// doAt is do with the Host header host.
func (f *fixture) doAt(t *testing.T, host string, r attackReq) (int, http.Header, []byte) {
	t.Helper()
	return doRaw(t, strings.Replace(wire(f.session, r), "\r\nHost: localhost:9080\r\n", "\r\nHost: "+host+"\r\n", 1))
}

// try is do for another goroutine than the test's: it never fails the test, and a connection
// that fails before an answer is returned as the error (not tried again).
func (f *fixture) try(r attackReq) (int, http.Header, []byte, error) {
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	return exchange(wire(f.session, r), method)
}

// bearerReq is a POST to /mcp without a body, with the token as a bearer token and the
// header lines given.
func bearerReq(token string, header ...string) attackReq {
	return attackReq{auth: []string{bearer(token)}, header: header}
}

// eventually asks cond (bounded: 30 s) until it holds, and fails the test with what when it
// never does. Each ask is an event the test waits for (an answer, a counter); the pause
// between asks only keeps the loop from spinning.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		<-tick.C
	}
}

// dialAddr is an upstream given by its address alone (a FastCGI listener, say).
type dialAddr string

func (a dialAddr) dial() string { return string(a) }

// doRaw sends raw to Caddy as written, on a new connection, and returns the answer; a
// connection that fails before any answer is tried again at once, as do does.
func doRaw(t *testing.T, raw string) (int, http.Header, []byte) {
	t.Helper()
	method, _, _ := strings.Cut(raw, " ")
	return sendBytes(t, raw, method)
}

// --- added by fixB ---

// withGlobal is a Caddyfile made by caddyfile or siteCaddyfile with more global options
// (lines of the global block, e.g. a log or servers block).
func withGlobal(cfg, options string) string {
	return globalHead + options + "\n}\n" + strings.TrimPrefix(cfg, globalOptions)
}

// readdressed is a Caddyfile made by caddyfile or siteCaddyfile whose site is addr instead
// of :9080 (e.g. https://localhost:9443 with a tls directive beside).
func readdressed(cfg, addr string) string {
	return strings.Replace(cfg, "\n:9080 {\n", "\n"+addr+" {\n", 1)
}

// jsonWith is a JSON config (as jsonRoutes or f.json make it) with fields set in the object
// at path, dot-separated and made when missing: "apps.http.servers.mcp" for server fields
// (listen, trusted_proxies, tls_connection_policies), "" for top-level apps and logging.
func jsonWith(cfg, path string, fields map[string]any) string {
	var root map[string]any
	if err := json.Unmarshal([]byte(cfg), &root); err != nil {
		panic(err) // jsonRoutes writes valid JSON
	}
	obj := root
	if path != "" {
		for _, k := range strings.Split(path, ".") {
			next, ok := obj[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[k] = next
			}
			obj = next
		}
	}
	for k, v := range fields {
		obj[k] = v
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// logSink receives logs Caddy writes with `output net` and keeps their JSON lines: a test
// waits for the lines it expects as they arrive, instead of reading a file again and again.
type logSink struct {
	ln      net.Listener
	mu      sync.Mutex
	raw     []byte
	entries []map[string]any
	more    chan struct{} // closed (and replaced) when a line arrives
}

func newLogSink(t *testing.T) *logSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &logSink{ln: ln, more: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.read(c) // Caddy closes its writer when a config without it replaces it
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *logSink) read(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e map[string]any
		_ = json.Unmarshal(sc.Bytes(), &e)
		s.mu.Lock()
		s.raw = append(append(s.raw, sc.Bytes()...), '\n')
		if e != nil {
			s.entries = append(s.entries, e)
		}
		close(s.more)
		s.more = make(chan struct{})
		s.mu.Unlock()
	}
}

// output is the Caddyfile output line of a log block writing to the sink.
func (s *logSink) output() string { return "output net " + s.ln.Addr().String() }

// wait waits (bounded) until done holds for the entries received so far and returns them.
// At the bound it returns them as they are, for the test's own assertions to report.
func (s *logSink) wait(done func(entries []map[string]any) bool) []map[string]any {
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		entries, more := slices.Clone(s.entries), s.more
		s.mu.Unlock()
		if done(entries) {
			return entries
		}
		select {
		case <-more:
		case <-deadline:
			return entries
		}
	}
}

// atLeast is a wait condition: n entries or more.
func atLeast(n int) func([]map[string]any) bool {
	return func(e []map[string]any) bool { return len(e) >= n }
}

// text is everything the sink received, raw.
func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.raw)
}

// sendBytes writes raw, a whole request spelt by the test (trailers, odd framing that
// attackReq does not describe), on a new connection and reads the answer; a connection that
// fails before any answer is tried again at once, as sendRaw does.
func sendBytes(t *testing.T, raw, method string) (int, http.Header, []byte) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		code, hdr, body, err := exchange(raw, method)
		if err == nil {
			return code, hdr, body
		}
		if attempt == 10 {
			t.Fatalf("%s: %v", method, err)
		}
	}
}

// --- added by fixC ---

// logTo is a log block named name ("" for the site's access log or the default log) that
// writes JSON to the sink, with the lines in extra added (a level, an include).
func logTo(name string, s *logSink, extra string) string {
	if name != "" {
		name += " "
	}
	return "log " + name + "{\n" + s.output() + "\nformat json\n" + extra + "\n}"
}

// throughs numbers the marks through sends.
var throughs atomic.Int64

// through waits (bounded) until the sink, the output of Caddy's default log, holds every line
// logged before the call: Caddy logs each admin request ("received request", with its URI)
// to the default log after them on the same connection, so through asks the admin API for a
// marked URI and waits for that line.
func (s *logSink) through(t *testing.T) {
	t.Helper()
	uri := "/config/?through=" + strconv.FormatInt(throughs.Add(1), 10)
	resp, err := http.Get(adminURL + uri)
	if err != nil {
		t.Fatalf("GET %s: %v", uri, err)
	}
	resp.Body.Close()
	marked := func(entries []map[string]any) bool {
		for _, e := range entries {
			if e["msg"] == "received request" && e["uri"] == uri {
				return true
			}
		}
		return false
	}
	if !marked(s.wait(marked)) {
		t.Fatalf("the log line of GET %s never reached the sink", uri)
	}
}

// exchangeBlock is an mcp_auth block for the resource, whose authorization server is as and
// whose tokens come from the usual issuer with keys at jwks, requiring mcp:read, that
// exchanges each caller's token as client mcp-gateway for audience https://api.example.com:
// group adds lines to the token_exchange group, rules follow it.
func exchangeBlock(as, jwks, group, rules string) string {
	return "resource " + resource + "\nauthorization_servers " + as + "\nissuers " + issuer +
		"\njwks_url " + jwks + "\nscopes mcp:read\ntoken_exchange {\nclient_id " + gwClientID +
		"\nclient_secret \"" + gwClientSecret + "\"\naudience https://api.example.com\n" + group + "\n}\n" + rules
}
